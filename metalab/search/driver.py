"""The ask -> run -> tell loop of a search, over the sweep's partition tasks.

Each trial is one small descriptor frame (its configuration x the replicates) mapped
by ``execute_partition`` like every sweep; its partition number is its trial number,
so journals and done markers never collide.  With N workers (or ``batch_size=N``) N
trials are in flight; on a cluster a new trial is asked as soon as one finishes.

The store is the source of truth.  On every start the ledger
(:mod:`metalab.search.ledger`) lists the trials asked so far; each is asked again
from a fresh study (sequential searches: the same seed proposes the same
configuration, which is checked; otherwise the configuration is enqueued), and told
the result its runs left in the records.  Trials whose runs lack a record run first.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._hashing import canonical_json, run_ids_for
from ..store.records import METRIC_PREFIX, PRUNED, SUCCESS
from .ledger import Ledger
from .space import to_config, to_optuna, to_values
from .study import make_pruner, make_sampler, need_optuna, new_study

if TYPE_CHECKING:
    import pandas as pd

    from ..sweep.sweep import Sweep
    from .source import Optimize

PRUNER_FILE = "pruner.pkl"


@dataclass
class Trial:
    """One configuration asked of the sampler: its number, runs and Optuna trial."""

    number: int
    config: dict[str, Any]
    asked: Any
    run_ids: list[str]


class Search:
    """The state of one search while :func:`metalab.run` drives it."""

    def __init__(self, sweep: Sweep, source: Optimize) -> None:
        need_optuna()
        self.sweep, self.source, self.exp = sweep, source, sweep.experiment
        self.store = sweep.store
        self.ledger = Ledger(self.store.root)
        self.dists = to_optuna(source.space)
        sampler = make_sampler(source.sampler, source.seed, source.space)
        self.study = new_study(source.direction, sampler)
        self.reps = self.exp.seeds.replicates
        self.prefix = self.exp.run_id_prefix
        self.outcomes: dict[str, tuple[str, float | None, int]] = {}
        self.trials: list[Trial] = []
        self.sequential = False

    # runs and their records -------------------------------------------------------
    def run_ids(self, config: dict[str, Any]) -> list[str]:
        """The run ids of a configuration, one per replicate."""
        cj, base = canonical_json(config), self.exp.seeds.base
        return [run_ids_for(self.prefix, [cj], base, r)[0] for r in range(self.reps)]

    def read_outcomes(self, ids: list[str] | None = None, part: int | None = None) -> None:
        """Status, objective value and attempt of runs (all, or ``ids``) from the store.

        ``part``: the trial's partition number in this sweep; its records file is read
        alone when it is there (one small file, not the whole store).
        """
        import pyarrow.compute as pc

        col = METRIC_PREFIX + self.source.metric
        flt = None if ids is None else pc.field("run_id").isin(ids)
        t = self._partition_records(part, flt) if part is not None else None
        if t is None:
            t = self.store.records(columns=["run_id", "status", "attempt", col], filter=flt)
        values = t.column(col).to_pylist() if col in t.column_names else [None] * t.num_rows
        for rid, st, att, v in zip(
            t.column("run_id").to_pylist(),
            t.column("status").to_pylist(),
            t.column("attempt").to_pylist(),
            values,
            strict=True,
        ):
            self.outcomes[rid] = (st, None if v is None else float(v), int(att or 1))

    def _partition_records(self, part: int, flt: Any) -> Any:
        """The records file this sweep wrote for partition ``part`` (None: not found)."""
        from ..store.reader import concat, read_parquet_file

        folder = self.store.layout.records
        paths = sorted(folder.glob(f"{self.sweep.sweep_id}-{part:06d}-*.parquet"))
        try:
            tables = [read_parquet_file(p, None, flt) for p in paths]
        except (OSError, ValueError):
            return None
        return concat(tables) if tables else None

    def finished(self, trial: Trial) -> bool:
        """Every run of the trial has a record."""
        return all(r in self.outcomes for r in trial.run_ids)

    # asking and telling -------------------------------------------------------------
    def _ask(self, config: dict[str, Any] | None) -> Any:
        if config is not None and not self.sequential:
            self.study.enqueue_trial(to_values(self.source.space, config))
        asked = self.study.ask(self.dists)
        if config is not None and self.sequential:
            proposed = to_config(self.source.space, asked.params)
            if canonical_json(proposed) != canonical_json(config):
                optuna = need_optuna()
                warnings.warn(
                    "metalab.optimize: the sampler proposed another configuration than "
                    "the stored trial on replay; the stored trials are enqueued instead",
                    stacklevel=2,
                )
                _tell(self.study, asked, state=optuna.trial.TrialState.FAIL)
                self.sequential = False
                return self._ask(config)
        return asked

    def new_trial(self, config: dict[str, Any] | None = None) -> Trial:
        """Ask the sampler (``config``: a stored trial asked again) and list the trial."""
        asked = self._ask(config)
        if config is None:
            config = to_config(self.source.space, asked.params)
            self.ledger.append(len(self.trials), config)
        trial = Trial(len(self.trials), config, asked, self.run_ids(config))
        self.trials.append(trial)
        self.source.decided.append(config)
        return trial

    def tell(self, trial: Trial) -> None:
        """Tell the sampler the trial's aggregated objective (or that it was pruned/failed)."""
        optuna = need_optuna()
        states = optuna.trial.TrialState
        outs = [self.outcomes[r] for r in trial.run_ids]
        vals = [v for s, v, _ in outs if s == SUCCESS and v is not None and not math.isnan(v)]
        if any(s == PRUNED for s, _, _ in outs):
            _tell(self.study, trial.asked, state=states.PRUNED)
        elif len(vals) == len(outs):
            agg = statistics.median if self.source.aggregate == "median" else statistics.fmean
            _tell(self.study, trial.asked, agg(vals))
        else:
            _tell(self.study, trial.asked, state=states.FAIL)

    def replay(self) -> list[Trial]:
        """Ask and tell the ledger's trials again; returns those with runs still to do."""
        entries = self.ledger.read()
        self.source.decided.clear()
        if entries:
            self.read_outcomes()
        todo = []
        for e in entries:
            trial = self.new_trial(e["params"])
            if self.finished(trial):
                self.tell(trial)
            else:
                todo.append(trial)
        if entries and not self.sequential:
            self._reseed(len(entries))
        return todo

    def _reseed(self, n: int) -> None:
        """A new random stream for the sampler after an enqueued replay.

        Enqueued trials do not draw from the sampler's generator, so the restored
        sampler would propose the first configurations again; a seed derived from the
        number of stored trials keeps a resumed parallel search reproducible.
        """
        src = self.source
        if isinstance(src.sampler, str):
            self.study.sampler = make_sampler(src.sampler, src.seed + 7919 * n, src.space)
        else:
            self.study.sampler.reseed_rng()

    # the descriptors of a trial -----------------------------------------------------
    def frame(self, trial: Trial) -> pd.DataFrame:
        """The descriptors of the trial's runs without a record."""
        import numpy as np
        import pandas as pd

        reps = [r for r, rid in enumerate(trial.run_ids) if rid not in self.outcomes]
        text = pd.StringDtype("pyarrow")
        return pd.DataFrame(
            {
                "run_id": pd.Series([trial.run_ids[r] for r in reps], dtype=text),
                "params": pd.Series([canonical_json(trial.config)] * len(reps), dtype=text),
                "replicate": np.asarray(reps, dtype="int32"),
                "seed": np.asarray([self.exp.seeds.seed_int(r) for r in reps], dtype="int64"),
                "attempt": np.ones(len(reps), dtype="int32"),
                "trial": np.full(len(reps), trial.number, dtype="int32"),
            }
        )

    def write_pruner(self) -> None:
        """Put the pruner where workers' ``capture.should_stop()`` find it (in the store)."""
        import cloudpickle

        from ..store.atomic import atomic_write

        path = self.store.root / "search" / PRUNER_FILE
        if self.source.pruner is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        spec = {
            "metric": self.source.metric,
            "direction": self.source.direction,
            "pruner": make_pruner(self.source.pruner),
        }
        blob = cloudpickle.dumps(spec)
        atomic_write(path, lambda p: p.write_bytes(blob))


