"""The ``metalab`` command line, run as a real subprocess on real stores."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metalab.cli import CLIError, parse_executor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "metalab"

EXPERIMENT = """
import metalab

@metalab.operation(name="cli_demo", version="1")
def op(params, seeds, capture):
    if params["x"] == 3:
        raise RuntimeError("x=3 is not allowed")
    for step in range(3):
        capture.metric("loss", 1.0 / (step + 1 + params["x"]), step=step)
    capture.metric("y", params["x"] * 2 + seeds.numpy().random())

exp = metalab.Experiment(
    name="cli_demo", version="1", operation=op,
    params=metalab.grid(x=[1, 2, 3], mode=["a", "b"]),
    seeds=metalab.seeds(base=1, replicates=2),
)
other = "not an experiment"
"""


def metalab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m metalab ARGS`` in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALAB")}
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metalab: error: "), proc.stderr
    for f in fragments:
        assert f in lines[0]


@pytest.fixture
def exp_file(tmp_path) -> Path:
    path = tmp_path / "exps.py"
    path.write_text(EXPERIMENT)
    return path


@pytest.fixture
def store(tmp_path, exp_file) -> Path:
    """A real store made by ``metalab run`` (12 runs, 2 settings fail)."""
    proc = metalab("run", "exps.py:exp", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # some runs failed
    return tmp_path / "runs" / "cli_demo"


# -- help and entry points ------------------------------------------------------------
@pytest.mark.parametrize("command", ["ls", "show", "table", "run", "report"])
def test_every_command_has_help(command):
    proc = metalab(command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: metalab {command}")


def test_main_help_version_and_console_script():
    proc = metalab("--help")
    assert proc.returncode == 0
    for command in ("ls", "show", "table", "run", "report"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, flags=re.M)
    assert metalab("--version").stdout.startswith("metalab ")
    assert metalab().returncode == 2  # no command: help on stdout, usage status
    assert SCRIPT.exists(), "the console script is not installed (uv sync)"
    proc = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "report" in proc.stdout


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from metalab.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'dask', 'distributed', 'matplotlib')"
        " if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


# -- run ------------------------------------------------------------------------------
def test_run_prints_table_and_resumes(tmp_path, exp_file):
    proc = metalab("run", "exps.py:exp", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.count("success") == 8 and proc.stdout.count("failed") == 4
    assert "cli_demo: 12 runs (8 success, 4 failed)" in proc.stderr
    assert "metalab show runs/cli_demo" in proc.stderr
    assert "Traceback" not in proc.stderr

    # Resume: only the failed runs run again (and fail again).
    proc = metalab("run", "exps.py", "--quiet", cwd=tmp_path)  # one experiment: name optional
    assert proc.returncode == 1 and proc.stdout == ""
    show = metalab("show", "runs/cli_demo", cwd=tmp_path).stdout
    assert "planned 12, to run 12, skipped 0" in show
    assert "planned 12, to run 4, skipped 8" in show


def test_run_from_module_with_options(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sweeps.py").write_text(EXPERIMENT.replace("x=[1, 2, 3]", "x=[1, 2]"))
    proc = metalab(
        "run",
        "mypkg.sweeps:exp",
        "--executor",
        "threads:2",
        "--store",
        "out/s1",
        "--progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "s1" / "manifest.json").exists()
    proc = metalab(
        "run", "mypkg.sweeps:exp", "--store", "out/s1", "--no-resume", "-q", cwd=tmp_path
    )
    assert proc.returncode == 0
    assert "planned 8, to run 8, skipped 0" in metalab("show", "out/s1", cwd=tmp_path).stdout


@pytest.mark.cluster
def test_run_on_processes_and_on_a_scheduler_address(tmp_path, exp_file, local_cluster):
    proc = metalab("run", "exps.py:exp", "--executor", "processes:2", "-q", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "12 runs (8 success, 4 failed)" in proc.stderr
    proc = metalab(
        "run",
        "exps.py:exp",
        "--executor",
        local_cluster.scheduler_address,
        "--no-resume",
        "--store",
        "runs/on_cluster",
        "-q",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "12 runs (8 success, 4 failed)" in proc.stderr


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("missing.py:exp", ["no such file: missing.py"]),
        ("exps.py:nope", ["has no attribute 'nope'", "experiments defined there: exp"]),
        ("exps.py:other", ["is of type str, not a metalab.Experiment"]),
        ("no_such_module:exp", ["no module named 'no_such_module'"]),
        ("broken.py:exp", ["error while importing broken.py", "SyntaxError", "broken.py:2"]),
        ("raises.py:exp", ["error while importing raises.py", "ZeroDivisionError", "raises.py:3"]),
        ("two.py", ["defines 2 experiments (a, b)", "two.py:NAME"]),
    ],
)
def test_run_user_mistakes_are_one_line(tmp_path, exp_file, target, fragments):
    (tmp_path / "broken.py").write_text("import metalab\nexp = (\n")
    (tmp_path / "raises.py").write_text("import metalab\n\nx = 1 / 0\n")
    (tmp_path / "two.py").write_text(EXPERIMENT + "\na = exp\nb = exp\ndel exp\n")
    assert_user_error(metalab("run", target, cwd=tmp_path), *fragments)


def test_run_bad_executor_and_bad_experiment(tmp_path, exp_file):
    assert_user_error(
        metalab("run", "exps.py:exp", "--executor", "gpu:3", cwd=tmp_path),
        "unknown executor 'gpu:3'",
    )
    assert_user_error(
        metalab("run", "exps.py:exp", "--executor", "processes:0", cwd=tmp_path),
        "worker count must be a positive integer",
    )
    # A metalab error raised by run() itself: the store belongs to another experiment.
    other = tmp_path / "taken"
    assert metalab("run", "exps.py:exp", "--store", str(other), "-q", cwd=tmp_path).returncode
    (tmp_path / "exps2.py").write_text(EXPERIMENT.replace('name="cli_demo"', 'name="x2"'))
    assert_user_error(
        metalab("run", "exps2.py:exp", "--store", str(other), cwd=tmp_path),
        "belongs to experiment 'cli_demo'",
    )


def test_parse_executor():
    from metalab import executors

    assert type(parse_executor("local")).__name__ == "LocalExecutor"
    assert parse_executor("threads:3").max_workers == 3
    assert parse_executor("processes:2").max_workers == 2
    assert parse_executor("tcp://127.0.0.1:8786").target == "tcp://127.0.0.1:8786"
    with pytest.raises(CLIError, match="unknown executor"):
        parse_executor("local:3")
    if hasattr(executors, "SlurmExecutor"):
        ex = parse_executor("slurm:3")
        assert type(ex).__name__ == "SlurmExecutor" and ex.jobs == 3
        assert type(parse_executor("pbs")).__name__ == "PBSExecutor"
    else:
        with pytest.raises(CLIError, match="metalab\\[hpc\\]"):
            parse_executor("slurm")


# -- ls / show / table / report -------------------------------------------------------
def test_ls(tmp_path, store):
    proc = metalab("ls", cwd=tmp_path)
    assert proc.returncode == 0
    header, row = proc.stdout.strip().splitlines()
    assert header.split() == ["STORE", "EXPERIMENT", "RUNS", "STATUS", "LAST", "SWEEP"]
    assert row.split()[:3] == ["runs/cli_demo", "cli_demo", "12"]
    assert "8 success, 4 failed" in row
    # a store itself, and a folder without stores
    assert "8 success" in metalab("ls", str(store)).stdout
    (tmp_path / "empty").mkdir()
    assert "no metalab stores under" in metalab("ls", str(tmp_path / "empty")).stdout
    assert_user_error(metalab("ls", str(tmp_path / "missing")), "no such folder")


def test_show(tmp_path, store):
    proc = metalab("show", str(store))
    assert proc.returncode == 0
    out = proc.stdout
    assert re.search(r"^experiment\s+cli_demo$", out, flags=re.M)
    assert re.search(r"^operation\s+cli_demo$", out, flags=re.M)
    assert '"replicates": 2' in out
    assert "12 (8 success, 4 failed)" in out
    assert "failures (4)" in out
    assert out.count("RuntimeError: x=3 is not allowed") == 4
    assert out.count('exps.py", line 7, in op') == 4  # the error's location
    assert "1 more (--max-failures N)" in metalab("show", str(store), "--max-failures", "3").stdout
    assert_user_error(metalab("show", str(tmp_path)), "not a metalab store")
    assert_user_error(metalab("show", str(tmp_path / "nope")), "no metalab store at")


def test_table(tmp_path, store):
    proc = metalab("table", str(store))
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["run_id", "mode", "x"] and len(lines) == 13

    proc = metalab("table", str(store), "--group-by", "x")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == [
        "x",
        "loss[last]_mean",  # a stepped metric says how it became one number
        "loss[last]_std",
        "loss[last]_count",
        "y_mean",
        "y_std",
        "y_count",
    ]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2"]  # x=3 never succeeded

    proc = metalab("table", str(store), "--group-by", "x", "mode", "--csv", "s.csv", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "wrote s.csv"
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 4 and rows[0]["y_count"] == "2"
    assert metalab("table", str(store), "--csv", "all.csv", cwd=tmp_path).returncode == 0
    assert len(list(csv.DictReader((tmp_path / "all.csv").open()))) == 12

    assert_user_error(
        metalab("table", str(store), "--group-by", "z"),
        "--group-by z: no such parameter",
        "['mode', 'x']",
    )


def test_report(tmp_path, store):
    proc = metalab("report", str(store), "-o", "out/r.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wrote out/r.html"
    page = (tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    assert "<title>cli_demo · metalab report</title>" in page and "<svg" in page
    assert "x=3 is not allowed" in page
    assert_user_error(metalab("report", str(tmp_path / "nope")), "no metalab store")


# -- every command documented in docs/cli.md ------------------------------------------
def documented_commands() -> list[str]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        commands += [ln[2:] for ln in block.splitlines() if ln.startswith("$ metalab")]
    return commands


@pytest.mark.slow
def test_every_documented_command_runs(tmp_path):
    commands = documented_commands()
    assert len(commands) >= 8
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "pi_mc.py", tmp_path / "examples" / "pi_mc.py")
    for command in commands:
        args = command.split()[1:]
        proc = metalab(*args, cwd=tmp_path)
        assert proc.returncode == 0, f"{command}:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "pi_summary.csv").exists()
    assert (tmp_path / "runs" / "pi_again" / "manifest.json").exists()


def test_docs_describe_what_the_parser_offers():
    """Every option of `metalab run` and `metalab table` appears in docs/cli.md."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for option in (
        "--executor",
        "--store",
        "--no-resume",
        "--progress",
        "--quiet",
        "--group-by",
        "--csv",
        "--max-failures",
        "-o",
        "--set",
        "--retries",
        "--timeout",
        "--partition-size",
        "--no-retry-failed",
        "--metrics",
        "--stats",
        "--filter",
        "--sort",
        "--reduce",
    ):
        assert option in text
    doc = textwrap.dedent(parse_executor.__doc__ or "")
    assert "slurm" in doc and "processes" in doc


