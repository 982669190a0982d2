"""Artifacts through real runs: every format round-trips, manifests, checksums, pickles, names."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import metalab
from metalab import (
    ArtifactIntegrityError,
    CaptureError,
    ProcessExecutor,
    StoreError,
    UnsafePickleError,
    UnsupportedArtifactError,
)
from metalab.capture import serializers
from metalab.results import Run


# --- a user type with its own serializer ----------------------------------------------------------
class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def _dump_point(p: Point, path: Path) -> None:
    path.write_text(json.dumps({"x": p.x, "y": p.y}))


def _load_point(path: Path) -> Point:
    return Point(**json.loads(path.read_text()))


@pytest.fixture
def registry():
    """Restores the serializer registry after the test."""
    saved = dict(serializers._REGISTRY), list(serializers._ORDER)
    yield
    serializers._REGISTRY.clear()
    serializers._REGISTRY.update(saved[0])
    serializers._ORDER[:] = saved[1]


@pytest.fixture
def point_format(registry):
    """Registers the 'point' format for one test."""
    metalab.register_serializer(
        "point", ext="point.json", handles=Point, dump=_dump_point, load=_load_point
    )


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1, 2], [2, 0, 1])
    return fig


def expected_objects() -> dict[str, object]:
    return {
        "arr": np.arange(12, dtype=np.float32).reshape(3, 4),
        "ints": np.array([1, -2, 3], dtype=np.int64),
        "strs": np.array(["a", "ß", "长"]),
        "scalar": np.float64(2.5),
        "config": {
            "model": "resnet",
            "layers": 50,
            "lr": 1e-3,
            "tags": ["a", "b"],
            "nested": {"ok": True, "none": None},
            "nan": float("nan"),
            "np": np.int64(7),
        },
        "list": [1, 2.5, "three", None],
        "frame": pd.DataFrame(
            {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, None, 1.5]},
            index=pd.Index([10, 20, 30], name="idx"),
        ),
        "series": pd.Series([1.0, 2.0], index=["p", "q"], name="s"),
        "unnamed_series": pd.Series([3, 4]),
        "table": pa.table({"k": [1, 2], "v": ["a", "b"]}),
        "blob": bytes(range(256)),
        "text": "line 1\r\nline 2\nnaïve 损失 🚀\n",
        "point": Point(1.5, -2.0),
    }


@metalab.operation(name="every_format", version="1")
def every_format(params, capture):
    for name, obj in expected_objects().items():
        capture.artifact(name, obj)
    capture.artifact("as_text", "forced", format="txt")
    capture.artifact("pickled", {"a set": {1, 2, 3}}, format="pickle")
    capture.figure("curve", _figure(), formats=("png", "svg"))
    capture.artifact("default_fig", _figure())
    print("worker says hi")
    logging.getLogger("every_format").warning("a logging record")
    capture.metric("done", 1)


def _check_every_format(res: metalab.Results) -> None:
    (run,) = list(res)
    assert run.status == "success", run.error
    formats = {(a["name"], a["format"]) for a in run.artifacts}
    assert formats >= {
        ("arr", "npy"),
        ("scalar", "npy"),
        ("config", "json"),
        ("list", "json"),
        ("frame", "parquet"),
        ("series", "parquet"),
        ("table", "parquet"),
        ("blob", "bin"),
        ("text", "txt"),
        ("point", "point"),
        ("as_text", "txt"),
        ("pickled", "pickle"),
        ("curve", "png"),
        ("curve", "svg"),
        ("default_fig", "png"),
    }
    for name, want in expected_objects().items():
        got = run.artifact(name)
        if isinstance(want, np.ndarray | np.generic):
            assert isinstance(got, np.ndarray) and got.dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(got, want)
        elif isinstance(want, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want)
        elif isinstance(want, pd.Series):
            pd.testing.assert_series_equal(got, want)
        elif isinstance(want, pa.Table):
            assert isinstance(got, pa.Table) and got.equals(want)
        elif name == "config":
            assert np.isnan(got.pop("nan"))
            assert got == {k: v for k, v in want.items() if k != "nan"}
        else:
            assert got == want and type(got) is type(want), name
    assert run.artifact("as_text") == "forced"
    png = run.artifact("curve")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and run.artifact("default_fig")[:4] == png[:4]
    svg = run.artifact("curve", format="svg")
    assert "<svg" in svg
    assert run.artifact_path("curve", format="svg").suffix == ".svg"
    with pytest.raises(UnsafePickleError, match="allow_pickle=True"):
        run.artifact("pickled")
    assert run.artifact("pickled", allow_pickle=True) == {"a set": {1, 2, 3}}
    assert "STDOUT  worker says hi" in run.logs
    assert "WARNING every_format: a logging record" in run.logs


def test_every_format_round_trips_on_the_default_executor(point_format):
    res = metalab.run(metalab.Experiment("formats", every_format), capture_output=True)
    _check_every_format(res)
    _check_every_format(metalab.load_results("runs/formats"))


@pytest.mark.cluster
def test_every_format_round_trips_on_process_workers(point_format):
    """Workers write artifacts straight into the store; the custom format travels with them."""
    res = metalab.run(
        metalab.Experiment("formats", every_format),
        executor=ProcessExecutor(max_workers=2),
        capture_output=True,
    )
    _check_every_format(res)
    rec = res[0].record
    assert rec["worker"].startswith("tcp://127.0.0.1:") and rec["pid"] != os.getpid()


# --- manifest and integrity ---------------------------------------------------------------------
@metalab.operation(name="arrays", version="1")
def arrays(params, capture):
    capture.artifact("predictions", np.full(1000, params["x"], dtype=np.float64))
    capture.artifact("meta", {"x": params["x"]})


def _arrays_run(tmp_path: Path) -> Run:
    res = metalab.run(metalab.Experiment("arrays", arrays, params=metalab.grid(x=[1, 2])))
    return res.filter(x=2)[0]


def test_manifest_lists_name_format_path_size_and_sha256(tmp_path):
    run = _arrays_run(tmp_path)
    assert [a["name"] for a in run.artifacts] == ["predictions", "meta"]
    root = (tmp_path / "runs" / "arrays").resolve()
    for a in run.artifacts:
        assert set(a) == {"name", "format", "path", "size", "sha256"}
        path = run.artifact_path(a["name"])
        assert path == root / a["path"] and path.is_file()
        assert path.is_relative_to(root / "artifacts" / run.run_id)
        assert a["size"] == path.stat().st_size
        assert a["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(run.artifact("predictions"), np.full(1000, 2.0))
    with pytest.raises(KeyError, match=r"no artifact 'nope'; it has \['meta', 'predictions'\]"):
        run.artifact("nope")
    with pytest.raises(KeyError, match="has no format 'svg'"):
        run.artifact("meta", format="svg")


@pytest.mark.parametrize("where", ["header", "middle", "last"])
def test_a_flipped_byte_is_detected(tmp_path, where):
    run = _arrays_run(tmp_path)
    path = run.artifact_path("predictions")
    data = bytearray(path.read_bytes())
    i = {"header": 10, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="damaged: sha256") as info:
        run.artifact("predictions")
    assert isinstance(info.value, StoreError) and str(path) in str(info.value)
    assert run.artifact("meta") == {"x": 2}  # the other artifact is intact


def test_truncated_and_missing_files_are_errors(tmp_path):
    run = _arrays_run(tmp_path)
    path = run.artifact_path("predictions")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ArtifactIntegrityError):
        run.artifact("predictions")
    run.artifact_path("meta").unlink()
    with pytest.raises(StoreError, match="is missing"):
        run.artifact("meta")


def _tampered(run: Run, path: str, sha256: str) -> Run:
    """The run read back after someone added a later record whose "meta" entry is ``path``.

    Written with pyarrow into ``records/`` as any tool could: readers keep the latest
    record of a run id, so this one is the run's current record.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    store = Path("runs") / "arrays"
    (source,) = (store / "records").glob("*.parquet")
    table = pq.read_table(source)
    row = table.filter(pc.equal(table.column("run_id"), run.run_id))
    meta = dict(run.artifacts[1], path=path, sha256=sha256)
    row = row.set_column(
        row.schema.get_field_index("artifacts"),
        "artifacts",
        pa.array([json.dumps([meta])], row.schema.field("artifacts").type),
    )
    later = pc.add(row.column("ended_at").cast(pa.int64()), 1_000_000)
    row = row.set_column(
        row.schema.get_field_index("ended_at"),
        "ended_at",
        later.cast(row.schema.field("ended_at").type),
    )
    pq.write_table(row, store / "records" / "tampered.parquet")
    return metalab.load_results(store).filter(x=2)[0]


