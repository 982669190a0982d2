"""A seeded sweep of single-bit flips over every kind of store file.

For each flip: copy a pristine store, flip one bit of one file, read everything a user
can read (``load_results``: the full table, the stepped metrics, every artifact, the
sweeps and the manifest) and compare with what was written.  A value may differ only
when the read raised a ``DamagedFileWarning`` or a ``StoreError`` (*detected*); a
difference without one is *silent*, and there must be none.  Every few flips the
experiment is then resumed (following ``metalab repair`` when an error says so) and must
give back exactly the data of the pristine store.

About 210 flips by default (30 per kind); ``METALAB_FLIPS=N`` runs N in all.  Half the
flips of a kind land anywhere in the file, half in its most sensitive part (the Parquet
footer, the journal header, the ``artifacts`` column of a records file).
"""

from __future__ import annotations

import collections
import os
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _probe import (
    complete_store,
    differences,
    fresh_copy,
    journal_store,
    read_all,
    resume,
)

KINDS = [
    "records",
    "metrics",
    "journal",
    "manifest",
    "sweep",
    "artifact",
    "artifact-manifest",
]
PER_KIND = -(-int(os.environ.get("METALAB_FLIPS", "210")) // len(KINDS))
#: Every RESUME_EVERY-th flip is followed by a resume that must restore the data.
RESUME_EVERY = 10
SEED = 20261129
TALLY: dict[str, collections.Counter[str]] = {}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The two pristine stores, what they read back, and what a resume gives back."""
    base = tmp_path_factory.mktemp("pristine")
    out = {}
    for name, build in (("complete", complete_store), ("journal", journal_store)):
        root = build(base / name)
        ref = read_all(root, steps=True)
        assert not ref.flagged, ref.messages
        done = fresh_copy(root, base / f"{name}-resumed")
        resume(done)
        after = read_all(done, steps=True)
        assert not after.flagged, after.messages
        out[name] = (root, ref, after)
    return out


def _footer(path: Path) -> range:
    data = path.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    return range(len(data) - 8 - length, len(data))


def _column_chunks(path: Path, column: str) -> range:
    """The bytes of a column's chunks in a Parquet file (first to last)."""
    md = pq.read_metadata(path)
    spans = []
    for rg in range(md.num_row_groups):
        group = md.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            if col.path_in_schema == column:
                start = col.dictionary_page_offset or col.data_page_offset
                spans.append((start, start + col.total_compressed_size))
    return range(min(s for s, _ in spans), max(e for _, e in spans))


def target(kind: str, root: Path) -> tuple[Path, range]:
    """The file a flip of ``kind`` hits in ``root``, and its most sensitive bytes."""
    if kind in ("records", "metrics", "artifact-manifest"):
        path = sorted((root / ("metrics" if kind == "metrics" else "records")).glob("*.parquet"))[1]
        return path, _column_chunks(path, "artifacts") if kind == "artifact-manifest" else _footer(
            path
        )
    if kind == "journal":
        path = next((root / "journal").glob("*.jsonl"))
        return path, range(path.read_bytes().index(b"\n") + 1)
    if kind == "manifest":
        path = root / "manifest.json"
    elif kind == "sweep":
        path = next((root / "sweeps").glob("*.json"))
    else:
        path = sorted((root / "artifacts").glob("*/blob.json"))[5]
    return path, range(path.stat().st_size)


def flip(path: Path, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", KINDS)
def test_bit_flips_are_detected_never_returned(pristine, tmp_path, kind):
    root, ref, after = pristine["journal" if kind == "journal" else "complete"]
    rng = random.Random(f"{SEED}-{kind}")
    tally = TALLY.setdefault(kind, collections.Counter())
    silent: list[str] = []
    for i in range(PER_KIND):
        work = fresh_copy(root, tmp_path / "work")
        path, focus = target(kind, work)
        byte = rng.randrange(path.stat().st_size) if i % 2 == 0 else rng.choice(focus)
        bit = byte * 8 + rng.randrange(8)
        flip(path, bit)
        got = read_all(work)
        diffs = differences(ref, got)
        tally["tried"] += 1
        if got.flagged:
            tally["detected"] += 1
        elif diffs:
            tally["silent"] += 1
            silent.append(f"bit {bit} of {path.name}: {diffs[:3]}")
        else:
            tally["unchanged"] += 1  # nothing a user reads changed (e.g. a statistics byte)
        if i % RESUME_EVERY == 0:
            said = resume(work)
            again = read_all(work, steps=True)
            assert again.core() == after.core(), (bit, path.name, said, again.messages)
            tally["resumed"] += 1
    print(
        f"\nbit flips in {kind}: tried {tally['tried']}, detected {tally['detected']}, "
        f"unchanged {tally['unchanged']}, silent {tally['silent']}; "
        f"resumed {tally['resumed']} (all restored)"
    )
    assert not silent, silent


def test_flip_figures(capsys):
    """Totals over the kinds run above (printed; every silent count is asserted zero)."""
    total = sum(TALLY.values(), collections.Counter())
    with capsys.disabled():
        print(
            f"\nbit flips in all: tried {total['tried']}, detected {total['detected']}, "
            f"unchanged {total['unchanged']}, silent {total['silent']}, "
            f"resumed {total['resumed']}"
        )
    assert total["silent"] == 0
