"""The ask -> run -> tell loop of a search, over the sweep's partition tasks.

Each trial is one partition of the sweep (its configuration x the replicates), run by
the sweep's own ``run_partition`` (see :mod:`metalab.search.execution`); its partition
number is its trial number, so journals never collide.  With N workers (or ``batch_size=N``) N
trials run at once; on a cluster a new trial is asked as soon as one finishes (and by
default each worker holds one more, asked ahead).

The store is the source of truth.  On every start the ledger
(:mod:`metalab.search.ledger`) lists the trials asked so far; each is asked again
from a fresh study (sequential searches: the same seed proposes the same
configuration, which is checked; otherwise the configuration is enqueued), and told
the result its runs left in the records.  Trials whose runs lack a record run first.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._hashing import canonical_json, run_ids_for
from ..store.records import METRIC_PREFIX, PRUNED, SUCCESS
from .ledger import Ledger
from .space import to_config, to_optuna, to_values
from .study import make_pruner, make_sampler, need_optuna, new_study

if TYPE_CHECKING:
    from collections.abc import Callable

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
    params_json: str  # the configuration's canonical JSON (its runs' ``params``)


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
        self.states = need_optuna().trial.TrialState
        self._seeds: dict[int, int] = {}  # replicate -> its seed (hashing costs ~0.1 ms)
        self.told = 0  # trials told so far (the progress bar)
        self.best: float | None = None  # the best aggregated objective told so far

    # runs and their records -------------------------------------------------------
    def run_ids(self, params_json: str) -> list[str]:
        """The run ids of a configuration (its canonical JSON), one per replicate."""
        base = self.exp.seeds.base
        return [run_ids_for(self.prefix, [params_json], base, r)[0] for r in range(self.reps)]

    def read_outcomes(self, ids: list[str] | None = None) -> None:
        """Status, objective value and attempt of runs (all, or ``ids``) from the store."""
        import pyarrow.compute as pc

        col = METRIC_PREFIX + self.source.metric
        flt = None if ids is None else pc.field("run_id").isin(ids)
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
            cj = canonical_json(config)
            self.ledger.append(len(self.trials), cj)
        else:
            cj = canonical_json(config)
        trial = Trial(len(self.trials), config, asked, self.run_ids(cj), cj)
        self.trials.append(trial)
        self.source.decided.append(config)
        return trial

    def tell(self, trial: Trial) -> None:
        """Tell the sampler the trial's aggregated objective (or that it was pruned/failed)."""
        states = self.states
        outs = [self.outcomes[r] for r in trial.run_ids]
        vals = [v for s, v, _ in outs if s == SUCCESS and v is not None and not math.isnan(v)]
        if any(s == PRUNED for s, _, _ in outs):
            _tell(self.study, trial.asked, state=states.PRUNED)
        elif len(vals) == len(outs):
            agg = statistics.median if self.source.aggregate == "median" else statistics.fmean
            value = agg(vals)
            _tell(self.study, trial.asked, value)
            self._better(value)
        else:
            _tell(self.study, trial.asked, state=states.FAIL)
        self.told += 1

    def _better(self, value: float) -> None:
        if self.best is None or math.isnan(self.best):
            self.best = value
        elif self.source.direction == "minimize":
            self.best = min(self.best, value)
        else:
            self.best = max(self.best, value)

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
    def columns(self, trial: Trial) -> dict[str, list[Any]]:
        """The descriptor columns of the trial's runs without a record."""
        reps = [r for r, rid in enumerate(trial.run_ids) if rid not in self.outcomes]
        return {
            "run_id": [trial.run_ids[r] for r in reps],
            "params": [trial.params_json] * len(reps),
            "replicate": reps,
            "seed": [self.seed(r) for r in reps],
            "attempt": [1] * len(reps),
        }

    def seed(self, replicate: int) -> int:
        """The seed of a replicate (cached: hashing costs ~0.1 ms)."""
        seed = self._seeds.get(replicate)
        if seed is None:
            seed = self._seeds[replicate] = self.exp.seeds.seed_int(replicate)
        return seed

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


