"""MkDocs hook: the docs build makes the pictures of results.md from real runs.

They are drawn into the built site (``site/img``), replacing the copies committed in
``docs/img`` (which keep the Markdown readable on its own), so a build never changes
the source tree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def on_post_build(config: Any, **kwargs: Any) -> None:
    docs = Path(config["docs_dir"])
    spec = importlib.util.spec_from_file_location("metalab_docs_figures", docs / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(Path(config["site_dir"]) / "img")
