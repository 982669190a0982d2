"""Options of ``metalab table`` and ``metalab run`` (parsing only; used by :mod:`metalab.cli`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_table_options(p: argparse.ArgumentParser) -> None:
    """``--metrics``, ``--stats``, ``--filter``, ``--sort``, ``--reduce`` of ``table``."""
    p.add_argument("--metrics", nargs="+", metavar="M", help="show only these metrics")
    p.add_argument(
        "--stats",
        nargs="+",
        metavar="S",
        help="with --group-by: mean std count min max median sem ci95 (default mean std count)",
    )
    p.add_argument(
        "--filter",
        action="append",
        metavar="EXPR",
        help="keep runs where EXPR holds: lr=0.1, lr=0.1,0.01 (one of), 'lr>0.01', "
        "status!=success; repeat to combine (all must hold)",
    )
    p.add_argument(
        "--sort",
        nargs="+",
        metavar="COL",
        help="sort by these columns; --sort=-COL sorts descending (default: plan order)",
    )
    p.add_argument(
        "--reduce",
        default=None,
        metavar="HOW",
        help="show each stepped metric as this reduction of its steps: last (default), "
        "min, max or mean; named NAME[HOW]",
    )


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--set``, ``--retries``, ``--timeout``, ``--partition-size``, ``--no-retry-failed``,
    ``--wait``."""
    p.add_argument(
        "--set",
        action="append",
        metavar="P=V[,V...]",
        help="run with param P taking these values (a grid axis is replaced by them); "
        "repeat for several params, e.g. --set lr=0.1,0.01 --set depth=2",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="re-run a raising run up to N times before recording it as failed",
    )
    p.add_argument(
        "--timeout",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="stop a run after SECONDS; it is recorded with status timeout",
    )
    p.add_argument(
        "--partition-size",
        type=_positive(int),
        default=None,
        metavar="N",
        help="runs per Dask task (default: chosen from the runs and workers)",
    )
    p.add_argument(
        "--no-retry-failed",
        action="store_true",
        help="when resuming, keep failed runs as they are instead of running them again",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with several drivers on one store (sbatch --array, two terminals): return "
        "when the whole sweep is done, taking over the partitions of a driver that died, "
        "instead of when no partition is left to claim",
    )
