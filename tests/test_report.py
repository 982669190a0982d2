"""The HTML report: content built from a real store, and rendering in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import metalab
from metalab.report import build_report, write_report
from metalab.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (apt-get install chromium); .ci/run installs it",
)


@metalab.operation(name="report_demo", version="1")
def _demo(params, seeds, capture):
    rng = seeds.numpy()
    if params["lr"] == 1.0 and params["width"] == 64:
        raise ValueError("diverged <b>badly</b> & fast")
    loss = 1.0
    for step in range(8):
        loss *= 1 - params["lr"] * 0.2 + float(rng.normal(0, 0.01))
        capture.metric("loss", loss, step=step)
    capture.metric("accuracy", 1 - loss / 2 + params["width"] / 1000)


LRS = [0.01, 0.1, 1.0]
WIDTHS = [16, 64]
REPLICATES = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A real store: 3 x 2 settings x 3 replicates, one failing setting, stepped metrics."""
    root = tmp_path_factory.mktemp("report") / "runs" / "report_demo"
    exp = metalab.Experiment(
        name="report_demo",
        version="1",
        operation=_demo,
        params=metalab.grid(lr=LRS, width=WIDTHS, opt=["sgd"]),
        seeds=metalab.seeds(base=5, replicates=REPLICATES),
    )
    metalab.run(exp, store=root)
    return root


@pytest.fixture(scope="module")
def html(store) -> str:
    return build_report(store)


