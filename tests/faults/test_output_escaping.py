"""Issue 11, item 11: output that cannot be hijacked, names safe on any OS, no cwd store.

Store contents (param names and values, metric names, error messages, descriptions) may
come from anyone who could write to the store. Each test builds a real store with the
hostile text of the issue and runs the real command or API on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import metalab
from metalab._text import plot_text, safe_text
from metalab.capture.names import check_name
from metalab.errors import CaptureError, StoreError

# Clear screen + home, set the window title (OSC ... BEL), an 8-bit CSI, a carriage
# return that overwrites the line, and a right-to-left override that reorders it.
PAYLOADS = ["\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x9b31m", "\rforged line", "\u202egnp.exe"]
RAW = ["\x1b", "\x07", "\x9b", "\r", "\u202e"]


def metalab_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALAB")}
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=240,
        env={**env, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )


# -- terminal output ---------------------------------------------------------------------
@metalab.operation(name="hostile")
def hostile(params, capture):
    capture.log(f"log {params['payload']}")
    if params["fail"]:
        raise RuntimeError(f"boom {params['payload']}")
    capture.metric("y", 1.0)


@pytest.fixture
def hostile_store(tmp_path) -> Path:
    exp = metalab.Experiment(
        name="hostile",
        operation=hostile,
        params=metalab.grid(payload=PAYLOADS, fail=[False, True]),
        description="about \x1b[31mred\x1b[0m things",
    )
    res = metalab.run(exp)
    assert (res.counts()["success"], res.counts()["failed"]) == (5, 5)
    return tmp_path / "runs" / "hostile"


@pytest.mark.parametrize("command", ["show", "table"])
def test_show_and_table_print_no_terminal_control_characters(hostile_store, tmp_path, command):
    proc = metalab_cli(command, str(hostile_store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for raw in RAW:
        assert raw not in out, (raw, out)
    # The text is still there, escaped so that it can be read.
    assert "\\x1b[2J" in out or "\\x1b" in out
    if command == "show":
        assert "about \\x1b[31mred\\x1b[0m things" in out
        assert "boom \\x1b]0;pwned\\x07" in out or "boom \\r" in out


def test_errors_on_stderr_are_escaped_too(tmp_path):
    proc = metalab_cli("show", "no-such-store-\x1b[2J", cwd=tmp_path)
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr and "no-such-store-\\x1b[2J" in proc.stderr


def test_safe_text_keeps_what_is_harmless():
    text = "résumé 损失 👩\u200d💻 tab\there\nnext line"
    assert safe_text(text) == text
    assert safe_text("a\x00b\x7fc\x85d") == "a\\x00b\\x7fc\\x85d"
    assert safe_text("\u202e\u2066\ufeff") == "\\u202e\\u2066\\ufeff"
    assert safe_text("one\ntwo", keep_newlines=False) == "one\\x0atwo"
    assert safe_text("\udcff") == "\\udcff"  # a lone surrogate cannot even be printed
    assert safe_text(12) == "12"


# -- matplotlib mathtext -----------------------------------------------------------------
MATH_PARAM = "$\\alpha$"
MATH_MODES = ["$x^$", "$\\undefinedcommand{$", "plain"]
MATH_METRIC = "cost$^$"
MATH_STEPPED = "loss $^{$"  # (metric names cannot hold a backslash: it is a separator)


@metalab.operation(name="mathy")
def mathy(params, capture):
    for step in range(3):
        capture.metric(MATH_STEPPED, 1.0 / (step + 1), step=step)
    capture.metric(MATH_METRIC, params[MATH_PARAM] * len(params["mode"]))


@pytest.fixture
def math_store(tmp_path) -> Path:
    exp = metalab.Experiment(
        name="mathy",
        operation=mathy,
        params=metalab.grid(**{MATH_PARAM: [1, 2, 3], "mode": MATH_MODES}),
        seeds=metalab.seeds(replicates=2),
    )
    assert metalab.run(exp).counts()["success"] == 18
    return tmp_path / "runs" / "mathy"


def test_report_with_dollars_in_names_and_values(math_store, tmp_path):
    """The issue's case: `metalab report` failed in matplotlib's mathtext parser."""
    proc = metalab_cli("report", str(math_store), "-o", "report.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 3  # metric vs both params, and the learning curve
    assert MATH_METRIC in html and "$x^$" in html


def test_results_plots_with_dollars_in_names_and_values(math_store, tmp_path):
    res = metalab.load_results(math_store)
    ax = res.plot(x=MATH_PARAM, y=MATH_METRIC, hue="mode", path=tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
    assert ax.get_legend().get_texts()[0].get_text().startswith("mode=")
    res.plot(x="mode", y=MATH_METRIC, path=tmp_path / "b.svg")
    res.plot_series(MATH_STEPPED, hue="mode", path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_plot_text_shows_dollars_literally():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    for text in ["$x^$", "a\\$b$", "$$", "cost $5 and $6", "esc\x1b[2J"]:
        ax.set_title(plot_text(text))
        fig.canvas.draw()  # renders as plain text, no mathtext parse
    assert plot_text("a$b") == "a\\$b"


# -- names safe on any OS ----------------------------------------------------------------
WINDOWS_BAD = [
    "CON",
    "con.txt",
    "Nul.tar.gz",
    "aux .json",
    "COM1",
    "com9.log",
    "LPT1",
    "lpt5.bin",
    "COM\u00b9",
    "CONOUT$",
    "model.",
    "a<b",
    "a>b",
    'quote"d',
    "pipe|d",
    "what?",
    "star*",
]


@pytest.mark.parametrize("name", WINDOWS_BAD)
def test_names_invalid_on_windows_are_refused(name):
    with pytest.raises(CaptureError, match=r"Windows|'\.'"):
        check_name(name, "artifact name")


@pytest.mark.parametrize("name", ["console", "com10", "lpt", "nul_count", "v1.2", "a-b_c+d"])
def test_names_valid_on_windows_are_accepted(name):
    assert check_name(name) == name


@metalab.operation(name="saves")
def saves(params, capture):
    capture.artifact(params["name"], {"a": 1})


def test_an_artifact_with_a_windows_device_name_fails_its_run_clearly():
    exp = metalab.Experiment(
        name="saves", operation=saves, params=metalab.grid(name=["NUL.json", "ok", "x?"])
    )
    res = metalab.run(exp)
    by_name = {r.params["name"]: r for r in res}
    assert by_name["ok"].status == "success"
    for bad in ("NUL.json", "x?"):
        assert by_name[bad].status == "failed"
        assert by_name[bad].error["type"] == "CaptureError"
        assert "Windows" in by_name[bad].error["message"]


# -- store="" ----------------------------------------------------------------------------
@metalab.operation(name="noop")
def noop(params):
    pass


@pytest.mark.parametrize("store", ["", "   "])
def test_an_empty_store_path_is_an_error_not_the_current_folder(tmp_path, store):
    exp = metalab.Experiment(name="e", operation=noop)
    with pytest.raises(StoreError, match=r"empty or blank.*runs/my_experiment"):
        metalab.run(exp, store=store)
    assert list(tmp_path.iterdir()) == []  # nothing created in the current folder
    with pytest.raises(StoreError, match="empty"):
        metalab.load_results(store)


def test_cli_with_an_empty_store_path(tmp_path):
    proc = metalab_cli("show", "", cwd=tmp_path)
    assert proc.returncode == 2 and "is empty or blank" in proc.stderr
    assert list(tmp_path.iterdir()) == []