def _tell(study: Any, asked: Any, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` without its deep copy of the told trial (~0.3 ms, a tenth of a
    TPE trial): Optuna's own ``optimize`` loop calls the same internal function."""
    try:
        _optuna_tell()(study, asked, value, state)
    except RuntimeError as exc:
        # GridSampler calls study.stop() once the grid is covered, which only works inside
        # study.optimize; the trial is stored before (Optuna's finally), so this is benign.
        if "Study.stop" not in str(exc):
            raise


@functools.cache
def _optuna_tell() -> Any:
    """Optuna's internal tell (what ``Study.tell`` calls), or ``Study.tell`` itself."""
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # a future Optuna without it: the public method
        return lambda study, trial, value, state: study.tell(trial, value, state)
    return _tell_with_warning


def run_search(sweep: Sweep, source: Optimize) -> None:
    """Drive the search ``source`` as the sweep ``sweep`` (see the module docstring)."""
    from ..errors import ExecutorError
    from ..store.records import SWEEP_INCOMPLETE

    search = Search(sweep, source)
    search.write_pruner()
    recording: _Background | None = None
    try:
        with sweep.executor.sweep_session() as session:
            cap = source.batch_size or max(1, session.n_workers)
            search.sequential = cap == 1
            todo = search.replay()
            # The sweep's record waits for its provenance (git calls) and is fsynced:
            # written while the first trials run, not before them (the ledger and the
            # records, not the sweep's record, are what a resume reads).
            replayed = list(search.trials)

            def record() -> None:
                _plan(sweep, replayed, search.seed)
                sweep.record()

            recording = _Background(record, "metalab-search-record")
            _run(search, session, todo, cap)
    except ExecutorError:  # the cluster failed: what finished is kept, resume finishes it
        sweep.status = SWEEP_INCOMPLETE
        raise
    finally:
        search.ledger.close()
        if recording is not None:
            recording.wait()  # before run() completes the record (Sweep.finish)
    if recording is not None:
        recording.check()
    _plan(sweep, search.trials, search.seed)
    sweep.info["planned"] = len(sweep.planned)


class _Background:
    """A call in a thread; :meth:`check` raises what it raised."""

    def __init__(self, fn: Any, name: str) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _work(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # raised in the driver's thread by check()
            self.error = exc

    def wait(self) -> None:
        """Wait for the call to end."""
        self._thread.join()

    def check(self) -> None:
        """Wait, then raise the call's error, if any."""
        self.wait()
        if self.error is not None:
            raise self.error


def _run(search: Search, session: Any, todo: list[Trial], cap: int) -> None:
    """Run the trials on the session, with the progress bar when asked."""
    from .execution import TrialRunner
    from .progress import SearchProgress

    sweep, source = search.sweep, search.source
    runner = TrialRunner(search, session)
    bar = SearchProgress(
        source.n_trials, source.metric, enabled=sweep.options.progress, label=search.exp.name
    )
    with bar:
        bar.update(search.told, search.best)
        runner.on_told = lambda: bar.update(search.told, search.best)
        runner.run(todo, cap)
    runner.check()


def _plan(sweep: Sweep, trials: list[Trial], seed: Callable[[int], int]) -> None:
    """The sweep's plan is the runs of the trials decided so far (for its record and its
    Results), as ``Experiment.plan`` lists them, from the trials' own run ids."""
    import numpy as np
    import pandas as pd

    ids: list[str] = []
    params: list[str] = []
    reps: list[int] = []
    seen: set[str] = set()
    for t in trials:
        for r, rid in enumerate(t.run_ids):
            if rid not in seen:  # a configuration proposed twice: its runs once
                seen.add(rid)
                ids.append(rid)
                params.append(t.params_json)
                reps.append(r)
    text = pd.StringDtype("pyarrow")
    sweep.planned = pd.DataFrame(
        {
            "run_id": pd.array(ids, dtype=text),
            "params": pd.array(params, dtype=text),
            "replicate": np.asarray(reps, dtype="int32"),
            "seed": np.asarray([seed(r) for r in reps], dtype="int64"),
            "attempt": np.ones(len(ids), dtype="int32"),
        },
        copy=False,
    )
    sweep.todo = sweep.planned.iloc[0:0]