def _summary_rows(page: str) -> list[str]:
    body = page.split('id="summary-table"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)


def test_report_has_every_section(html):
    for ident in ("counts", "summary", "plots", "curves", "failures", "runs", "provenance"):
        assert f'<section id="{ident}">' in html
    assert "<title>report_demo · metalab report</title>" in html
    # counts by status
    assert '<div class="badge success"><b>15</b>success</div>' in html
    assert '<div class="badge failed"><b>3</b>failed</div>' in html


def test_summary_table_groups_by_swept_params(html):
    rows = _summary_rows(html)
    assert len(rows) == len(LRS) * len(WIDTHS)
    assert 'class="sortable" id="summary-table"' in html
    # the constant parameter is not a column but is named as fixed
    head = html.split('id="summary-table"', 1)[1].split("</thead>", 1)[0]
    assert ">lr<" in head and ">width<" in head and ">opt<" not in head
    assert "accuracy mean" in head and "accuracy std" in head
    assert "Fixed: opt=sgd." in html
    # the failing setting: 3 runs, 0 successes, 3 failures, no metric values
    failing = [r for r in rows if 'data-v="1.0"' in r and 'data-v="64"' in r]
    assert len(failing) == 1
    cells = re.findall(r'data-v="([^"]*)"', failing[0])
    assert cells[:5] == ["1.0", "64", "3", "0", "3"]
    assert set(cells[5:]) == {""}


def test_summary_values_match_results(store, html):
    summary = metalab.load_results(store).summary(group_by=["lr", "width"])
    row = summary[(summary["lr"] == 0.1) & (summary["width"] == 16)].iloc[0]
    target = next(r for r in _summary_rows(html) if 'data-v="0.1"' in r and 'data-v="16"' in r)
    values = [float(v) for v in re.findall(r'data-v="([^"]+)"', target)]
    assert any(v == pytest.approx(row["accuracy_mean"]) for v in values)
    assert any(v == pytest.approx(row["accuracy_std"]) for v in values)


def test_plots_and_learning_curves_are_inline_svg(html):
    plots = html.split('<section id="plots">', 1)[1].split("</section>", 1)[0]
    # two metrics x two swept params
    assert plots.count("<svg") == 4
    for caption in ("accuracy against lr", "accuracy against width", "loss[last] against lr"):
        assert caption in plots
    curves = html.split('<section id="curves">', 1)[1].split("</section>", 1)[0]
    assert curves.count("<svg") == 1 and "loss by step" in curves
    # ids are unique across the inline SVGs (several figures on one page)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_failures_show_escaped_errors_and_tracebacks(html):
    failures = html.split('<section id="failures">', 1)[1].split("</section>", 1)[0]
    assert failures.count('class="failure"') == 3
    assert "ValueError: diverged &lt;b&gt;badly&lt;/b&gt; &amp; fast" in failures
    assert "<b>badly</b>" not in html
    assert "Traceback (most recent call last)" in failures
    assert "in _demo" in failures


def test_provenance_has_manifest_and_sweeps(store, html):
    prov = html.split('<section id="provenance">', 1)[1].split("</section>", 1)[0]
    sweep = Store.open(store).read_sweeps()[0]["sweep"]
    assert sweep in prov
    assert "context_fingerprint" in prov and "LocalExecutor()" in prov


def test_report_is_self_contained(html):
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', html)
    assert not re.search(r"url\((['\"]?)(https?:)?//", html)
    assert "@import" not in html
    assert "<script>" in html and "<style>" in html


def test_write_report_and_empty_store(tmp_path):
    st = Store.open(tmp_path / "empty", create=True)
    st.ensure_manifest({"experiment": "empty", "runs": 0})
    out = write_report(st.root, tmp_path / "sub" / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "No runs yet." in page and "data-ready" not in page.split("<script>")[0]


def test_random_search_and_text_params(tmp_path):
    @metalab.operation(name="rs", version="1")
    def op(params, capture):
        capture.metric("score", params["x"] ** 2 + (params["kind"] == "b"))

    exp = metalab.Experiment(
        name="rs",
        operation=op,
        params=metalab.random(
            space={"x": metalab.uniform(-1, 1), "kind": metalab.choice(["a", "b"])},
            n_trials=30,
            seed=3,
        ),
    )
    metalab.run(exp, store=tmp_path / "rs")
    page = build_report(tmp_path / "rs")
    plots = page.split('<section id="plots">', 1)[1].split("</section>", 1)[0]
    assert plots.count("<svg") == 2  # score vs x (scatter), score vs kind (categories)
    assert len(_summary_rows(page)) == 30


def test_not_a_store_is_an_error(tmp_path):
    with pytest.raises(metalab.StoreError, match="no metalab store"):
        build_report(tmp_path / "nope")


# --------------------------------------------------------------------------------------
# real headless Chromium
# --------------------------------------------------------------------------------------
def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        # No network at all: any remote fetch would fail (and the page must not need one).
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """Lines Chromium logs for console messages and uncaught errors."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


@needs_chromium
def test_console_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    proc = chromium(tmp_path, bad.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in m for m in console_messages(proc.stderr))


@needs_chromium
def test_report_renders_in_chromium(store, tmp_path):
    out = write_report(store, tmp_path / "report.html")
    proc = chromium(tmp_path, out.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    dom = proc.stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the report's script did not run"
    assert len(_summary_rows(dom)) == len(LRS) * len(WIDTHS)
    assert dom.count("<svg") == 5
    # the sorter made every header focusable
    head = dom.split('id="summary-table"', 1)[1].split("</thead>", 1)[0]
    assert head.count('tabindex="0"') == head.count("<th ") == 9

    shot = tmp_path / "report.png"
    proc = chromium(tmp_path, out.as_uri(), f"--screenshot={shot}", "--window-size=1280,2000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # a page with tables and plots, not a blank image


@needs_chromium
def test_summary_sorts_on_click_in_chromium(store, tmp_path):
    page = build_report(store)
    probe = """<script>
    var table = document.getElementById("summary-table");
    var heads = table.tHead.rows[0].cells, col = -1;
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent === "accuracy mean") { col = i; }
    }
    heads[col].click(); heads[col].click();  // second click: descending
    var order = Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return r.cells[col].getAttribute("data-v"); });
    document.body.setAttribute("data-sorted", order.join(";"));
    document.body.setAttribute("data-sort-state", heads[col].getAttribute("aria-sort"));
    </script></body>"""
    path = tmp_path / "probe.html"
    path.write_text(page.replace("</body>", probe, 1), encoding="utf-8")
    proc = chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert console_messages(proc.stderr) == []
    assert 'data-sort-state="descending"' in proc.stdout
    order = re.search(r'data-sorted="([^"]*)"', proc.stdout).group(1).split(";")
    numbers = [float(v) for v in order if v]
    assert len(numbers) == 5 and numbers == sorted(numbers, reverse=True)
    assert order[-1] == ""  # the setting without successes sorts last