def test_a_record_pointing_outside_the_store_is_refused(tmp_path):
    run = _arrays_run(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text('{"x": 2}')
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    bad = _tampered(run, "../../secret.json", digest)
    with pytest.raises(StoreError, match="outside the store"):
        bad.artifact("meta")
    (Path("runs") / "arrays" / "records" / "tampered.parquet").unlink()
    with pytest.raises(StoreError, match="outside the store"):
        _tampered(run, str(secret), digest).artifact_path("meta")


# --- pickles ------------------------------------------------------------------------------------
class Trap:
    """Unpickling it creates a folder: proof that loading ran code from the file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@metalab.operation(name="pickles", version="1")
def pickles(context, capture):
    capture.artifact("trap", Trap(context["marker"]), format="pickle")


def test_pickle_is_never_loaded_without_consent(tmp_path):
    marker = tmp_path / "code-ran"
    res = metalab.run(metalab.Experiment("pickles", pickles, context={"marker": str(marker)}))
    run = res[0]
    assert run.status == "success", run.error
    assert run.artifacts[0]["format"] == "pickle"
    with pytest.raises(UnsafePickleError, match=r"arbitrary code.*allow_pickle=True") as info:
        run.artifact("trap")
    assert isinstance(info.value, ValueError)
    assert not marker.exists()
    run.artifact("trap", allow_pickle=True)
    assert marker.is_dir()


@metalab.operation(name="unsupported", version="1")
def unsupported(params, capture):
    kind = params["kind"]
    obj = {
        "set": {1, 2},
        "object_array": np.array([{"a": 1}], dtype=object),
        "custom": Trap("x"),
        "int_keys": {1: "a"},
    }.get(kind)
    if kind == "bad_format":
        capture.artifact("a", [1], format="hdf5")
    elif kind == "mismatch":
        capture.artifact("a", {"x": 1}, format="npy")
    else:
        capture.artifact("a", obj)


def test_objects_without_a_safe_format_fail_the_run_and_are_not_pickled(tmp_path):
    kinds = ["set", "object_array", "custom", "int_keys", "bad_format", "mismatch"]
    res = metalab.run(metalab.Experiment("unsup", unsupported, params=metalab.grid(kind=kinds)))
    for run in res:
        assert run.status == "failed"
        assert run.error["type"] == "UnsupportedArtifactError", run.error
        assert run.artifacts == []
    msgs = {r.params["kind"]: r.error["message"] for r in res}
    assert "format='pickle'" in msgs["set"] and "register_serializer" in msgs["custom"]
    assert "dtype=object" in msgs["object_array"]
    assert "unknown artifact format 'hdf5'" in msgs["bad_format"]
    assert "cannot save" in msgs["mismatch"]
    assert not list((tmp_path / "runs").rglob("*.pkl"))
    assert issubclass(UnsupportedArtifactError, TypeError)
    assert issubclass(UnsupportedArtifactError, CaptureError)


# --- register_serializer ---------------------------------------------------------------
def test_register_serializer_is_tried_first_and_by_format(point_format, tmp_path):
    assert serializers.find_serializer(Point(0, 0)).format == "point"
    cap = metalab.Capture("p" * 32, str(tmp_path))
    cap.artifact("p", Point(1, 2))
    (entry,) = cap.manifest
    assert entry["format"] == "point" and entry["path"].endswith("/p.point.json")
    assert serializers.load_artifact("point", tmp_path / entry["path"]) == Point(1, 2)


def test_register_serializer_with_a_predicate_and_unsafe_loading(registry, tmp_path):
    metalab.register_serializer(
        "evalfmt",
        ext="py",
        handles=lambda o: isinstance(o, complex),
        dump=lambda o, p: p.write_text(repr(o)),
        load=lambda p: complex(p.read_text()),
        unsafe=True,
    )
    cap = metalab.Capture("c" * 32, str(tmp_path))
    cap.artifact("z", 1 + 2j)
    path = tmp_path / cap.manifest[0]["path"]
    with pytest.raises(UnsafePickleError):
        serializers.load_artifact("evalfmt", path)
    assert serializers.load_artifact("evalfmt", path, allow_pickle=True) == 1 + 2j


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"format": "x", "ext": "../evil"}, "ext must be a plain file extension"),
        ({"format": "x", "ext": "a/b"}, "ext must be a plain file extension"),
        ({"format": "x", "ext": ""}, "ext must be a plain file extension"),
        ({"format": "", "ext": "x"}, "format must be a short plain name"),
        ({"format": "a/b", "ext": "x"}, "format must be a short plain name"),
        ({"format": "x", "ext": "x", "handles": 3}, "handles"),
    ],
)
def test_register_serializer_refuses_unsafe_definitions(kwargs, match):
    kw = {"handles": Point, "dump": _dump_point, "load": _load_point, **kwargs}
    with pytest.raises(CaptureError, match=match):
        metalab.register_serializer(kw.pop("format"), **kw)
    assert "x" not in serializers._REGISTRY


def test_a_serializer_that_writes_elsewhere_is_caught(registry, tmp_path):
    metalab.register_serializer(
        "lazy", ext="lz", handles=Point, dump=lambda o, p: None, load=_load_point
    )
    with pytest.raises(CaptureError, match="did not write the file"):
        metalab.Capture("l" * 32, str(tmp_path)).artifact("p", Point(0, 0))


# --- unsafe names through a run ------------------------------------------------------------------
ESCAPE = f"/tmp/metalab-escape-{uuid.uuid4().hex}"
UNSAFE_NAMES = [
    "",
    "../../../../escape",
    "..",
    "a/b",
    "a\\b",
    ESCAPE,
    "C:\\evil",
    "ctl\x01",
    "new\nline",
    ".hidden",
]


@metalab.operation(name="names", version="1")
def names(params, capture):
    capture.metric("before", 1.0)
    capture.artifact("ok", [1])
    kind, name = params["kind"], params["name"]
    if kind == "artifact":
        capture.artifact(name, np.arange(3))
    elif kind == "figure":
        capture.figure(name, _figure())
    elif kind == "metric":
        capture.metric(name, 1.0)
    else:
        capture.metric(name, 1.0, step=1)


def test_unsafe_names_fail_the_run_and_nothing_is_written_outside_the_store(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = outside / "store"
    before = {p for p in tmp_path.rglob("*")}
    exp = metalab.Experiment(
        "names",
        names,
        params=metalab.grid(kind=["artifact", "figure", "metric", "step"], name=UNSAFE_NAMES),
    )
    res = metalab.run(exp, store=store)
    assert len(res) == 4 * len(UNSAFE_NAMES)
    for run in res:
        assert run.status == "failed"
        assert run.error["type"] == "CaptureError"
        assert (
            f"unsafe {run.params['kind'] if run.params['kind'] != 'step' else 'metric'}"
            in run.error["message"]
        )
        assert run.metrics == {"before": 1.0}
        assert [a["name"] for a in run.artifacts] == ["ok"]
    after = {p for p in tmp_path.rglob("*")}
    assert all(p.is_relative_to(store) for p in after - before)
    assert not Path(ESCAPE).exists() and not Path(ESCAPE + ".npy").exists()
    files = [p for p in (store / "artifacts").rglob("*") if p.is_file()]
    assert sorted({p.name for p in files}) == ["ok.json"]


def test_safe_unicode_names_work_through_a_run(tmp_path):
    @metalab.operation(name="unicode", version="1")
    def unicode_op(capture):
        capture.artifact("prédictions_损失", np.arange(3))
        capture.metric("précision", 0.5)
        capture.metric("损失", 0.25, step=3)

    run = metalab.run(metalab.Experiment("unicode", unicode_op))[0]
    assert run.status == "success", run.error
    np.testing.assert_array_equal(run.artifact("prédictions_损失"), np.arange(3))
    assert run.metrics == {"précision": 0.5, "损失": 0.25}
    assert run.metric_series("损失").to_dict() == {3: 0.25}
    assert run.artifact_path("prédictions_损失").name == "prédictions_损失.npy"


def test_longest_name_with_a_long_extension_fits_the_file_system(registry, tmp_path):
    ext = "e" * 32
    metalab.register_serializer("long", ext=ext, handles=Point, dump=_dump_point, load=_load_point)
    cap = metalab.Capture("l" * 32, str(tmp_path))
    name = "n" * 200
    cap.artifact(name, Point(3, 4))
    assert (tmp_path / cap.manifest[0]["path"]).name == f"{name}.{ext}"
    assert serializers.load_artifact("long", tmp_path / cap.manifest[0]["path"]) == Point(3, 4)
