"""The ``metalab`` command line: a thin layer over the public API.

::

    metalab ls [DIR]                       stores under DIR (default ./runs), runs by status
    metalab show STORE                     manifest, sweeps, counts, failures
    metalab table STORE [--group-by P ...] [--filter EXPR] [--sort COL] [--reduce HOW] ...
    metalab run FILE.py:EXP | MODULE:EXP [--set P=V,...] [--executor ...] [--store PATH] ...
    metalab report STORE [-o report.html]
    metalab repair STORE                   verify every file, move damaged ones aside

A user mistake (bad path, unknown name, malformed option) prints one line on stderr
and exits with status 2; no traceback. Heavy modules are imported inside the
commands, so ``metalab --help`` stays quick.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._text import safe_text
from .cli_loading import apply_sets, load_experiment, parse_executor
from .cli_options import add_run_options, add_table_options
from .errors import CLIError  # defined with the other errors; importable here too

if TYPE_CHECKING:
    from .results import Results
    from .store import Store

__all__ = ["CLIError", "load_experiment", "main", "parse_executor"]

#: Exit status of a user mistake (argparse uses the same).
EXIT_USAGE = 2
#: Exit status of ``metalab run`` when some runs failed.
EXIT_FAILED_RUNS = 1
#: Exit status after Ctrl-C / SIGTERM (128 + SIGINT).
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _out(text: str = "") -> None:
    print(safe_text(text), flush=True)  # store contents may hold terminal escapes


def _open_store(path: str) -> Store:
    from .store import Store

    return Store.open(path, reading=True)  # a remote store's records stay in the bucket


def _is_store(path: Path) -> bool:
    from .store import Layout

    layout = Layout(path)
    return layout.manifest.is_file() or layout.records.is_dir()


def find_stores(root: Path, max_depth: int = 3) -> list[Path]:
    """Store folders at or below ``root`` (a store's own subfolders are not searched)."""
    if _is_store(root):
        return [root]
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            entries = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for p in entries:
            if _is_store(p):
                found.append(p)
            elif depth < max_depth:
                walk(p, depth + 1)

    walk(root, 1)
    return found


def _results(store: Store, definitions: str = "current") -> Results:
    """``load_results`` of a store; runs of other definitions left out are a one-line note."""
    import warnings

    from .errors import OtherDefinitionsWarning
    from .results import load_results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OtherDefinitionsWarning)
        results = load_results(store, definitions=definitions)
    for w in caught:
        msg = w.message
        if isinstance(msg, OtherDefinitionsWarning):
            s = "s" if msg.definitions != 1 else ""
            print(
                safe_text(
                    f"metalab: note: {store.location}: showing the current definition "
                    f"({msg.current}); {msg.hidden} run{'s' if msg.hidden != 1 else ''} of "
                    f"{msg.definitions} other definition{s} left out (add --definitions all "
                    "to see every run, grouped by definition)"
                ),
                file=sys.stderr,
            )
        else:  # anything else (a damaged file...) is reported as usual
            warnings.warn_explicit(msg, w.category, w.filename, w.lineno)
    return results


def recorded_counts(results: Results) -> dict[str, int]:
    """``Results.counts()`` of the statuses present (no zeros, no ``pending``)."""
    from .results.naming import PENDING

    return {k: v for k, v in results.counts().items() if v and k != PENDING}


def _format_counts(counts: dict[str, int]) -> str:
    """``8 success, 2 failed`` (``Results.counts()`` order; zeros left out)."""
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no runs"


def _not_succeeded(counts: dict[str, int]) -> int:
    from .results.naming import PENDING
    from .store.records import SUCCESS

    return sum(v for k, v in counts.items() if k not in (SUCCESS, PENDING, "pruned"))


def _fmt_time(t: Any) -> str:
    import datetime as dt

    if not isinstance(t, (int, float)):
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def error_location(traceback_text: str) -> str:
    """The innermost ``File "...", line N, in f`` line of a traceback, stripped."""
    lines = [ln.strip() for ln in (traceback_text or "").splitlines()]
    frames = [ln for ln in lines if ln.startswith('File "')]
    return frames[-1] if frames else ""


