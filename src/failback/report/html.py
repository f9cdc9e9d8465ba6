"""The HTML report: one self-contained page (timeline, size by table, benchmark before/after as inline SVG)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from .. import __version__
from ..db.integrity import repair_note
from ..journal import RunState
from ..verify import table_status
from .data import _axis, _bytes, _checks, backups, benchmark, down_decisions, elapsed, source_repair, table_sizes
from .markdown import (
    CHECK_GROUPS,
    Table,
    audit_table,
    benchmark_table,
    checks_table,
    findings_table,
    hashes_table,
    layers_table,
    matrix_table,
    plan_table,
)

# -- HTML -------------------------------------------------------------------------------------------
STATUS_COLOR = {
    "done": "#1a7f37",
    "dry-run": "#0969da",
    "running": "#9a6700",
    "interrupted": "#9a6700",
    "aborted": "#6e7781",
    "skipped": "#8c959f",
    "pending": "#d0d7de",
}
FAILED_COLOR = "#cf222e"
BEFORE, AFTER = "#8c959f", "#0969da"
SVG_WIDTH = 900
LABEL_WIDTH = 170
ROW = 26
TOP_TABLES = 15

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
.meta { color: #57606a; margin: 0; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600;
         font-size: 14px; vertical-align: middle; }
.error { border-color: #cf222e; background: #ffebe9; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; background: none;
         border: 0; padding: 0; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 20px; } .card span { color: #57606a; font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; overflow-wrap: anywhere; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
.v-high, .v-critical, .v-refuse, .v-drop { color: #cf222e; font-weight: 600; }
.v-warn, .v-convert { color: #9a6700; } .v-skip, .muted { color: #6e7781; }
svg { width: 100%; height: auto; display: block; } svg text { font: 13px system-ui, "DejaVu Sans", sans-serif; }
"""


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _span(css: str, text: Any) -> str:
    return f'<span class="{_e(css)}">{_e(text)}</span>'


def _html_cell(value: str, style: str) -> str:
    """One escaped cell: ``code`` in a code span, ``tag`` coloured by its value, ``ok`` green when "yes", red
    when "NO…" (anything else, e.g. "dropped: …", as a warning)."""
    if style == "ok":
        return _span("ok" if value == "yes" else "bad" if value.startswith("NO") else "v-warn", value)
    if style == "code":
        return f"<code>{_e(value)}</code>"
    return _span(f"v-{value}", value) if style == "tag" else _e(value)


def html_table(table: Table, styles: dict[int, str] | None = None) -> str:
    """An HTML table of plain-text rows; ``styles`` maps a column to ``code``, ``tag``, ``ok`` or ``num``."""
    header, rows = table
    styles = styles or {}
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            (
                f'<td class="num">{_e(c)}</td>'
                if styles.get(i) == "num"
                else f"<td>{_html_cell(c, styles.get(i, ''))}</td>"
            )
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, body: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<section{cls}><h2>{_e(title)}</h2>{body}</section>"


def _svg(height: float, body: str, label: str) -> str:
    return f'<svg viewBox="0 0 {SVG_WIDTH} {math.ceil(height)}" role="img" aria-label="{_e(label)}">{body}</svg>'


def _text(x: float, y: float, s: str, anchor: str = "start", fill: str = "#1f2328", bold: bool = False) -> str:
    weight = ' font-weight="600"' if bold else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{weight}>{_e(s)}</text>'


def _bar(x: float, y: float, w: float, h: float, fill: str, tip: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 2):.1f}" height="{h:.1f}" rx="2" fill="{fill}">'
        f"<title>{_e(tip)}</title></rect>"
    )


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.1f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def timeline_svg(state: RunState) -> str:
    """The steps on a time axis: where the time went, which steps overlapped, which one failed; a pause (a run
    interrupted and resumed later) is cut out of the axis and named beside the step that ended it."""
    spans = _axis(state)
    total = max(elapsed(state), 1e-3)
    step = _nice_step(total)
    ticks = math.ceil(total / step)
    scale = (SVG_WIDTH - LABEL_WIDTH - 230) / (ticks * step)
    bottom = len(spans) * ROW + 4
    parts = []
    for i in range(ticks + 1):
        x = LABEL_WIDTH + i * step * scale
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{bottom}" stroke="#eaeef2"/>')
        parts.append(_text(x, bottom + 16, f"{i * step:g} s", "middle", "#57606a"))
    for i, (s, (start, secs, cut)) in enumerate(zip(state.steps, spans, strict=True)):
        y, x = 4 + i * ROW, LABEL_WIDTH + start * scale
        color = FAILED_COLOR if s.status == "failed" else STATUS_COLOR.get(s.status, "#9a6700")
        parts.append(_text(LABEL_WIDTH - 10, y + 17, s.name, "end", bold=s.status == "failed"))
        if cut:
            dash = 'stroke="#9a6700" stroke-dasharray="4 3"'
            parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{bottom}" {dash}/>')
        if s.seconds is None:
            busy = s.status in ("running", "done")  # done without a time: the report step, writing this page
            parts.append(_text(x + 4, y + 17, "running as this was written" if busy else s.status, fill="#6e7781"))
            continue
        w = secs * scale
        note = ("" if s.status == "done" else f" {s.status}") + (f" · after a {_duration(cut)} pause" if cut else "")
        note += " (in the background)" if s.result.get("background_seconds") else ""
        parts.append(_bar(x, y + 4, w, ROW - 8, color, f"{s.name}: {s.status}, {secs:.3f} s"))
        parts.append(_text(x + max(w, 2) + 6, y + 17, f"{secs:.2f} s{note}"))
    return _svg(bottom + 24, "".join(parts), f"timeline of run {state.id}")


