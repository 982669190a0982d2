"""The error tree: every public error and warning, provoked through the public API.

One table: for each class, a call that provokes it, the builtin it must also be (so
``except ValueError`` and friends keep working) and a phrase of its message (which
says how to fix the problem).  A Ctrl-C sent to a real script checks how an uncaught
``RunInterrupted`` ends it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import metalab
from metalab import errors
from metalab.cli import load_experiment

WAIT_S = 120.0  # upper bound of a wait in a real process, not a threshold


@metalab.operation(name="ok")
def ok(params, capture):
    capture.metric("y", params["x"])
    capture.artifact("blob", {"x": params["x"]})
    capture.artifact("pickled", {"x": params["x"]}, format="pickle")


def _exp(**kw) -> metalab.Experiment:
    return metalab.Experiment(
        **{"name": "e", "operation": ok, "params": metalab.grid(x=[1, 2]), **kw}
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("errors") / "store"
    metalab.run(_exp(), store=path)
    return path


# --- how each error is provoked ----------------------------------------------------------
def _frozen_experiment(store: Path, tmp: Path) -> None:
    exp = _exp()
    exp.name = "../x"


def _results_unknown_column(store: Path, tmp: Path) -> None:
    metalab.load_results(store).select("y", "accuracy")


def _results_index(store: Path, tmp: Path) -> None:
    metalab.load_results(store)[99]


def _artifact_format(store: Path, tmp: Path) -> None:
    metalab.load_results(store)[0].artifact("blob", format="npy")


def _unsafe_pickle(store: Path, tmp: Path) -> None:
    metalab.load_results(store)[0].artifact("pickled")


def _store_is_a_file(store: Path, tmp: Path) -> None:
    (tmp / "file.csv").write_text("x\n")
    metalab.load_results(tmp / "file.csv")


def _damaged_artifact(store: Path, tmp: Path) -> None:
    path = tmp / "s"
    run = metalab.run(_exp(), store=path)[0]
    run.artifact_path("blob").write_text('{"x": 666}')
    run.artifact("blob")


def _no_dask_client(store: Path, tmp: Path) -> None:
    # Nothing listens on port 1 of loopback: the connection is refused.
    metalab.run(
        _exp(), store=tmp / "s", executor=metalab.DaskExecutor("tcp://127.0.0.1:1", timeout_s=2)
    )


def _capture(call: Callable[[metalab.Capture], object]) -> Callable[[Path, Path], None]:
    def provoke(store: Path, tmp: Path) -> None:
        call(metalab.Capture("r1", str(tmp)))

    return provoke


def _setitem(mapping: object) -> None:
    mapping["a"] = 2


def _call(fn: Callable[[], object]) -> Callable[[Path, Path], None]:
    return lambda store, tmp: fn()


#: (class, builtins it must also be, phrase of its message, provoking call)
CASES: list[tuple[type[BaseException], tuple[type[BaseException], ...], str, Callable]] = [
    (
        errors.ParamError,
        (ValueError,),
        "JSON",
        _call(lambda: _exp(params=metalab.manual([{"a": {1, 2}}]))),
    ),
    (
        errors.ParamSpaceError,
        (ValueError,),
        "give it at least one value",
        _call(lambda: metalab.grid(x=[])),
    ),
    (
        errors.OperationSignatureError,
        (TypeError,),
        "cannot supply",
        _call(lambda: metalab.operation(lambda lr: lr)),
    ),
    (
        errors.ContextError,
        (TypeError,),
        "cannot be fingerprinted",
        _call(lambda: _exp(context={"lock": threading.Lock()})),
    ),
    (
        errors.FrozenContextError,
        (TypeError, AttributeError),
        "read-only",
        _call(lambda: _setitem(metalab.FrozenContext({"a": 1}))),
    ),
    (
        errors.ExperimentError,
        (ValueError,),
        "not safe as a folder name",
        _call(lambda: _exp(name="../x")),
    ),
    (
        errors.SeedError,
        (ValueError, TypeError),
        "replicates",
        _call(lambda: metalab.seeds(replicates=0)),
    ),
    (
        errors.FrozenExperimentError,
        (ValueError, AttributeError),
        "make a new metalab.Experiment",
        _frozen_experiment,
    ),
    (
        errors.CaptureError,
        (ValueError,),
        "unsafe metric name",
        _capture(lambda c: c.metric("../y", 1)),
    ),
    (
        errors.CaptureTypeError,
        (ValueError, TypeError),
        "must be a number",
        _capture(lambda c: c.metric("y", "1")),
    ),
    (
        errors.UnsupportedArtifactError,
        (TypeError,),
        "pickle",
        _capture(lambda c: c.artifact("a", object())),
    ),
    (errors.UnsafePickleError, (ValueError,), "allow_pickle=True", _unsafe_pickle),
    (
        errors.ResultsError,
        (KeyError, ValueError),
        "no parameter, metric or column named 'accuracy'",
        _results_unknown_column,
    ),
    (errors.StoreError, (OSError,), "is a file, not a folder", _store_is_a_file),
    (
        errors.ArtifactIntegrityError,
        (OSError,),
        "was changed or corrupted after the run",
        _damaged_artifact,
    ),
    (
        errors.ExecutorError,
        (RuntimeError,),
        "could not connect to the Dask scheduler",
        _no_dask_client,
    ),
    (
        errors.ExecutorConfigError,
        (ValueError, RuntimeError),
        "max_workers must be >= 1",
        _call(lambda: metalab.ThreadExecutor(0)),
    ),
    (
        errors.CLIError,
        (ValueError,),
        "no such file",
        _call(lambda: load_experiment("missing.py:exp")),
    ),
]

#: More calls that must raise a metalab error (the leaks this tree closed).
MORE_CASES: list[tuple[type[BaseException], tuple[type[BaseException], ...], str, Callable]] = [
    (errors.ResultsError, (IndexError,), "out of range", _results_index),
    (errors.ResultsError, (KeyError,), "has no format 'npy'", _artifact_format),
    (
        errors.SeedError,
        (TypeError,),
        "string name",
        _call(lambda: metalab.SeedPlan().bundle(0).derive(3)),
    ),
    (
        errors.OperationSignatureError,
        (TypeError,),
        "decorates a function",
        _call(lambda: metalab.operation(42)),
    ),
    (
        errors.ContextError,
        (TypeError,),
        "decorates a class",
        _call(lambda: metalab.context_spec(42)),
    ),
    (errors.CaptureTypeError, (TypeError,), "takes a dict", _capture(lambda c: c.metrics([1]))),
    (
        errors.CaptureTypeError,
        (TypeError,),
        "step must be an int",
        _capture(lambda c: c.metric("y", 1, step="a")),
    ),
    (errors.CaptureTypeError, (TypeError,), "must be a string", _capture(lambda c: c.metric(3, 1))),
    (
        errors.UnsupportedArtifactError,
        (TypeError,),
        "format 'json' cannot save",
        _capture(lambda c: c.artifact("a", {"o": object()}, format="json")),
    ),
    (
        errors.ExecutorConfigError,
        (ValueError,),
        "max_workers must be >= 1",
        _call(lambda: metalab.ProcessExecutor(0)),
    ),
    (
        errors.ExecutorConfigError,
        (ValueError,),
        "not both",
        _call(lambda: metalab.SlurmExecutor(jobs=2, adapt=(1, 2))),
    ),
]


@pytest.mark.parametrize(
    ("cls", "builtins", "phrase", "provoke"),
    CASES + MORE_CASES,
    ids=[f"{c[0].__name__}-{c[2][:24]}" for c in CASES + MORE_CASES],
)
def test_error_class_builtin_and_message(store, tmp_path, cls, builtins, phrase, provoke):
    with pytest.raises(cls) as info:
        provoke(store, tmp_path)
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, metalab.MetalabError)
    for builtin in builtins:
        assert isinstance(exc, builtin), builtin
    assert phrase in str(exc)
    assert "\\n" not in str(exc) and not str(exc).startswith(("'", '"'))  # not a KeyError repr


def test_every_public_error_is_in_the_table():
    tested = {case[0] for case in CASES} | {errors.RunInterrupted}
    public = {
        getattr(errors, n)
        for n in errors.__all__
        if issubclass(getattr(errors, n), Exception) and not issubclass(getattr(errors, n), Warning)
    }
    assert public - {errors.MetalabError} == tested - {errors.RunInterrupted}
    assert all(issubclass(c, metalab.MetalabError) for c in public)


def test_the_tree_drawn_in_the_docstring_is_true():
    """Every class is drawn once, under its real parent, with its real builtins."""
    import builtins
    import re

    block = errors.__doc__.split("::\n", 1)[1].split("\n\n``", 1)[0]
    drawn: dict[str, type] = {}
    parents: list[type] = []
    for line in block.splitlines():
        m = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?(\w+)(?: \(([\w, ]+)\))?", line)
        if not m:
            continue
        depth = len(m.group(1)) // 4 + (1 if "──" in line else 0)
        cls = getattr(errors, m.group(2))
        bases = [getattr(builtins, b) for b in (m.group(3) or "").split(", ") if b]
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__bases__, (cls, parents[-1])
        for base in bases:
            assert issubclass(cls, base), (cls, base)
        parents.append(cls)
        drawn[cls.__name__] = cls
    assert sorted(drawn) == errors.__all__


def test_errors_carry_what_they_are_about(store, tmp_path):
    with pytest.raises(metalab.ResultsError) as info:
        _results_unknown_column(store, tmp_path)
    assert info.value.name == "accuracy" and "y" in info.value.choices
    with pytest.raises(metalab.ResultsError) as info:
        metalab.load_results(store)[0].artifact("nope")
    assert info.value.name == "nope" and info.value.choices == ["blob", "pickled"]
    with pytest.raises(metalab.StoreError) as info:
        _store_is_a_file(store, tmp_path)
    assert info.value.path == str(tmp_path / "file.csv")
    with pytest.raises(metalab.ArtifactIntegrityError) as info:
        _damaged_artifact(store, tmp_path)
    exc = info.value
    run = metalab.load_results(tmp_path / "s")[0]
    assert (exc.run_id, exc.name, exc.path) == (run.run_id, "blob", str(run.artifact_path("blob")))
    with pytest.raises(dataclasses.FrozenInstanceError) as info:
        _frozen_experiment(store, tmp_path)
    assert info.value.name == "name"


def test_errors_survive_pickling_with_their_data():
    """Errors cross process boundaries (workers, ProcessExecutor): data must survive."""
    import distributed  # noqa: F401  (installs tblib's exception pickling, as on workers)

    samples = [
        metalab.ResultsError("no column 'a'", name="a", choices=["b"]),
        metalab.StoreError(2, "no store at /x", "/x"),
        metalab.ArtifactIntegrityError(5, "damaged", "/x/a.json", run_id="r1", name="a"),
        metalab.FrozenExperimentError("name"),
        metalab.RunInterrupted(experiment="e", store="/s", done=3, resume="metalab.run(...)"),
        metalab.ExecutorConfigError("max_workers must be >= 1"),
    ]
    for exc in samples:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert vars(back) == vars(exc)
        if isinstance(exc, OSError):
            assert (back.errno, back.filename) == (exc.errno, exc.filename)


def test_run_interrupted_is_not_an_exception():
    assert issubclass(metalab.RunInterrupted, KeyboardInterrupt)
    assert not issubclass(metalab.RunInterrupted, Exception)
    exc = metalab.RunInterrupted(experiment="e", store="/s", resume="metalab.run(exp)")
    assert (
        str(exc)
        == "sweep of 'e' interrupted; completed runs are kept in /s. Resume with: metalab.run(exp)"
    )


def _load(path: Path, name: str) -> metalab.Operation:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.op


def test_warnings_are_metalab_warnings(tmp_path):
    assert issubclass(metalab.SourceChangedWarning, metalab.MetalabWarning)
    assert issubclass(metalab.DamagedFileWarning, metalab.MetalabWarning)
    assert issubclass(metalab.MetalabWarning, UserWarning)

    ops = []
    for i, y in enumerate((1, 2)):
        path = tmp_path / f"op{i}.py"
        path.write_text(
            "import metalab\n\n\n@metalab.operation(name='w', version='1')\n"
            f"def op(params):\n    return {{'y': {y}}}\n"
        )
        ops.append(_load(path, f"metalab_test_op{i}"))
    metalab.run(metalab.Experiment("w", ops[0]), store=tmp_path / "w")
    with pytest.warns(metalab.SourceChangedWarning, match="Bump the version"):
        metalab.run(metalab.Experiment("w", ops[1]), store=tmp_path / "w")

    victim = next((tmp_path / "w" / "records").glob("*.parquet"))
    victim.write_bytes(b"")
    with pytest.warns(metalab.DamagedFileWarning, match=victim.name):
        assert len(metalab.load_results(tmp_path / "w")) == 0  # reading finds the damage


# --- Ctrl-C in a real script ---------------------------------------------------------------
SCRIPT = """
import sys, time
import metalab