# commands ---------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    """`metalab ls`: the stores under a folder, with their runs by status."""
    root = Path(args.dir)
    if not root.is_dir():
        raise CLIError(f"no such folder: {root} (stores live under ./runs by default)")
    stores = find_stores(root)
    if not stores:
        _out(f"no metalab stores under {root}")
        return 0
    rows = []
    for path in stores:
        store = _open_store(str(path))
        manifest = store.read_manifest()
        counts = recorded_counts(_results(store))
        sweeps = store.read_sweeps()
        last = _fmt_time(sweeps[-1].get("started")) if sweeps else "-"
        rows.append(
            [
                str(path),
                str(manifest.get("experiment", path.name)),
                str(sum(counts.values())),
                _format_counts(counts),
                last,
            ]
        )
    header = ["STORE", "EXPERIMENT", "RUNS", "STATUS", "LAST SWEEP"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        _out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _show_failures(failed: Results, max_failures: int) -> None:
    import itertools

    from .store.records import PARAMS

    shown = list(itertools.islice(failed, max_failures))  # reads the full records once
    n = len(failed)
    _out(f"\nfailures ({n})")
    for run in shown:
        error = run.error or {}
        msg = error.get("message", "").strip().splitlines()
        _out(f"  {run.run_id[:8]}  {run.record.get(PARAMS)}")
        _out(f"    {error.get('type') or run.status}: {msg[0] if msg else ''}")
        loc = error_location(error.get("traceback", ""))
        if loc:
            _out(f"    {loc}")
    if n > max_failures:
        _out(f"  ... and {n - max_failures} more (--max-failures N)")


def cmd_show(args: argparse.Namespace) -> int:
    """`metalab show`: a store's experiment, definitions, sweeps, counts and failures."""
    from .cli_show import manifest_lines, sweep_lines

    store = _open_store(args.store)
    manifest = store.read_manifest()
    for line in manifest_lines(store, manifest):
        _out(line)
    every = _results(store, "all")
    for line in sweep_lines(store, every):
        _out(line)
    results = every if args.definitions == "all" else _results(store)
    counts = recorded_counts(results)
    which = "every definition" if args.definitions == "all" else "the current definition"
    _out(f"\n{'runs':<20} {sum(counts.values())} ({_format_counts(counts)}) of {which}")
    pending = results.pending
    if pending:
        _out(f"{'pending':<20} {pending} planned by the latest sweep, not recorded")
    from .search.summary import show_line

    search = show_line(results, manifest)
    if search:
        _out(search)
    if _not_succeeded(counts):
        _show_failures(results.failed, args.max_failures)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """`metalab table`: the runs of a store (or a grouped summary) as a table or CSV."""
    from .cli_table import apply_filters, render, sort_rows, summary_frame, table_frame

    store = _open_store(args.store)
    results = apply_filters(_results(store, args.definitions), args.filter or [])
    if args.stats and not args.group_by:
        raise CLIError("--stats needs --group-by P (statistics are taken over the runs of a group)")
    if args.group_by:
        df = summary_frame(results, args)
    else:
        df = table_frame(results, args, store.read_manifest())
    if args.sort:
        df = sort_rows(df, args.sort)
    if args.csv:
        df.to_csv(args.csv, index=False)
        _out(f"wrote {args.csv}")
    elif args.group_by:
        text = df.to_string(index=False, float_format=lambda x: f"{x:.6g}") if len(df) else ""
        _out(text or "(no runs)")
    else:
        _out(render(df, args.max_rows))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`metalab run`: run an experiment named as FILE.py:EXP or MODULE:EXP."""
    from .cli_table import plan_table
    from .errors import RunInterrupted
    from .sweep.sweep import run

    exp = load_experiment(args.experiment)
    if args.set:
        exp = apply_sets(exp, args.set)
    executor = parse_executor(args.executor) if args.executor else None
    try:
        result = run(
            exp,
            executor=executor,
            store=args.store,
            resume=not args.no_resume,
            progress=args.progress,
            partition_size=args.partition_size,
            retries=args.retries,
            retry_failed=not args.no_retry_failed,
            timeout=args.timeout,
            wait=args.wait,
        )
    except RunInterrupted as exc:
        again = ["metalab", "run", args.experiment]
        for s in args.set or []:
            again += ["--set", shlex.quote(s)]
        if args.executor:
            again += ["--executor", args.executor]
        if args.store:
            again += ["--store", args.store]
        if args.wait:
            again.append("--wait")
        raise RunInterrupted(
            experiment=exc.experiment, store=exc.store, done=exc.done, resume=" ".join(again)
        ) from None
    if not args.quiet:
        _out(plan_table(result, exp, args.max_rows))
    counts = result.counts()
    root = Path(args.store) if args.store else Path("runs") / exp.name
    print(
        f"metalab: {exp.name}: {len(exp)} runs ({_format_counts(counts)}); store {root}",
        file=sys.stderr,
    )
    failed = _not_succeeded(counts)
    if failed:
        print(
            f"metalab: {failed} run{'s' if failed != 1 else ''} did not succeed; see them "
            f"with: metalab show {root}",
            file=sys.stderr,
        )
        return EXIT_FAILED_RUNS
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`metalab report`: write the HTML report of a store."""
    from .report import write_report

    store = _open_store(args.store)
    try:
        out = write_report(store, args.output, definitions=args.definitions)
    except ImportError as exc:  # matplotlib missing: name the extra to install
        raise CLIError(str(exc)) from None
    _out(f"wrote {out}")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Verify every file of a store; move damaged ones to quarantine/; rebuild the manifest."""
    from .store import Store
    from .store.repair import repair

    for line in repair(Store.open(args.store)).lines():
        _out(line)
    return 0


def _add_definitions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--definitions",
        choices=["current", "all"],
        default="current",
        help="runs of the store's current definition (the latest sweep's experiment and "
        "operation versions and context; default), or of all, grouped by definition",
    )


def _add_repair(sub: Any) -> None:
    p = sub.add_parser(
        "repair",
        help="verify every file of a store and move damaged ones aside",
        description="Verify every file of a store (checksums of every Parquet page, "
        "journal line, JSON file and artifact), move damaged ones to quarantine/, fold "
        "the journals of dead processes and rebuild a damaged manifest from the sweep "
        "files. Runs of damaged files are redone by the next run with resume=True. "
        "Run it while no sweep writes to the store.",
    )
    p.add_argument("store", metavar="STORE", help="store folder, e.g. runs/pi_mc")
    p.set_defaults(func=cmd_repair)


# parser and entry point -------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``metalab`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="metalab",
        description="Inspect, run and report metalab experiments.",
        epilog="Run 'metalab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"metalab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_inspect_commands(sub)
    _add_run_commands(sub)
    _add_repair(sub)
    return parser


def _add_inspect_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ls``, ``show`` and ``table``."""
    p = sub.add_parser(
        "ls",
        help="list stores and their runs by status",
        description="List the metalab stores under DIR with run counts by status.",
    )
    p.add_argument(
        "dir",
        nargs="?",
        default="runs",
        metavar="DIR",
        help="folder to search (default: ./runs); may be a store itself",
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "show",
        help="manifest, sweeps, counts and failures of a store",
        description="Print a store's manifest, its sweeps, run counts by "
        "status and each failed run with its error line.",
    )
    p.add_argument("store", metavar="STORE", help="store folder, e.g. runs/pi_mc")
    _add_definitions(p)
    p.add_argument(
        "--max-failures",
        type=int,
        default=20,
        metavar="N",
        help="show at most N failures (default 20)",
    )
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "table",
        help="the runs (or a grouped summary) as a table",
        description="Print the runs of a store as a table; with --group-by, "
        "the mean, std and count of each metric per group.",
    )
    p.add_argument("store", metavar="STORE", help="store folder, e.g. runs/pi_mc")
    p.add_argument(
        "--group-by",
        nargs="+",
        metavar="P",
        default=None,
        help="summarize over replicates, grouped by these parameters",
    )
    p.add_argument(
        "--csv", metavar="FILE", default=None, help="write the table to FILE instead of printing it"
    )
    _add_definitions(p)
    p.add_argument(
        "--max-rows", type=int, default=60, metavar="N", help="print at most N rows (default 60)"
    )
    add_table_options(p)
    p.set_defaults(func=cmd_table)