def sizes_svg(sizes: list[tuple[str, int | None, int | None]]) -> str:
    """One bar per table: bytes when the assessment measured them, else rows."""
    shown = sizes[:TOP_TABLES]
    by_bytes = any(b for _, _, b in shown)

    def value(rows: int | None, size: int | None) -> float:
        return float((size if by_bytes else rows) or 0)

    top = max((value(r, b) for _, r, b in shown), default=0.0) or 1.0
    plot = SVG_WIDTH - LABEL_WIDTH - 190
    parts = []
    for i, (name, rows, size) in enumerate(shown):
        y = 4 + i * ROW
        w = value(rows, size) / top * plot
        label = f"{'—' if rows is None else f'{rows:,}'} rows" + (f" · {_bytes(size)}" if by_bytes else "")
        parts.append(_text(LABEL_WIDTH - 10, y + 17, _clip(name, 22), "end"))
        parts.append(_bar(LABEL_WIDTH, y + 4, w, ROW - 8, AFTER if rows is not None else BEFORE, f"{name}: {label}"))
        parts.append(_text(LABEL_WIDTH + max(w, 2) + 6, y + 17, label, fill="#57606a"))
    if len(sizes) > len(shown):
        parts.append(_text(LABEL_WIDTH, 4 + len(shown) * ROW + 17, f"… {len(sizes) - len(shown)} more", fill="#6e7781"))
    return _svg(8 + (len(shown) + (len(sizes) > len(shown))) * ROW, "".join(parts), "database size by table")


def benchmark_svg(queries: list[dict[str, Any]]) -> str:
    """Per query, p50 and p95 before (baseline, grey) and after (blue), each query on its own scale; only the
    after bars when no baseline was recorded."""
    whens = [("after the rollback", "", AFTER)]
    if any(q.get("before_p95_ms") is not None for q in queries):
        whens.insert(0, ("before (baseline)", "before_", BEFORE))
    parts = []
    for i, (label, _, color) in enumerate(whens):
        parts += [_bar(LABEL_WIDTH + i * 160, 6, 14, 12, color, label), _text(LABEL_WIDTH + i * 160 + 20, 17, label)]
    y = 30.0
    plot = SVG_WIDTH - LABEL_WIDTH - 150
    for q in queries:
        parts.append(_text(0, y + 14, _clip(q["sql"], 110), bold=True))
        y += 22
        values = [q.get(f"{prefix}{p}_ms") for _, prefix, _ in whens for p in ("p50", "p95")]
        top = max((v for v in values if v), default=1.0)
        for p in ("p50", "p95"):
            parts.append(_text(LABEL_WIDTH - 10, y + 6 + 6.5 * len(whens), p, "end"))
            for i, (label, prefix, color) in enumerate(whens):
                v, bar_y = q.get(f"{prefix}{p}_ms"), y + 2 + i * 13
                if v is None:
                    parts.append(_text(LABEL_WIDTH + 4, bar_y + 9, f"{label}: not recorded", fill="#6e7781"))
                    continue
                fill = FAILED_COLOR if not prefix and p == "p95" and not q["ok"] else color
                w = v / top * plot
                parts.append(_bar(LABEL_WIDTH, bar_y, w, 11, fill, f"{p} {label}: {v:.3f} ms"))
                parts.append(_text(LABEL_WIDTH + max(w, 2) + 6, bar_y + 10, f"{v:.2f} ms", fill="#57606a"))
            y += 4 + 13 * len(whens)
        y += 8
    return _svg(y, "".join(parts), "benchmark before and after")


