"""Drivers sharing one sweep: each claims partitions through leases, runs them, and ends
when none is left to claim (or, with ``wait=True``, when every partition is done).

The partitions are the *cohort's* (:class:`~metalab.store.leases.Cohort`): the first
driver cuts its runs to do (as :func:`~metalab.descriptors.partition_bounds` would) and
writes the cuts, as positions in the plan, into the cohort's table; every other driver
reads them, so a partition is the same runs in every driver whatever its executor.
Each driver then computes rounds of partition tasks on its own executor (the usual
``map_partitions`` graph); a task runs its partition only under its lease
(:func:`execute_leased`).  A partition taken over from a dead driver skips the runs that
driver recorded (its journals are folded into Parquet first).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store.leases import DONE, EXPIRED, FREE, Cohort, lease_seconds, plan_key
from .partition import (
    SUMMARY_COLUMNS,
    execute_partition,
    finished_summary,
    run_frame,
    summary_meta,
)
from .planning import store_stamp
from .remote_task import remote_partition_size

#: Environment variable: ``0`` runs a sweep without leases (one driver per store only).
LEASES_ENV = "METALAB_LEASES"

if TYPE_CHECKING:
    import pandas as pd

    from ..executors.base import Session
    from ..experiment import Experiment
    from .partition import SweepTask
    from .shipping import Payload
    from .sweep import Sweep


@dataclass(frozen=True)
class LeasedParts:
    """What the tasks of one round need: the cohort, and which partition each task is."""

    cohort: Cohort
    #: The cohort partition of each Dask partition of the round.
    parts: tuple[int, ...]


def _zero() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({k: [0] for k in SUMMARY_COLUMNS})


def execute_leased(
    pdf: pd.DataFrame,
    task: SweepTask,
    payload: Payload,
    leased: LeasedParts,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """:func:`~metalab.sweep.partition.execute_partition` under the partition's lease; a
    partition done or held by another driver returns an empty summary at once."""
    number = int(partition_info["number"]) if partition_info else 0
    k = leased.parts[number]
    finished = finished_summary(task, k)  # recomputed after its worker died: keep counts
    if finished is not None:
        return finished
    claim = leased.cohort.claim(k, task.sweep)
    if claim is None:
        return _zero()
    done = False
    try:
        if claim.previous:  # a dead driver's partition: keep what it recorded
            pdf = _not_recorded_by(task.store_root, pdf, claim.previous, k)
        out = run_frame(pdf, task, payload, k) if len(pdf) else _zero()
        done = task.stop is None or not task.stop.is_set()
        return out
    finally:
        claim.release(done=done)


def _not_recorded_by(root: str, pdf: pd.DataFrame, holders: tuple[str, ...], k: int) -> Any:
    """The rows of ``pdf`` that no sweep of ``holders`` recorded (their journals of
    partition ``k`` are folded into Parquet first: their leases say they are dead)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..store import Store

    store = Store.open(root)
    for h in holders:
        store.recover_journals(sweep=f"{h}-{k:06d}", dead_only=False)
    ids = pa.array(pdf["run_id"].tolist(), pa.string())
    table = store.records(columns=["run_id", "sweep"], filter=pc.field("run_id").isin(ids))
    if not table.num_rows or "sweep" not in table.column_names:  # nothing recorded at all
        return pdf
    mask = pc.is_in(table.column("sweep"), pa.array(list(holders), pa.string()))
    kept = set(table.column("run_id").filter(mask).to_pylist())
    return pdf[~pdf["run_id"].isin(kept)]


# -- the driver -------------------------------------------------------------------------


def cohort_key(exp: Experiment, run_ids: list[str] | None = None) -> str:
    """The cohort key of ``exp``'s plan (``run_ids``: its run ids, if already planned)."""
    from ..store.records import CONTEXT_FINGERPRINT, EXPERIMENT_VERSION, OPERATION_VERSION

    definition = {
        EXPERIMENT_VERSION: exp.version,
        OPERATION_VERSION: exp.operation.version,
        CONTEXT_FINGERPRINT: exp.context.fingerprint,
    }
    return plan_key(definition, run_ids if run_ids is not None else exp.plan()["run_id"].tolist())


def _positions(sweep: Sweep) -> Any:
    """Each run to do's position in the plan (both are in plan order)."""
    import numpy as np
    import pandas as pd

    if len(sweep.todo) == len(sweep.planned):  # nothing was done before: the whole plan
        return np.arange(len(sweep.todo))
    return pd.Index(sweep.planned["run_id"]).get_indexer(sweep.todo["run_id"])


def _first_bounds(n_plan: int, pos: Any, n_workers: int, size: int | None) -> list[int]:
    """The cohort's cuts as plan positions: this driver's runs to do, cut as usual."""
    from ..descriptors import partition_bounds

    bounds = partition_bounds(len(pos), n_workers, size)
    inner = [int(pos[b]) for b in bounds[1:-1] if b < len(pos)]
    return [0, *sorted(set(inner) - {0}), n_plan]


