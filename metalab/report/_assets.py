"""The report's inline stylesheet and script (no external files, no network)."""

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --accent:#2563eb;
        --ok:#16a34a; --bad:#dc2626; --warn:#d97706; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--fg); background:#fff; }
header { padding:20px 32px 12px; border-bottom:1px solid var(--line); background:var(--bg); }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:var(--muted); }
nav { margin-top:10px; display:flex; flex-wrap:wrap; gap:14px; }
nav a { color:var(--accent); text-decoration:none; }
main { padding:8px 32px 40px; max-width:1400px; }
section { margin-top:26px; }
h2 { font-size:17px; border-bottom:1px solid var(--line); padding-bottom:4px; }
.badges { display:flex; gap:10px; flex-wrap:wrap; }
.badge { padding:6px 12px; border-radius:8px; background:var(--bg); border:1px solid var(--line); }
.badge b { font-size:18px; margin-right:4px; }
.badge.success b { color:var(--ok); } .badge.failed b, .badge.timeout b { color:var(--bad); }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:right;
         white-space:nowrap; }
th { background:var(--bg); position:sticky; top:0; }
td.text, th.text { text-align:left; }
table.sortable th { cursor:pointer; user-select:none; }
table.sortable th:hover { color:var(--accent); }
th[aria-sort=ascending]::after { content:" \\25B2"; font-size:10px; }
th[aria-sort=descending]::after { content:" \\25BC"; font-size:10px; }
.scroll { overflow:auto; max-height:640px; border:1px solid var(--line); border-radius:6px; }
.kv td:first-child { color:var(--muted); text-align:left; }
.kv td { text-align:left; white-space:normal; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(440px,1fr)); gap:14px; }
figure { margin:0; padding:8px; border:1px solid var(--line); border-radius:6px; }
figure svg { width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:12px; text-align:center; }
pre { background:#111827; color:#f3f4f6; padding:10px 12px; border-radius:6px; overflow:auto;
      font-size:12px; }
code { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:12px; }
.failure { border-left:3px solid var(--bad); padding:2px 12px; margin:10px 0; }
.failure .err { color:var(--bad); font-weight:600; }
.muted { color:var(--muted); }
details > summary { cursor:pointer; color:var(--accent); }
"""

JS = """
(function () {
  "use strict";
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) { return [2, ""]; }
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (v === "") { return [2, ""]; }
    var n = Number(v);
    return isNaN(n) ? [1, v.toLowerCase()] : [0, n];
  }
  function sortTable(table, col, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      if (x[0] !== y[0]) { return x[0] - y[0]; }  // numbers, then text, then blanks
      if (x[1] === y[1]) { return 0; }
      return (x[1] < y[1] ? -1 : 1) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col, th); }
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""