log = sys.argv[2]

@metalab.operation(name="slow")
def slow(params):
    with open(log, "a") as f:
        f.write(f"{params['x']}\\n")
    time.sleep(0.05)

exp = metalab.Experiment(name="slow", operation=slow, params=metalab.grid(x=list(range(400))))
try:
    metalab.run(exp, store=sys.argv[1])
except Exception:
    print("except Exception swallowed Ctrl-C", flush=True)
print("script went on after the sweep", flush=True)
"""


def _wait_for_runs(proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        if proc.poll() is not None:
            raise AssertionError(f"script ended early:\n{proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("no runs started")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_ends_a_script_with_status_130_and_one_paragraph(tmp_path, sig):
    script, store, log = tmp_path / "sweep.py", tmp_path / "store", tmp_path / "runs.log"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        _wait_for_runs(proc, log)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out == ""  # neither `except Exception` nor the rest of the script ran
    assert "Traceback" not in err
    paragraph = err.strip().split("\n\n")[-1]
    assert paragraph.startswith("metalab.RunInterrupted: sweep of 'slow' interrupted")
    assert f"Resume with: metalab.run(exp, store={str(store)!r}, resume=True)" in paragraph
    assert len(err.strip().splitlines()) <= 4, err
    done = len(log.read_text().splitlines())
    assert 0 < len(metalab.load_results(store)) <= done < 400  # completed runs were kept


def test_importing_metalab_installs_no_excepthook():
    """The exit hook is installed only when a sweep is interrupted."""
    code = "import sys, metalab; print(sys.excepthook is sys.__excepthook__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_other_exceptions_still_reach_the_previous_hook(tmp_path):
    """After an interrupted sweep is caught, a later error still prints its traceback."""
    script = tmp_path / "s.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, metalab

            @metalab.operation(name="stop")
            def stop(params):
                os.kill(os.getpid(), signal.SIGINT)

            try:
                metalab.run(metalab.Experiment(name="stop", operation=stop), store="s")
            except metalab.RunInterrupted as exc:
                print("caught", exc.experiment, flush=True)
            raise ValueError("a later bug")
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S
    )
    assert proc.stdout == "caught stop\n"
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: a later bug" in proc.stderr
    assert "RunInterrupted" not in proc.stderr
