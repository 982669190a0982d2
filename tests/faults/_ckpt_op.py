"""A checkpointing operation for the kill tests, importable by a driver subprocess.

Every epoch appends ``<x> <epoch> <pid>`` to the side-channel log (``O_APPEND``), so a
test can count the epochs run twice.  ``pause_at`` makes the run of ``x == 0`` write
its pid to ``<log>.pid`` and wait (once) at that epoch, after a checkpoint, until the
test kills its process; ``term_at`` makes it send SIGTERM to its own process instead.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import metalab

EPOCHS = 16
EVERY = 4  # a checkpoint after epochs 3, 7, 11, 15


def _log(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def build(
    log: str,
    *,
    pause_at: int | None = None,
    term_at: int | None = None,
    n: int = 2,
    epoch_s: float = 0.0,
    margin_s: float | None = None,
) -> metalab.Experiment:
    """The experiment: ``n`` runs of 16 epochs, checkpointing every 4.

    ``epoch_s`` sleeps in each epoch; ``margin_s`` is passed to ``checkpoint_due``.
    """

    @metalab.operation(name="ckpt", version="1")
    def train(params, seeds, capture):
        state = capture.restore() or {"epoch": 0, "w": np.zeros(8)}
        rng = seeds.numpy()
        extra = seeds.derive("noise").rng()
        for epoch in range(state["epoch"], EPOCHS):
            _log(log, f"{params['x']} {epoch} {os.getpid()}\n")
            state["w"] += rng.normal(size=8) + extra.random()
            state["epoch"] = epoch + 1
            capture.metric("loss", float(np.abs(state["w"]).sum()), step=epoch)
            time.sleep(epoch_s)
            if capture.checkpoint_due(margin_s=margin_s):
                capture.checkpoint(state)
                return
            if epoch % EVERY == EVERY - 1:
                capture.checkpoint(state)
            once = Path(log + ".once")
            if params["x"] == 0 and epoch in (pause_at, term_at) and not once.exists():
                once.touch()
                if epoch == term_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                else:
                    Path(log + ".pid").write_text(str(os.getpid()))
                    time.sleep(600)  # until the test kills this process
        capture.metric("final", float(state["w"].sum()))

    return metalab.Experiment(name="ckpt", operation=train, params=metalab.grid(x=list(range(n))))


if __name__ == "__main__":  # python _ckpt_op.py STORE LOG PAUSE_AT
    metalab.run(build(sys.argv[2], pause_at=int(sys.argv[3])), store=sys.argv[1])