def _cards(state: RunState, data: dict[str, Any]) -> str:
    v, a = data.get("verification") or {}, data.get("assessment") or {}
    tables = v.get("tables") or []
    rows = sum((t.get("sqljs") or t.get("target") or t.get("snapshot") or {}).get("rows", 0) for t in tables)
    cards = [(f"{elapsed(state):.2f} s", "from the first step to the last")]
    if a:
        cards.append((a["level"], "risk"))
    if tables:
        statuses = [table_status(t) for t in tables]
        compared = [x for x in statuses if x in ("equal", "differs")]
        cards.append((f"{statuses.count('equal')}/{len(compared)}", "tables equal in all three"))
        if dropped := statuses.count("dropped"):
            cards.append((str(dropped), "tables dropped by the plan"))
        cards.append((f"{rows:,}", "rows verified"))
    if v.get("checks"):
        cards.append((f"{sum(c['ok'] for c in v['checks'])}/{len(v['checks'])}", "checks passed"))
    if made := backups(state, data):
        copies = sum(b["verified_layers"] for _, b in made), sum(len(b["layers"]) for _, b in made)
        cards.append((f"{copies[0]}/{copies[1]}", f"backup copies verified ({len(made)} backups)"))
    switch = state.step("switch").result
    if switch.get("to"):
        cards.append((f"{switch['from']} → {switch['to']}", "provider switched"))
    body = "".join(f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>' for value, label in cards)
    return f'<section class="cards">{body}</section>'


def _backups_html(state: RunState, data: dict[str, Any]) -> str:
    return "".join(
        f"<h3>{_e(role.replace('_', ' '))}: <code>{_e(b['id'])}</code></h3>"
        + html_table(hashes_table(b), {1: "code", 2: "num"})
        + html_table(layers_table(b), {1: "ok"})
        for role, b in backups(state, data)
    )


def _verification_html(v: dict[str, Any]) -> str:
    head = (
        f'<p class="meta">{_e(v["level"])} verification: '
        f"{_span('ok', 'passed') if v['ok'] else _span('bad', 'FAILED')} · integrity "
        f"{_e(v['integrity'])} · foreign key violations {_e(v['foreign_keys'])} · sql.js {_e(v['sqljs_version'])}</p>"
    )
    problems = "".join(f'<p class="bad">✗ {_e(p)}</p>' for p in v.get("problems") or [])
    deferred = v.get("deferred") or []
    debt = f'<p class="v-warn">Deferred (verification debt): {_e(", ".join(deferred))}</p>' if deferred else ""
    return head + html_table(matrix_table(v), {4: "ok"}) + problems + debt


def _benchmark_html(queries: list[dict[str, Any]]) -> str:
    note = (
        ""
        if any(q.get("before_p95_ms") is not None for q in queries)
        else '<p class="muted">No baseline was recorded: run <code>failback baseline record</code> before a rollback '
        "to compare.</p>"
    )
    nums = dict.fromkeys(range(1, 6), "num")
    return note + benchmark_svg(queries) + html_table(benchmark_table(queries), {0: "code", **nums, 6: "ok"})


def render_html(state: RunState, data: dict[str, Any]) -> str:
    """One self-contained page (no script, no network): the run at a glance, then every detail."""
    color = STATUS_COLOR.get(state.status, FAILED_COLOR)
    parts = [
        f"<header><h1>failback run {_e(state.id)} "
        f'<span class="badge" style="background:{color}">{_e(state.status)}</span></h1>'
        f'<p class="meta">{_e(state.mode)} mode · started {_e(state.created)} · exit code {_e(state.exit_code)} · '
        f"config {_e(state.config)}</p></header>"
    ]
    if state.error:
        parts.append(_section("Error", f"<p>{_e(state.error)}</p>", "error"))
    if repaired := source_repair(state):
        parts.append(_section("Source repaired", f'<p class="v-warn">{_e(repair_note(repaired))}</p>'))
    parts.append(_cards(state, data))
    parts.append(_section("Timeline", timeline_svg(state)))
    if sizes := table_sizes(data):
        legend = '<p class="muted">Blue: tables copied and verified; grey: internal tables (rebuilt, not copied).</p>'
        parts.append(_section("Size by table", legend + sizes_svg(sizes)))
    if v := data.get("verification"):
        parts.append(_section("Verification: snapshot / target / sql.js per table", _verification_html(v)))
        for title, kind in CHECK_GROUPS:
            if checks := _checks(data, kind):
                parts.append(_section(title, html_table(checks_table(checks), {1: "code", 2: "ok"})))
    if bench := benchmark(state):
        parts.append(_section("Benchmark: p50 / p95 before and after (ms, in sql.js)", _benchmark_html(bench)))
    if a := data.get("assessment"):
        parts.append(_section(f"Findings (risk {a['level']})", html_table(findings_table(a), {0: "tag"})))
    if backups(state, data):
        parts.append(_section("Backups", _backups_html(state, data)))
    if plan := data.get("plan"):
        parts.append(_section(f"Conversion ({plan['profile']})", html_table(plan_table(plan), {1: "code", 2: "tag"})))
    if down := down_decisions(state):
        parts.append(
            _section("Down-conversion to the old app's schema", html_table(plan_table(down), {1: "code", 2: "tag"}))
        )
    if data.get("audit"):
        parts.append(_section("Audit events", html_table(audit_table(data["audit"]), {0: "num", 3: "code"})))
    footer = f'<p class="meta">written by failback {_e(__version__)}; the same data is in report.json</p>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>failback run {_e(state.id)}: {_e(state.status)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}{footer}</main></body></html>\n"
    )
