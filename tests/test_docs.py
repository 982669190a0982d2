"""The documentation: it builds strictly with MkDocs, and its links and nav resolve."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown toc) gives a heading."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text).strip("-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M)}


def relative_links(path: Path) -> list[str]:
    text = _strip_code(path.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("path", [*PAGES, ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


def test_link_checker_finds_broken_links(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "# Title\n\n[ok](p.md#title) [bad](missing.md) [anchor](p.md#nope) "
        "[web](https://example.org) `[code](x.md)`\n"
    )
    assert relative_links(page) == ["p.md#title", "missing.md", "p.md#nope"]
    assert anchors(page) == {"title"}
    assert slug("Run identity") == "run-identity" and slug("`metalab ls [DIR]`") == "metalab-ls-dir"


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, flags=re.M)


def test_nav_lists_every_page_and_every_page_exists():
    nav = nav_pages()
    assert "index.md" in nav and "api.md" in nav and "cli.md" in nav
    missing = [p for p in nav if not (DOCS / p).exists()]
    assert not missing, f"pages in mkdocs.yml nav but not in docs/: {missing}"
    orphans = sorted({p.name for p in PAGES} - set(nav))
    assert not orphans, f"pages in docs/ but not in mkdocs.yml nav: {orphans}"


def test_readme_has_the_quick_start_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "uv run python examples/pi_mc.py" in readme
    assert "uv run pytest" in readme
    assert re.search(r"\]\(docs/index\.md\)", readme)


def test_readme_example_runs(tmp_path):
    """The README's Python example runs as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALAB")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.strip()


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.slow
@pytest.mark.skipif(
    not _have("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"),
    reason="mkdocs, mkdocs-material and mkdocstrings[python] are not installed "
    "(add them to the dev dependency group to build the docs in CI)",
)
def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in (
        "metalab.run",
        "metalab.load_results",
        "metalab.experiment.Experiment",
        "metalab.results.Results",
        "metalab.report.write_report",
    ):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    assert (tmp_path / "site" / "cli" / "index.html").exists()