def _add_run_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``run`` and ``report``."""
    p = sub.add_parser(
        "run",
        help="run an experiment defined in a file or module",
        description="Run (or resume) an Experiment object defined in a Python "
        "file or an importable module. Exits with status 1 when "
        "some runs failed.",
    )
    p.add_argument(
        "experiment",
        metavar="MODULE:EXPERIMENT",
        help="path/to/file.py:exp or package.module:exp (':exp' may be omitted "
        "when the module defines one experiment)",
    )
    p.add_argument(
        "--executor",
        default=None,
        metavar="EXECUTOR",
        help="local (default), threads:N, processes:N, slurm[:JOBS], pbs[:JOBS], "
        "or a scheduler address such as tcp://127.0.0.1:8786",
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="store folder (default: ./runs/<experiment name>)",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="run every run again, even those already done"
    )
    add_run_options(p)
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the table")
    p.add_argument(
        "--max-rows", type=int, default=60, metavar="N", help="print at most N rows (default 60)"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a store",
        description="Write one self-contained HTML file (no network needed) "
        "with the manifest, counts, a sortable summary table, "
        "plots, learning curves and failures.",
    )
    p.add_argument("store", metavar="STORE", help="store folder, e.g. runs/pi_mc")
    p.add_argument(
        "-o",
        "--output",
        default="report.html",
        metavar="FILE",
        help="output file (default: report.html)",
    )
    _add_definitions(p)
    p.set_defaults(func=cmd_report)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        # StoreError's strerror is the whole message; a plain OSError names its file.
        if exc.filename and str(exc.filename) not in exc.strerror:
            return f"{exc.strerror}: {exc.filename}"
        return str(exc.strerror)
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalab`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .errors import MetalabError, RunInterrupted

    try:
        return int(args.func(args))
    except RunInterrupted as exc:
        print(f"metalab: {safe_text(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("metalab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        CLIError,
        MetalabError,
        FileNotFoundError,
        PermissionError,
        NotADirectoryError,
        IsADirectoryError,
    ) as exc:
        print(f"metalab: error: {safe_text(_error_text(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `metalab table ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