def _tell(study: Any, asked: Any, *args: Any, **kwargs: Any) -> None:
    try:
        study.tell(asked, *args, **kwargs)
    except RuntimeError as exc:
        # GridSampler calls study.stop() once the grid is covered, which only works inside
        # study.optimize; the trial is stored before (Optuna's finally), so this is benign.
        if "Study.stop" not in str(exc):
            raise


def run_search(sweep: Sweep, source: Optimize) -> None:
    """Drive the search ``source`` as the sweep ``sweep`` (see the module docstring)."""
    from .execution import TrialRunner

    search = Search(sweep, source)
    search.write_pruner()
    with sweep.executor.session() as session:
        cap = source.batch_size or max(1, session.n_workers)
        search.sequential = cap == 1
        todo = search.replay()
        _record(sweep, search)
        runner = TrialRunner(search, session)
        runner.run(todo, cap)
        runner.tally()
    _record(sweep, search, write=False)


def _record(sweep: Sweep, search: Search, *, write: bool = True) -> None:
    """The sweep's plan is the trials decided so far (for its record and its Results)."""
    sweep.planned = search.exp.plan()
    sweep.todo = sweep.planned.iloc[0:0]
    if write:
        sweep.record()
    else:
        sweep.info["planned"] = len(sweep.planned)
