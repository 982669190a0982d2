"""One run inside a partition task: call the operation, capture what it records, retry.

:func:`prepare` works out once per partition what every run shares (how to call the
operation, whether it asks for seeds or a capture); :func:`run_one` executes one run and
returns its outcome line ``[run_id, status, t0_us, t1_us, metrics, extra]``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import time_ns
from typing import TYPE_CHECKING, Any

from ..capture import (
    Capture,
    attach_seeds,
    is_plain,
    record_return,
    run_extra,
    used_checkpoints,
    was_pruned,
    was_requeued,
)
from ..context import check_context
from ..errors import OperationSignatureError
from ..operation import ALLOWED_ARGUMENTS, Operation
from ..seeds import SeedBundle
from ..store.atomic import is_disk_full
from ..store.records import FAILED, PRUNED, REQUEUED, SUCCESS, WORKER_DIED, error_outcome, now_us

if TYPE_CHECKING:
    from .partition import SweepTask
    from .timeout import RunFunction


_CALLERS: dict[tuple[str, ...], Callable[..., Any]] = {}


def _caller(wants: tuple[str, ...]) -> Callable[..., Any]:
    """A function ``(func, params, seeds, capture, context)`` passing exactly ``wants``.

    Built once per argument set, so a run pays no per-call keyword assembly.
    """
    fn = _CALLERS.get(wants)
    if fn is None:
        # Only the fixed argument names may reach eval (an explicit check, not an assert,
        # so ``python -O`` keeps it); Operation checks them at decoration time as well.
        if not set(wants) <= set(ALLOWED_ARGUMENTS):
            raise OperationSignatureError(
                f"operation arguments {wants} not among {ALLOWED_ARGUMENTS}"
            )
        args = ", ".join(f"{w}={w}" for w in wants)
        fn = eval(f"lambda func, params, seeds, capture, context: func({args})")
        _CALLERS[wants] = fn
    return fn


@dataclass(frozen=True)
class _Operation:
    """What every run of a partition shares, worked out once per partition."""

    task: SweepTask
    func: Callable[..., Any]
    call: Callable[..., Any]
    #: The operation asks for its seeds: they are tracked (checkpoints save generators).
    seeds: bool
    #: The context holds values that can change in place (checked before each run).
    watched: bool
    #: The run needs a Capture up front (the operation asks for one, or output is
    #: captured); otherwise one is made only when the operation returns metrics.
    capture: bool
    context: Any
    #: The tracked bundle of the last run of each replicate, reused while untouched.
    tracked: dict[tuple[int, ...], SeedBundle] = field(default_factory=dict)


def prepare(task: SweepTask, operation: Operation, context: Any) -> _Operation:
    """The per-partition part of running ``operation`` (see :func:`run_one`)."""
    return _Operation(
        task,
        operation.func,
        _caller(operation.wants),
        "seeds" in operation.wants,
        bool(getattr(context, "_metalab_watch", ())),
        "capture" in operation.wants or task.capture_output,
        context,
    )


def run_one(op: _Operation, run_id: str, params: dict[str, Any], seeds: SeedBundle) -> list[Any]:
    """Execute one run (with retries) and return its outcome line."""
    task, call, func, context = op.task, op.call, op.func, op.context
    tries = 0
    while True:
        cap = Capture(run_id, task.store_root) if op.capture else None
        run_seeds = seeds
        if op.seeds:  # tracked: its generators are saved with checkpoints
            last = op.tracked.get(seeds.spawn_key)
            if last is None or not last.untouched():  # the last run used its generators
                last = op.tracked[seeds.spawn_key] = seeds.tracked()
            run_seeds = last
            if cap is not None:
                attach_seeds(cap, run_seeds)
        t0 = time_ns() // 1000
        try:
            if op.watched:
                check_context(context)  # a watched value changed in place: fail the run
            if task.capture_output and cap is not None:  # (op.capture: a Capture exists)
                from ..capture.output import captured_output

                with captured_output(cap):
                    ret = call(func, params, run_seeds, cap, context)
            else:
                ret = call(func, params, run_seeds, cap, context)
            if ret is not None:
                if cap is None:
                    cap = Capture(run_id, task.store_root)
                record_return(cap, ret)
        except KeyboardInterrupt:
            raise  # only the user's Ctrl-C stops a sweep
        except BaseException as exc:  # sys.exit(), CancelledError...: this run's failure
            if is_disk_full(exc):
                raise  # every later write would fail too: stop the sweep (a StoreError)
            t1 = time_ns() // 1000
            if tries < task.retries:
                tries += 1
                continue
            extra = (run_extra(cap) if cap is not None else None) or {}
            if tries:
                extra["retries"] = tries
            return error_outcome(
                run_id,
                FAILED,
                t0,
                t1,
                type(exc).__qualname__,
                str(exc),
                traceback=traceback.format_exc(),
                metrics=cap.scalars if cap is not None else {},
                extra=extra,
            )
        t1 = time_ns() // 1000
        if cap is None:  # no capture asked for, nothing returned
            return [run_id, SUCCESS, t0, t1, {}, {"retries": tries} if tries else None]
        done = run_extra(cap)
        if tries:
            done = done or {}
            done["retries"] = tries
        if is_plain(cap):  # no checkpoint, not pruned: a success
            return [run_id, SUCCESS, t0, t1, cap.scalars, done]
        return _finished(task, cap, [run_id, SUCCESS, t0, t1, cap.scalars, done])


def _finished(task: SweepTask, cap: Capture, out: list[Any]) -> list[Any]:
    """A returning run's outcome: requeued (it checkpointed when due), pruned or success."""
    if was_requeued(cap):
        # Its stepped metrics are in the checkpoint and come back with restore(): a
        # copy in this record would be a second copy of each step.
        extra = {k: v for k, v in (out[5] or {}).items() if k != "steps"}
        return [out[0], REQUEUED, out[2], out[3], out[4], extra or None]
    if was_pruned(cap):
        out[1] = PRUNED
    if used_checkpoints(cap):  # done: nothing will continue from its checkpoints
        from ..capture.checkpoint import discard

        discard(Path(task.store_root), out[0])
    return out


def in_this_process(task: SweepTask, operation: Operation, context: Any) -> RunFunction:
    """``execute(run_id, params, replicate)``: one run in this process (see :func:`run_one`)."""
    bundles: dict[int, SeedBundle] = {}
    op = prepare(task, operation, context)

    def execute(run_id: str, params: dict[str, Any], replicate: int) -> list[Any]:
        bundle = bundles.get(replicate)
        if bundle is None:
            bundle = bundles[replicate] = SeedBundle(task.seed_base, (replicate,))
        return run_one(op, run_id, params, bundle)

    return execute


def worker_died_outcome(run_id: str, deaths: int) -> list[Any]:
    """The outcome of a run that was in flight each time its worker died, too often."""
    now = now_us()
    return error_outcome(
        run_id,
        FAILED,
        now,
        now,
        WORKER_DIED,
        f"worker died while running this run ({deaths} times); it "
        "probably crashes its process (segfault, os._exit, out of memory)",
    )