SLOW_EXPERIMENT = """
import os, time
import metalab

@metalab.operation(name="slow", version="1")
def slow(params, capture):
    gate = os.environ.get("METALAB_TEST_GATE")
    if gate and params["i"] == 10:  # tell the test, then wait for its Ctrl-C (bounded)
        open(gate, "w").close()
        time.sleep(120)
    time.sleep(0.05)
    capture.metric("x", params["i"])

exp = metalab.Experiment("slow_cli", slow, params=metalab.grid(i=list(range(400))))
"""


def test_run_interrupted_prints_the_cli_command_that_resumes(tmp_path):
    import signal
    import time

    path = tmp_path / "slow_exp.py"
    path.write_text(SLOW_EXPERIMENT)
    gate = tmp_path / "at-run-10"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metalab", "run", f"{path}:exp", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "METALAB_TEST_GATE": str(gate)},
    )
    deadline = time.monotonic() + 240  # a bound for a broken sweep, not a timing threshold
    while not gate.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # runs 0-9 finished, run 10 is in flight
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("Resume with:") == 1, err
    assert f"Resume with: metalab run {path}:exp" in err
    assert "Traceback" not in err
    assert metalab_results_count(tmp_path / "runs" / "slow_cli") == 10  # nothing finished is lost
    again = metalab("run", f"{path}:exp", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert metalab_results_count(tmp_path / "runs" / "slow_cli") == 400


def metalab_results_count(store: Path) -> int:
    import metalab as ml

    return len(ml.load_results(store))


# -- table options, run options, progress bar ------------------------------------------
def _rows(stdout: str) -> list[list[str]]:
    return [ln.split() for ln in stdout.strip().splitlines()]


def test_table_metrics_filter_sort_reduce(tmp_path, store):
    proc = metalab("table", str(store), "--metrics", "y", "--filter", "x=1,2", "--filter", "mode=a")
    assert proc.returncode == 0, proc.stderr
    header, *rows = _rows(proc.stdout)
    assert "y" in header and "loss" not in header
    assert len(rows) == 4
    assert {r[header.index("x")] for r in rows} == {"1", "2"}
    assert {r[header.index("mode")] for r in rows} == {"a"}

    proc = metalab("table", str(store), "--filter", "y>4", "--filter", "status!=failed")
    header, *rows = _rows(proc.stdout)
    assert rows and all(float(r[header.index("y")]) > 4 for r in rows)

    proc = metalab("table", str(store), "--filter", "status=success", "--sort=-y")
    header, *rows = _rows(proc.stdout)
    ys = [float(r[header.index("y")]) for r in rows]
    assert len(ys) == 8 and ys == sorted(ys, reverse=True)

    proc = metalab("table", str(store), "--reduce", "mean", "--filter", "x=1", "--metrics", "loss")
    header, *rows = _rows(proc.stdout)
    assert "loss[mean]" in header and "loss" not in header and "y" not in header
    mean = sum(1.0 / (s + 2) for s in range(3)) / 3  # x=1: loss = 1/(step+2)
    assert {r[header.index("loss[mean]")] for r in rows} == {f"{mean:.6g}"}

    proc = metalab(
        "table", str(store), "--group-by", "x", "--stats", "mean", "max", "--reduce", "min"
    )
    header, *rows = _rows(proc.stdout)
    assert header[0] == "x"
    assert sorted(header[1:]) == ["loss[min]_max", "loss[min]_mean", "y_max", "y_mean"]
    assert [r[0] for r in rows] == ["1", "2"]  # x=3 always fails
    assert rows[0][header.index("loss[min]_mean")] == f"{1 / 4:.6g}"


def test_table_option_mistakes_are_one_line(store):
    assert_user_error(metalab("table", str(store), "--stats", "mean"), "--stats needs --group-by")
    assert_user_error(metalab("table", str(store), "--metrics", "yy"), "yy", "'y'", "'loss'")
    assert_user_error(metalab("table", str(store), "--filter", "x"), "NAME=VALUE")
    assert_user_error(metalab("table", str(store), "--filter", "z<1"), "no column 'z'", "'x'")
    assert_user_error(metalab("table", str(store), "--sort", "nope"), "--sort nope", "run_id")


@pytest.mark.cluster
@pytest.mark.slow
def test_table_rows_in_plan_order_after_processes(tmp_path, exp_file):
    proc = metalab(
        "run", "exps.py:exp", "--executor", "processes:2", "--partition-size", "1", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    key = ["x", "mode", "replicate"]

    def order(stdout: str) -> list[tuple[str, ...]]:
        header, *rows = _rows(stdout)
        return [tuple(r[header.index(k)] for k in key) for r in rows]

    # `metalab run` prints the experiment's plan: grid(x=..., mode=...), last axis fastest
    plan = [(x, m, r) for x in "123" for m in "ab" for r in "01"]
    assert order(proc.stdout) == plan
    # `metalab table` has no plan, only the store: it rebuilds the plan's order from the
    # manifest (grid axes as given, not alphabetically), never the order runs finished in
    proc = metalab("table", "runs/cli_demo", cwd=tmp_path)
    assert order(proc.stdout) == plan


def test_run_options_and_set_overrides(tmp_path, exp_file):
    proc = metalab(
        "run", "exps.py:exp", "--set", "x=1,2", "--set", "mode=b", "--retries", "1",
        "--timeout", "60", "--partition-size", "2", "--store", "runs/s", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4 runs (4 success)" in proc.stderr
    header, *rows = _rows(proc.stdout)
    assert [(r[header.index("x")], r[header.index("mode")]) for r in rows] == [
        ("1", "b"), ("1", "b"), ("2", "b"), ("2", "b"),
    ]  # fmt: skip
    # x=3 fails; --no-retry-failed keeps the failure on the next resume
    proc = metalab("run", "exps.py:exp", "--set", "x=3", "--store", "runs/f", "-q", cwd=tmp_path)
    assert proc.returncode == 1
    proc = metalab(
        "run", "exps.py:exp", "--set", "x=3", "--store", "runs/f", "--no-retry-failed",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1  # the failure is still there, not run again
    import json

    sweeps = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "f" / "sweeps").glob("*.json")
    ]
    latest = max(sweeps, key=lambda s: s["started"])  # names order only by start millisecond
    assert latest["to_run"] == 0
    assert_user_error(
        metalab("run", "exps.py:exp", "--set", "depth=2", cwd=tmp_path),
        "--set depth",
        "['mode', 'x']",
    )
    assert_user_error(metalab("run", "exps.py:exp", "--set", "x", cwd=tmp_path), "NAME=VALUE")


def test_set_overrides_on_every_kind_of_source():
    import metalab as ml
    from metalab.cli_loading import apply_sets

    op = ml.operation(name="o", version="1")(lambda params: None)

    def exp(params):
        return ml.Experiment(name="e", operation=op, params=params)

    got = apply_sets(exp(ml.grid(a=[1, 2], b=["x"], c=[False])), ["a=3,4", 'b="1"', "c=true"])
    assert list(got.params) == [{"a": 3, "b": "1", "c": True}, {"a": 4, "b": "1", "c": True}]
    got = apply_sets(exp(ml.manual([{"a": 1}, {"a": 2, "c": 0}, {"c": 5}])), ["a=7,8"])
    assert list(got.params) == [{"a": 7}, {"a": 8}, {"a": 7, "c": 0}, {"a": 8, "c": 0}, {"c": 5}]
    rnd = ml.random({"lr": ml.loguniform(1e-4, 1e-1), "d": ml.uniform(0, 1)}, n_trials=5)
    got = apply_sets(exp(rnd), ["lr=0.5,0.1"])
    assert [c["lr"] for c in got.params] == [0.5, 0.1] * 5
    assert [c["d"] for c in got.params][::2] == [c["d"] for c in rnd]  # the same draws
    got = apply_sets(exp(ml.grid(a=[1]) * ml.grid(b=[1, 2])), ["b=[1, 2],3"])
    assert list(got.params) == [{"a": 1, "b": [1, 2]}, {"a": 1, "b": 3}]
    with pytest.raises(CLIError, match=r"no param 'z'; params: \['a', 'b'\]"):
        apply_sets(exp(ml.grid(a=[1]) + ml.grid(b=[2])), ["z=1"])


@pytest.mark.parametrize("total,failed,skipped", [(100000, 123, 4567), (60, 0, 0), (9, 9, 0)])
def test_progress_bar_fits_80_columns(total, failed, skipped):
    import io

    from rich.console import Console

    from metalab.sweep.progress import Counts, build_progress, short_label, stats_text

    counts = Counts(skipped=skipped)
    counts.success, counts.failed = total // 2, failed
    buf = io.StringIO()
    console = Console(width=80, file=buf, color_system=None)
    bar = build_progress(console)
    task = bar.add_task(
        short_label("validation_curve_study"), total=total, stats=stats_text(counts, total, 1234.5)
    )
    bar.update(task, completed=counts.done)
    console.print(bar.get_renderable())
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= 80, lines
    line = lines[0]
    assert line.startswith("validation_cu\u2026 ")
    assert f"{counts.done}/{total}" in line and "1,234/s" in line and "eta" in line
    assert (f"{failed} failed" in line) == bool(failed)
    assert (f"{skipped} skipped" in line) == bool(skipped)
    if total < 1000:
        assert "\u2501" in line  # a short count leaves room for the bar


def test_table_refuses_an_unknown_reduction(tmp_path, store):
    assert_user_error(metalab("table", str(store), "--reduce", "median"), "'last', 'min', 'max'")
