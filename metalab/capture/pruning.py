"""``capture.should_stop()``: ask a search's pruner about the running run.

The decision needs the other runs' values, and workers may be other processes or
machines, so they come from the store: the finished runs' stepped values of the
objective (records and journals), replayed into an in-memory Optuna study once per
worker process and brought up to date when the store's files change.  Each finished
run is one trial (its steps reported and checked in order, so rung-based pruners
such as ASHA see the rungs it reached), then told complete or pruned.  The running
run is one more trial whose new steps are reported before asking ``should_prune``.

The pruner comes from ``<store>/search/pruner.pkl``, written by the search's driver.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any

PRUNER_PATH = ("search", "pruner.pkl")
_lock = threading.Lock()
_states: dict[str, _State] = {}


class _State:
    """One store's pruning study in this process."""

    def __init__(self, spec: dict[str, Any], stamp: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric: str = spec["metric"]
        self.stamp = stamp
        self.study = optuna.create_study(
            direction=spec["direction"],
            sampler=optuna.samplers.RandomSampler(seed=0),
            pruner=spec["pruner"],
        )
        self.trials: dict[str, Any] = {}  # run id -> its optuna trial
        self.reported: dict[str, set[int]] = {}
        self.told: set[str] = set()
        self.signature: tuple[Any, ...] = ()

    def report(self, run_id: str, points: list[tuple[int, float]]) -> Any:
        """Report the run's steps not reported yet (checking after each); its trial."""
        trial = self.trials.get(run_id)
        if trial is None:
            trial = self.trials[run_id] = self.study.ask()
            self.reported[run_id] = set()
        seen = self.reported[run_id]
        for step, value in sorted(points):
            if step not in seen:
                seen.add(step)
                trial.report(value, step)
                trial.should_prune()  # rung pruners record the rungs reached here
        return trial

    def sync(self, root: Path, current: str) -> None:
        """Add the runs that finished since the last look at the store."""
        sig = _signature(root)
        if sig == self.signature:
            return
        self.signature = sig
        import optuna
        import pyarrow.compute as pc

        from ..store.layout import Layout
        from ..store.reader import read_records, read_steps

        layout = Layout(root)
        rec = read_records(layout, columns=["run_id", "status", "ended_at"])
        if not rec.num_rows or "status" not in rec.column_names:
            return  # no run has finished yet
        rec = rec.filter(pc.is_in(rec.column("status"), _done_statuses()))
        rec = rec.sort_by("ended_at")
        steps = read_steps(layout, filter=pc.field("name") == self.metric)
        by_run: dict[str, list[tuple[int, float]]] = {}
        for rid, step, value in zip(
            steps.column("run_id").to_pylist(),
            steps.column("step").to_pylist(),
            steps.column("value").to_pylist(),
            strict=True,
        ):
            by_run.setdefault(rid, []).append((int(step), float(value)))
        for rid, status in zip(
            rec.column("run_id").to_pylist(), rec.column("status").to_pylist(), strict=True
        ):
            if rid in self.told or rid == current or rid not in by_run:
                continue
            self.told.add(rid)
            trial = self.report(rid, by_run[rid])
            if status == "pruned":
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, max(by_run[rid])[1])


def _done_statuses() -> Any:
    import pyarrow as pa

    return pa.array(["success", "pruned"])


def _signature(root: Path) -> tuple[Any, ...]:
    """Names and sizes of the files that hold records: changed means new runs."""
    out: list[tuple[str, int]] = []
    for sub in ("records", "metrics", "journal"):
        try:
            with os.scandir(root / sub) as it:
                out.extend((e.name, e.stat().st_size) for e in it if e.is_file())
        except FileNotFoundError:
            continue
    return tuple(sorted(out))


def _spec(root: Path) -> tuple[dict[str, Any], int] | None:
    path = root.joinpath(*PRUNER_PATH)
    try:
        stamp = path.stat().st_mtime_ns
        # Written by this store's own search driver, like the shipped operation payload.
        return pickle.loads(path.read_bytes()), stamp
    except FileNotFoundError:
        return None


def decide(root: str, run_id: str, steps: list[list[Any]] | None) -> bool:
    """Should the run ``run_id`` (whose stepped metrics are ``steps``) stop now?"""
    if not steps:
        return False
    found = _spec(Path(root))
    if found is None:
        return False  # not a search with a pruner: never stop
    spec, stamp = found
    points = [(int(s[1]), float(s[2])) for s in steps if s[0] == spec["metric"]]
    if not points:
        return False
    with _lock:
        state = _states.get(root)
        if state is None or state.stamp != stamp:
            state = _states[root] = _State(spec, stamp)
        state.sync(Path(root), run_id)
        trial = state.report(run_id, points)
        return bool(trial.should_prune())