@dataclass
class SharedRounds:
    """One driver's part in a shared sweep, round after round on one session."""

    sweep: Sweep
    session: Session
    payload: Payload
    wait: bool
    poll_s: float = 0.0

    def run(self) -> list[Any]:
        """Claim and run partitions until none is left (see :func:`metalab.run`'s ``wait``);
        returns the summaries of every task this driver computed."""
        import numpy as np

        sw = self.sweep
        if os.environ.get(LEASES_ENV, "").strip().lower() in ("0", "off", "no", "false"):
            return self._alone()
        if sw.store.mirror is not None:  # no exclusive create on object stores: no leases
            return self._alone()
        ttl = lease_seconds()
        self.poll_s = self.poll_s or min(2.0, ttl / 4)
        pos = _positions(sw)
        key = cohort_key(sw.experiment, sw.planned["run_id"].tolist())
        root = sw.store.root
        size, workers = sw.options.partition_size, self.session.n_workers
        n = len(sw.planned)
        cohort = Cohort.join(root, key, lambda: _first_bounds(n, pos, workers, size), ttl, n)
        if store_stamp(sw.store.layout) != sw.stamp:
            # Runs were recorded since this driver planned (by drivers of the cohort, or of
            # one that has ended): plan again, so that none of them runs twice.
            pos = self._plan_again()
        summaries: list[Any] = []
        failed: set[int] = set()  # partitions whose task failed here: not tried again
        try:
            while cohort.alive():  # retired: a driver found every partition done
                # The runs to do of each partition: todo rows between its bounds.
                cuts = np.searchsorted(pos, np.asarray(cohort.bounds))
                states = {k: cohort.state(k, sw.sweep_id)[0] for k in range(cohort.n)}
                open_ = [k for k, s in states.items() if s in (FREE, EXPIRED) and k not in failed]
                if open_:
                    for k, summary in self._round(cohort, open_, cuts):
                        if summary is None and cohort.state(k)[0] == DONE:
                            summary = _zero()  # its records are written, its counts lost
                        if summary is None or isinstance(summary, BaseException):
                            failed.add(k)
                        summaries.append(summary)
                    continue
                if not self.wait or all(s == DONE or k in failed for k, s in states.items()):
                    break
                time.sleep(self.poll_s)  # others run the rest: look again soon
        finally:
            cohort.leave()
        return summaries

    def _alone(self) -> list[Any]:
        """Every partition in one round, without leases (``METALAB_LEASES=0``)."""
        from ..descriptors import to_dask
        from .compute import compute

        sw, session = self.sweep, self.session
        size = sw.options.partition_size
        if size is None and sw.store.mirror is not None:
            size = remote_partition_size(len(sw.todo), session.n_workers)
        ddf = to_dask(sw.todo, n_workers=session.n_workers, partition_size=size)
        out = ddf.map_partitions(
            execute_partition,
            sw.task(session),
            self.payload,
            meta=summary_meta(),
            enforce_metadata=False,
            align_dataframes=False,
        )
        parts = list(out.to_delayed())
        return compute(session, parts, resources=sw.experiment.operation.resources)

    def _plan_again(self) -> Any:
        """The runs to do as of now (the sweep's todo and skipped count are updated)."""
        from .planning import plan_todo

        sw, opts = self.sweep, self.sweep.options
        _, sw.todo, skipped = plan_todo(
            sw.experiment, sw.store, resume=opts.resume, retry_failed=opts.retry_failed
        )
        sw.counts.skipped = skipped
        return _positions(sw)

    def _round(self, cohort: Cohort, ks: list[int], cuts: Any) -> list[tuple[int, Any]]:
        """Compute one task per partition of ``ks`` (done at once when it has no run);
        returns (partition, summary or the exception of a lost task) pairs."""
        from .compute import compute

        sw = self.sweep
        with_runs: list[int] = []
        empty: list[int] = []
        for k in ks:
            (with_runs if cuts[k + 1] > cuts[k] else empty).append(k)
        for k in empty:  # every run of it is recorded: only its done marker is missing
            claim = cohort.claim(k, sw.sweep_id)
            if claim is not None:
                claim.release(done=True)
        if not with_runs:
            return []
        parts = _leased_graph(sw, self.session, self.payload, cohort, with_runs, cuts)
        out = compute(self.session, parts, resources=sw.experiment.operation.resources)
        return list(zip(with_runs, out, strict=True))


def _leased_graph(
    sw: Sweep, session: Session, payload: Payload, cohort: Cohort, ks: list[int], cuts: Any
) -> list[Any]:
    """The delayed tasks of one round: the todo rows of each partition of ``ks``."""
    import dask.dataframe as dd
    import pandas as pd

    frames = [sw.todo.iloc[int(cuts[k]) : int(cuts[k + 1])] for k in ks]
    rows = pd.concat(frames, ignore_index=True)
    bounds = [0]
    for f in frames:
        bounds.append(bounds[-1] + len(f))
    ddf = dd.from_pandas(rows, npartitions=1, sort=True)
    if len(bounds) > 2:
        ddf = ddf.repartition(divisions=(*bounds[:-1], bounds[-1] - 1))
    out = ddf.map_partitions(
        execute_leased,
        sw.task(session),
        payload,
        LeasedParts(cohort, tuple(ks)),
        meta=summary_meta(),
        enforce_metadata=False,
        align_dataframes=False,
        token=f"metalab-{sw.sweep_id}-{'-'.join(map(str, ks[:3]))}-{len(ks)}-{time.monotonic_ns()}",
    )
    return list(out.to_delayed())
