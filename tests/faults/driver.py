"""A sweep driver run as a subprocess by the fault-injection tests.

Each execution of a run appends ``<x>\\n`` to the side-channel file ``--log`` (one
``write`` on an ``O_APPEND`` file, so lines of concurrent processes never interleave),
which lets the tests count how often every run was executed.

Exit code 0 when the sweep finished; an interrupt leaves ``RunInterrupted`` uncaught.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import metalab


def _log(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def build(args: argparse.Namespace) -> metalab.Experiment:
    log, sleep, stubborn = args.log, args.sleep, args.stubborn

    @metalab.operation(name="faulty", version="1")
    def faulty(params, capture):
        _log(log, f"{params['x']}\n")
        if stubborn:  # swallows Ctrl-C: only a second interrupt can stop the driver
            t_end = time.monotonic() + 600
            while time.monotonic() < t_end:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    pass
        time.sleep(sleep)
        capture.metric("y", params["x"] * 2)

    return metalab.Experiment(
        name="faults",
        operation=faulty,
        params=metalab.grid(x=list(range(args.start, args.stop))),
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--stop", type=int, default=40)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--executor", choices=["local", "thread", "process"], default="local")
    ap.add_argument("--partition-size", type=int, default=None)
    ap.add_argument("--go", default=None, help="wait until this file exists, then start")
    ap.add_argument("--stubborn", action="store_true")
    args = ap.parse_args()
    exp = build(args)
    executor = {
        "local": None,
        "thread": metalab.ThreadExecutor(2),
        "process": metalab.ProcessExecutor(2),
    }[args.executor]
    print("driver: ready", flush=True)
    if args.go:
        while not os.path.exists(args.go):
            time.sleep(0.001)
    print("driver: started", flush=True)
    # RunInterrupted is not caught: the tests check what a user's script does on Ctrl-C.
    res = metalab.run(exp, store=args.store, executor=executor, partition_size=args.partition_size)
    print(json.dumps(res.counts()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
