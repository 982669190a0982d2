"""Rendering a :class:`ReportData` as one self-contained HTML page."""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
from html import escape
from typing import Any

from .._text import MISSING
from ..store.records import (
    ATTEMPT,
    DURATION_S,
    ERROR_MESSAGE,
    ERROR_TYPE,
    FAILED,
    HOST,
    PARAMS,
    REPLICATE,
    RUN_ID,
    STATUS,
    SUCCESS,
    TRACEBACK,
    WORKER,
)
from ._assets import CSS, JS
from ._data import ReportData, fmt_value, summary
from ._plots import learning_curves, metric_plots
from ._search import is_search, render_search

#: At most this many rows in the "all runs" table, and failures shown.
MAX_RUN_ROWS = 2000
MAX_FAILURES = 50


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any, *, text: bool = False) -> str:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f'<td data-v="">{MISSING}</td>'  # missing prints as everywhere else
    if _num(v) and not text:
        return f'<td data-v="{v!r}">{escape(fmt_value(v))}</td>'
    return f'<td class="text">{escape(str(v))}</td>'


def _table(
    columns: list[str],
    rows: list[list[Any]],
    *,
    sortable: bool = True,
    text_cols: set[str] | None = None,
    table_id: str = "",
) -> str:
    text_cols = text_cols or set()
    cls = ' class="sortable"' if sortable else ""
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(
        f'<th{" class=text" if c in text_cols else ""} scope="col">{escape(c)}</th>'
        for c in columns
    )
    body = "\n".join(
        "<tr>"
        + "".join(_cell(v, text=c in text_cols) for c, v in zip(columns, r, strict=True))
        + "</tr>"
        for r in rows
    )
    return (
        f'<div class="scroll"><table{cls}{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _rows(df: Any, columns: list[str]) -> list[list[Any]]:
    """Rows of ``df`` as Python values, column by column (ints stay ints)."""
    cols = [df[c].tolist() for c in columns]
    return [list(r) for r in zip(*cols, strict=True)]


def _time(t: Any) -> str:
    if not _num(t):
        return ""
    return dt.datetime.fromtimestamp(float(t)).strftime("%Y-%m-%d %H:%M:%S")


def _kv(items: list[tuple[str, Any]]) -> str:
    rows = []
    for k, v in items:
        if isinstance(v, (dict, list)):
            val = f"<code>{escape(json.dumps(v, sort_keys=True))}</code>"
        else:
            val = escape(str(v))
        rows.append(f"<tr><td>{escape(k)}</td><td>{val}</td></tr>")
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def render_counts(data: ReportData) -> str:
    total = sum(data.counts.values())
    badges = [f'<div class="badge total"><b>{total}</b>runs</div>']
    badges += [  # in Results.counts() order: success, failed, timeout, others
        f'<div class="badge {escape(k)}"><b>{n}</b>{escape(k)}</div>'
        for k, n in data.counts.items()
    ]
    notes = []
    if data.pending:  # counts are the records the store holds; the plan is said as a plan
        states = {s.get("state") for s in data.sweeps[-1:]}
        why = "its driver is gone" if "interrupted" in states else "it may still be running"
        notes.append(
            f"The latest sweep planned {data.pending} more runs that the store does not "
            f"hold ({why}; run the experiment again with resume=True to finish them)."
        )
    if data.note:
        notes.append(data.note)
    note = "".join(f'<p class="muted">{escape(n)}</p>' for n in notes)
    return f'<div class="badges">{"".join(badges)}</div>{note}'


def render_summary(data: ReportData) -> str:
    df = summary(data)
    if not len(df):
        return '<p class="muted">No runs yet.</p>'
    df = df.assign(**{FAILED: df["runs"] - df[SUCCESS]})
    columns = [*data.swept, "runs", SUCCESS, FAILED]
    rows = _rows(df, columns)
    header = list(columns)
    metric_cols = []
    for m in data.metrics:
        if f"{m}_mean" in df.columns:
            header += [f"{m} mean", f"{m} std"]
            metric_cols.append(m)
    for i, row in enumerate(rows):
        for m in metric_cols:
            row += [df[f"{m}_mean"].iat[i], df[f"{m}_std"].iat[i]]
    fixed = [p for p in data.params if p not in data.swept]
    fixed_text = ""
    if fixed and len(data.runs):
        first = data.runs.iloc[0]
        fixed_text = " Fixed: " + ", ".join(f"{p}={fmt_value(first[p])}" for p in fixed) + "."
    note = (
        '<p class="muted">One row per parameter setting; metrics are the mean and standard '
        "deviation over the successful replicates. Click a column header to sort."
        f"{escape(fixed_text)}</p>"
    )
    return note + _table(header, rows, table_id="summary-table")


def render_plots(data: ReportData) -> str:
    plots = metric_plots(data)
    if not plots:
        why = "no swept parameters" if not data.swept else "no successful runs with metrics"
        return f'<p class="muted">No plots ({why}).</p>'
    figs = "\n".join(
        f"<figure>{svg}<figcaption>{escape(cap)}</figcaption></figure>" for cap, svg in plots
    )
    return (
        '<p class="muted">Each point is the mean over replicates; the band (or bar) is '
        f'± one standard deviation.</p><div class="grid">{figs}</div>'
    )


def render_curves(data: ReportData) -> str:
    curves = learning_curves(data)
    if not curves:
        return (
            '<p class="muted">No stepped metrics (record them with '
            "<code>capture.metric(name, value, step=i)</code>).</p>"
        )
    figs = "\n".join(
        f"<figure>{svg}<figcaption>{escape(cap)}{' · ' + escape(note) if note else ''}"
        "</figcaption></figure>"
        for cap, svg, note in curves
    )
    return f'<div class="grid">{figs}</div>'


def render_failures(data: ReportData) -> str:
    runs = data.runs
    bad = runs[runs[STATUS] != SUCCESS] if len(runs) else runs
    if not len(bad):
        return '<p class="muted">No failed runs.</p>'
    items = []
    for _, r in bad.head(MAX_FAILURES).iterrows():
        params = r.get(PARAMS) or "{}"
        err = f"{r.get(ERROR_TYPE) or r[STATUS]}: {r.get(ERROR_MESSAGE) or ''}"
        tb = r.get(TRACEBACK) or ""
        tb_html = (
            f"<details><summary>traceback</summary><pre>{escape(tb)}</pre></details>" if tb else ""
        )
        items.append(
            f'<div class="failure"><p><code>{escape(str(r[RUN_ID]))}</code> '
            f'<span class="muted">replicate {escape(str(r.get(REPLICATE, "")))}, '
            f"attempt {escape(str(r.get(ATTEMPT, '')))}</span><br>"
            f"<code>{escape(str(params))}</code></p>"
            f'<p class="err">{escape(err)}</p>{tb_html}</div>'
        )
    more = ""
    if len(bad) > MAX_FAILURES:
        more = f'<p class="muted">... and {len(bad) - MAX_FAILURES} more failed runs.</p>'
    return "\n".join(items) + more


def render_runs(data: ReportData) -> str:
    runs = data.runs
    if not len(runs):
        return '<p class="muted">No runs yet.</p>'
    cols = [RUN_ID, *data.params, REPLICATE, STATUS, *data.metrics, DURATION_S]
    cols = [c for c in cols if c in runs.columns]
    shown = runs[cols].head(MAX_RUN_ROWS)
    rows = _rows(shown, cols)
    text = {RUN_ID, STATUS}
    rows = [[str(r[0])[:12], *r[1:]] for r in rows]
    note = (
        f"<p class='muted'>Showing the first {MAX_RUN_ROWS} of {len(runs)} runs.</p>"
        if len(runs) > MAX_RUN_ROWS
        else ""
    )
    return (
        f"<details><summary>show all {len(runs)} runs</summary>{note}"
        f"{_table(cols, rows, text_cols=text, table_id='runs-table')}</details>"
    )


def render_provenance(data: ReportData) -> str:
    m = data.manifest
    items = [(k, _time(v) if k == "created" else v) for k, v in m.items()]
    parts = [f"<h3>Manifest</h3>{_kv(items)}"]
    if data.sweeps:
        cols = [
            "sweep",
            "started",
            "ended",
            "status",
            "executor",
            "planned",
            "to_run",
            "skipped",
            "success",
            "failed",
            "source_hash",
        ]
        rows = []
        for s in data.sweeps:
            rows.append(
                [
                    s.get("sweep"),
                    _time(s.get("started")),
                    _time(s.get("ended")),
                    s.get("state", s.get("status", "running")),
                    s.get("executor"),
                    s.get("planned"),
                    s.get("to_run"),
                    s.get("skipped"),
                    s.get(SUCCESS),
                    s.get(FAILED),
                    (s.get("source_hash") or "")[:12],
                ]
            )
        text = {"sweep", "started", "ended", "status", "executor", "source_hash"}
        parts.append(
            f"<h3>Sweeps (one per run() call)</h3>"
            f"{_table(cols, rows, sortable=False, text_cols=text)}"
        )
    runs = data.runs
    if len(runs) and HOST in runs.columns:
        hosts = sorted(str(h) for h in runs[HOST].dropna().unique())
        workers = runs[WORKER].nunique() if WORKER in runs.columns else 0
        parts.append(_kv([("hosts", ", ".join(hosts)), ("workers", workers)]))
    return "\n".join(parts)


def render(data: ReportData) -> str:
    """The whole page."""
    from .. import __version__

    title = escape(data.title)
    sections = [
        ("counts", "Runs by status", render_counts(data)),
        ("summary", "Summary by parameters", render_summary(data)),
        ("plots", "Metrics against parameters", render_plots(data)),
        ("curves", "Learning curves", render_curves(data)),
        (
            "failures",
            f"Failures ({sum(v for k, v in data.counts.items() if k != SUCCESS)})",
            render_failures(data),
        ),
        ("runs", "All runs", render_runs(data)),
        ("provenance", "Provenance", render_provenance(data)),
    ]
    if is_search(data):  # a metalab.optimize store: its history and parameter plots
        sections.insert(0, ("search", "Search", render_search(data)))
    nav = "".join(f'<a href="#{i}">{escape(t.split(" (")[0])}</a>' for i, t, _ in sections)
    body = "\n".join(_section(i, t, b) for i, t, b in sections)
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    version = data.manifest.get("experiment_version", "")
    sub = (
        f"experiment version {escape(str(version))} · store <code>{escape(str(data.root))}"
        f"</code> · generated {generated} by metalab {__version__} "
        f"(Python {platform.python_version()})"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="metalab {__version__}">
<title>{title} · metalab report</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{title}</h1><div class="sub">{sub}</div><nav>{nav}</nav></header>
<main>
{body}
</main>
<script>{JS}</script>
</body>
</html>
"""
