"""Resume after an interruption: completed runs are kept, the rest run on the next call.

The first sweep is interrupted halfway by a real SIGINT (what Ctrl-C sends). metalab
keeps every completed run, raises ``metalab.RunInterrupted``, and the second call with
the default ``resume=True`` runs only what is missing.

    uv run python examples/resume.py
"""

import os
import signal
import time

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite
N = 8 if SMALL else 20
interrupt_after = [N // 2]  # simulate Ctrl-C after this many runs (first sweep only)
calls = []


@metalab.operation(name="slow_square", version="1")
def slow_square(params, capture):
    if interrupt_after and len(calls) == interrupt_after[0]:
        os.kill(os.getpid(), signal.SIGINT)  # exactly what pressing Ctrl-C does
    calls.append(params["i"])
    time.sleep(0.01)
    capture.metric("square", params["i"] ** 2)


exp = metalab.Experiment(
    name="resume_demo",
    version="1",
    operation=slow_square,
    params=metalab.grid(i=list(range(N))),
)


if __name__ == "__main__":
    store = "runs/resume_demo"
    try:
        metalab.run(exp, store=store, resume=False)
    except metalab.RunInterrupted as exc:
        print(f"interrupted: {exc}")
    done = metalab.load_results(store)
    print(f"after the interruption the store holds {len(done)} of {N} runs")

    interrupt_after.clear()
    calls.clear()
    result = metalab.run(exp, store=store)  # resume=True is the default
    print(f"resumed: ran {len(calls)} runs, skipped {N - len(calls)} already done")
    print(f"now {len(result)} runs, {result.counts()}")
