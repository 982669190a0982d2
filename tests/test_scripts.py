"""The README's ProcessExecutor snippet run as a plain script, in a real Python process.

Workers must not re-import the script: without ``if __name__ == "__main__":`` the sweep
works, and module-level code runs exactly once (in the driver), with or without the guard.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metalab

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SNIPPET = """\
import metalab

with open({side!r}, "a") as f:  # module-level side effect, counted by the test
    f.write("imported\\n")


@metalab.operation(name="pi_mc", version="0.1")
def estimate_pi(params, seeds, capture):
    n = params["n_samples"]
    rng = seeds.numpy()
    x, y = rng.random(n), rng.random(n)
    capture.metric("pi_estimate", 4.0 * (x**2 + y**2 <= 1).mean())


exp = metalab.Experiment(
    name="pi_mc",
    version="0.1",
    context={{}},
    operation=estimate_pi,
    params=metalab.grid(n_samples=[100, 1000]),
    seeds=metalab.seeds(base=42, replicates=2),
)
"""

PLAIN = """
result = metalab.run(exp, executor=metalab.ProcessExecutor(max_workers=2))
print(result.table())
"""

GUARDED = """
if __name__ == "__main__":
    result = metalab.run(exp, executor=metalab.ProcessExecutor(max_workers=2))
    print(result.table())
"""


def _run_script(tmp_path: Path, tail: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    side = tmp_path / "side.txt"
    script = tmp_path / "study.py"
    script.write_text(SNIPPET.format(side=str(side)) + textwrap.dedent(tail))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, side


def _check(proc: subprocess.CompletedProcess[str], side: Path, tmp_path: Path) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Nanny" not in proc.stderr, proc.stderr
    assert side.read_text() == "imported\n"  # the script ran once: in the driver only
    res = metalab.load_results(tmp_path / "runs" / "pi_mc")
    df = res.to_pandas()
    assert len(df) == 4 and (df["status"] == "success").all()
    assert "pi_estimate" in proc.stdout


def test_snippet_without_main_guard_runs_as_a_script(tmp_path):
    proc, side = _run_script(tmp_path, PLAIN)
    _check(proc, side, tmp_path)


def test_module_level_code_runs_once_with_the_main_guard(tmp_path):
    proc, side = _run_script(tmp_path, GUARDED)
    _check(proc, side, tmp_path)
