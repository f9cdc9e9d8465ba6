"""Run reports: JSON (everything), Markdown (what a person reads) and one self-contained HTML page (what a person
looks at: timeline, size by table, benchmark before/after as inline SVG), written into the run directory and
rendered again from it by ``failback report``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from . import __version__
from .audit import AuditLog
from .convert import load_plan
from .files import write_text
from .journal import RunDir, RunState, StepState

FORMATS = ("md", "html", "json")
SECTIONS = ("plan", "assessment", "backup", "verification", "audit")


# -- the data of a report ---------------------------------------------------------------------------
def load_report(rd: RunDir, audit_log: Path) -> tuple[RunState, dict[str, Any]]:
    """A run's state and report data, read from its directory: the data the run wrote into report.json, else
    (a run killed before its report) what state.json and plan.json hold; audit events always fresh from the log,
    so what happened after the run (resume, abort, verification debt paid) is in the report too."""
    state = rd.load()
    try:
        saved = json.loads(rd.file("report.json").read_text(encoding="utf-8"))
        data = {k: saved.get(k) for k in SECTIONS}
    except (FileNotFoundError, ValueError):
        data = _data_from_state(rd, state)
    data["audit"] = AuditLog(audit_log).records(rd.id) or data.get("audit") or []
    return state, data


def _data_from_state(rd: RunDir, state: RunState) -> dict[str, Any]:
    assess = {k: v for k, v in state.step("assess").result.items() if k != "plan"}
    try:
        plan: dict[str, Any] | None = load_plan(json.loads(rd.file("plan.json").read_text(encoding="utf-8"))).to_json()
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        plan = state.step("assess").result.get("plan")
    return {
        "plan": plan,
        "assessment": assess or None,
        "backup": state.step("backup").result.get("source"),
        "verification": state.step("verify").result or None,
        "audit": [],
    }


def backups(state: RunState, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, backup) for every backup the run made: the source, and the target it replaced."""
    found = [(role, b) for role, b in state.step("backup").result.items() if isinstance(b, dict) and "id" in b]
    return found or ([("source", data["backup"])] if data.get("backup") else [])


def benchmark(state: RunState) -> list[dict[str, Any]]:
    """The post-check's timings: per query p50/p95 before (baseline) and after the rollback."""
    queries = state.step("postcheck").result.get("queries")
    return queries if isinstance(queries, list) else []


def table_sizes(data: dict[str, Any]) -> list[tuple[str, int | None, int | None]]:
    """(table, rows, bytes) largest first: rows from the verification matrix, bytes from the assessment facts."""
    facts = ((data.get("assessment") or {}).get("facts") or {}).get("tables") or {}
    sizes: dict[str, list[int | None]] = {name: [f.get("rows"), f.get("bytes")] for name, f in facts.items()}
    for t in (data.get("verification") or {}).get("tables") or []:
        side = t.get("sqljs") or t.get("target") or t.get("snapshot")
        if side is not None:
            sizes.setdefault(t["table"], [None, None])[0] = side["rows"]
    return sorted(((n, r, b) for n, (r, b) in sizes.items()), key=lambda x: (x[2] or 0, x[1] or 0), reverse=True)


def _checks(data: dict[str, Any], kind: str | None) -> list[dict[str, Any]]:
    """Verification checks of one kind (``search``, ``query``), or every other kind when None."""
    checks = (data.get("verification") or {}).get("checks") or []
    special = ("search", "query")
    return [c for c in checks if c["kind"] == kind or (kind is None and c["kind"] not in special)]


def _rows(x: dict[str, Any] | None) -> str:
    return "—" if x is None else f"{x['rows']} · {x['digest'][:12]}" if x["digest"] else str(x["rows"])


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# -- JSON and Markdown ------------------------------------------------------------------------------
def render_json(state: RunState, data: dict[str, Any]) -> str:
    """Everything: the run's state and the report data."""
    return json.dumps({"run": state.to_json(), **data}, indent=2, default=str) + "\n"


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (pipes and newlines in cells escaped), then a blank line."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return [*out, ""]


def _md_checks(title: str, checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    rows = [[c["kind"], c["name"], "yes" if c["ok"] else "NO", c["detail"]] for c in checks]
    return [f"### {title}", "", *md_table(["check", "name", "ok", "detail"], rows)]


def render_markdown(state: RunState, data: dict[str, Any]) -> str:
    """A readable report of one run."""
    lines = [
        f"# failback run {state.id}",
        "",
        f"- status: **{state.status}** (exit {state.exit_code})",
        f"- mode: {state.mode}; started {state.created}; {elapsed(state):.2f} s from the first step to the last",
    ]
    if state.error:
        lines.append(f"- error: {state.error}")
    lines += ["", "## Steps", ""]
    lines += md_table(
        ["step", "status", "seconds"],
        [[s.name, s.status, f"{s.seconds:.2f}" if s.seconds is not None else ""] for s in state.steps],
    )
    if data.get("assessment"):
        a = data["assessment"]
        lines += [f"## Risk: {a['level']}", ""]
        lines += md_table(
            ["severity", "finding", "fix"], [[f["severity"], f["message"], f["fix"]] for f in a["findings"]]
        )
    for role, b in backups(state, data):
        lines += [f"## Backup of the {role.replace('_', ' ')}: `{b['id']}`", ""]
        lines += [f"- sha256 raw `{b['sha256']['raw']}`", f"- sha256 compressed `{b['sha256']['compressed']}`", ""]
        lines += md_table(["layer", "verified", "error"], [[x["folder"], x["ok"], x["error"]] for x in b["layers"]])
    if data.get("plan"):
        lines += ["## Conversion", ""]
        lines += md_table(
            ["kind", "object", "action", "reason"],
            [[d["kind"], d["name"], d["action"], d["reason"]] for d in data["plan"]["decisions"]],
        )
    if data.get("verification"):
        v = data["verification"]
        lines += [f"## Verification ({v['level']}): {'passed' if v['ok'] else 'FAILED'}", ""]
        lines += [
            f"- integrity: {v['integrity']}; foreign key violations: {v['foreign_keys']}; sql.js {v['sqljs_version']}",
            "",
        ]
        lines += md_table(
            ["table", "snapshot", "target", "sql.js", "equal"],
            [
                [t["table"], _rows(t["snapshot"]), _rows(t["target"]), _rows(t["sqljs"]), "yes" if t["ok"] else "NO"]
                for t in v["tables"]
            ],
        )
        lines += _md_checks("Search parity", _checks(data, "search"))
        lines += _md_checks("Query parity", _checks(data, "query"))
        lines += _md_checks("Other checks", _checks(data, None))
        lines += [f"- problem: {p}" for p in v.get("problems") or []]
        if v["deferred"]:
            lines += [f"Deferred (verification debt): {', '.join(v['deferred'])}", ""]
    if bench := benchmark(state):
        lines += ["## Benchmark (ms, sql.js)", ""]
        lines += md_table(
            ["query", "p50 before", "p50 after", "p95 before", "p95 after", "p95 ratio", "ok"],
            [
                [
                    q["sql"],
                    _ms(q["before_p50_ms"]),
                    _ms(q["p50_ms"]),
                    _ms(q["before_p95_ms"]),
                    _ms(q["p95_ms"]),
                    "—" if q["ratio"] is None else f"{q['ratio']:.2f}",
                    "yes" if q["ok"] else "NO",
                ]
                for q in bench
            ],
        )
    if data.get("audit"):
        lines += ["## Audit events", ""]
        lines += md_table(["seq", "time", "event"], [[r["seq"], r["time"], r["event"]] for r in data["audit"]])
    return "\n".join(lines) + "\n"


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
PAUSE = 1.0  # seconds between steps beyond which the timeline cuts the pause out

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
.sev-high, .sev-critical, .act-refuse, .act-drop { color: #cf222e; font-weight: 600; }
.sev-warn, .act-convert { color: #9a6700; } .act-skip, .muted { color: #6e7781; }
svg { width: 100%; height: auto; display: block; } svg text { font: 13px system-ui, "DejaVu Sans", sans-serif; }
"""


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _html_table(header: list[str], rows: list[list[str]], num: tuple[int, ...] = ()) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _span(css: str, text: Any) -> str:
    return f'<span class="{_e(css)}">{_e(text)}</span>'


def _yes(ok: bool) -> str:
    return _span("ok", "yes") if ok else _span("bad", "NO")


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


def _wall_span(s: StepState) -> tuple[float, float] | None:
    """When a step ran (epoch start, seconds); a step that waited for work done in the background (its result has
    ``background_seconds``) is drawn from when that work began."""
    if s.started is None:
        return None
    waited = s.seconds or 0.0
    worked = max(waited, float(s.result.get("background_seconds") or 0.0))
    return s.started + waited - worked, worked


def _pauses(spans: list[tuple[float, float]]) -> dict[float, float]:
    """Pauses longer than PAUSE in which no step ran (a run interrupted, resumed later): start time of the step
    that ended the pause -> its length."""
    pauses: dict[float, float] = {}
    covered: float | None = None
    for start, secs in sorted(spans):
        if covered is not None and start - covered > PAUSE:
            pauses[start] = start - covered
        covered = start + secs if covered is None else max(covered, start + secs)
    return pauses


def _axis(state: RunState) -> list[tuple[float, float, float]]:
    """Per step: (start on the time axis, seconds, pause cut out just before it). The axis starts with the first
    step; pauses longer than PAUSE are cut out."""
    walls = [_wall_span(s) for s in state.steps]
    pauses = _pauses([w for w in walls if w is not None])
    t0 = min((w[0] for w in walls if w is not None), default=0.0)
    spans: list[tuple[float, float, float]] = []  # (start on the axis, seconds, pause cut out just before)
    cursor = 0.0
    for s, wall in zip(state.steps, walls, strict=True):
        start, secs, cut = cursor, s.seconds or 0.0, 0.0
        if wall is not None:
            start = wall[0] - t0 - sum(length for end, length in pauses.items() if end <= wall[0])
            secs, cut = wall[1], pauses.get(wall[0], 0.0)
        spans.append((start, secs, cut))
        cursor = max(cursor, start + secs)
    return spans


def elapsed(state: RunState) -> float:
    """Seconds from the first step's start to the last step's end, pauses cut out."""
    return max((start + secs for start, secs, _ in _axis(state)), default=0.0)


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
            parts.append(_text(x + 4, y + 17, s.status, fill="#6e7781"))
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
    """Per query, p50 and p95 before (baseline, grey) and after (blue); each query on its own scale."""
    parts = [
        _bar(LABEL_WIDTH, 6, 14, 12, BEFORE, "before: the baseline"),
        _text(LABEL_WIDTH + 20, 17, "before (baseline)"),
        _bar(LABEL_WIDTH + 160, 6, 14, 12, AFTER, "after the rollback"),
        _text(LABEL_WIDTH + 180, 17, "after the rollback"),
    ]
    y = 30.0
    plot = SVG_WIDTH - LABEL_WIDTH - 150
    for q in queries:
        parts.append(_text(0, y + 14, _clip(q["sql"], 110), bold=True))
        y += 22
        top = max((v for k in ("before_p50_ms", "p50_ms", "before_p95_ms", "p95_ms") if (v := q.get(k))), default=1.0)
        for p in ("p50", "p95"):
            pairs = [("before", q.get(f"before_{p}_ms"), BEFORE), ("after", q.get(f"{p}_ms"), AFTER)]
            for i, (when, v, color) in enumerate(pairs):
                if i == 0:
                    parts.append(_text(LABEL_WIDTH - 10, y + 18, p, "end"))
                if v is None:
                    parts.append(_text(LABEL_WIDTH + 4, y + 11 + i * 13, f"{when}: not recorded", fill="#6e7781"))
                    continue
                fill = FAILED_COLOR if when == "after" and p == "p95" and not q["ok"] else color
                w = v / top * plot
                parts.append(_bar(LABEL_WIDTH, y + 2 + i * 13, w, 11, fill, f"{p} {when}: {v:.3f} ms"))
                parts.append(_text(LABEL_WIDTH + max(w, 2) + 6, y + 12 + i * 13, f"{v:.2f} ms", fill="#57606a"))
            y += 30
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
        cards.append((f"{sum(t['ok'] for t in tables)}/{len(tables)}", "tables equal in all three"))
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
    out = []
    for role, b in backups(state, data):
        layers = _html_table(
            ["layer", "verified", "error"], [[_e(x["folder"]), _yes(x["ok"]), _e(x["error"])] for x in b["layers"]]
        )
        out.append(
            f"<h3>{_e(role.replace('_', ' '))}: <code>{_e(b['id'])}</code></h3>"
            + _html_table(
                ["", "sha256", "bytes"],
                [
                    [kind, f'<span class="mono">{_e(b["sha256"][kind])}</span>', _e(f"{b['bytes'][kind]:,}")]
                    for kind in ("raw", "compressed")
                ],
                (2,),
            )
            + layers
        )
    return "".join(out)


def _checks_html(checks: list[dict[str, Any]]) -> str:
    return _html_table(
        ["check", "name", "ok", "detail"],
        [[_e(c["kind"]), f"<code>{_e(c['name'])}</code>", _yes(c["ok"]), _e(c["detail"])] for c in checks],
    )


def _verification_html(v: dict[str, Any]) -> str:
    def cell(x: dict[str, Any] | None) -> str:
        return _e(_rows(x))

    head = (
        f'<p class="meta">{_e(v["level"])} verification: '
        f"{_span('ok', 'passed') if v['ok'] else _span('bad', 'FAILED')} · integrity "
        f"{_e(v['integrity'])} · foreign key violations {_e(v['foreign_keys'])} · sql.js {_e(v['sqljs_version'])}</p>"
    )
    matrix = _html_table(
        ["table", "snapshot (rows · digest)", "target", "sql.js", "equal"],
        [
            [_e(t["table"]), cell(t["snapshot"]), cell(t["target"]), cell(t["sqljs"]), _yes(t["ok"])]
            for t in v["tables"]
        ],
    )
    problems = "".join(f'<p class="bad">✗ {_e(p)}</p>' for p in v.get("problems") or [])
    deferred = v.get("deferred") or []
    debt = f'<p class="sev-warn">Deferred (verification debt): {_e(", ".join(deferred))}</p>' if deferred else ""
    return head + matrix + problems + debt


def _benchmark_html(queries: list[dict[str, Any]]) -> str:
    note = (
        ""
        if any(q.get("before_p95_ms") is not None for q in queries)
        else '<p class="muted">No baseline was recorded: run <code>failback baseline record</code> before a rollback '
        "to compare.</p>"
    )
    rows = [
        [
            f"<code>{_e(q['sql'])}</code>",
            _e(_ms(q.get("before_p50_ms"))),
            _e(_ms(q["p50_ms"])),
            _e(_ms(q.get("before_p95_ms"))),
            _e(_ms(q["p95_ms"])),
            _e("—" if q.get("ratio") is None else f"{q['ratio']:.2f}"),
            _yes(q["ok"]) + (f" {_e(q['error'])}" if q.get("error") else ""),
        ]
        for q in queries
    ]
    table = _html_table(
        ["query", "p50 before", "p50 after", "p95 before", "p95 after", "p95 ratio", "ok"], rows, (1, 2, 3, 4, 5)
    )
    return note + benchmark_svg(queries) + table


def _findings_html(a: dict[str, Any]) -> str:
    rows = [[_span(f"sev-{f['severity']}", f["severity"]), _e(f["message"]), _e(f["fix"])] for f in a["findings"]]
    return _html_table(["severity", "finding", "fix"], rows)


def _plan_html(plan: dict[str, Any]) -> str:
    rows = [
        [_e(d["kind"]), f"<code>{_e(d['name'])}</code>", _span(f"act-{d['action']}", d["action"]), _e(d["reason"])]
        for d in plan["decisions"]
    ]
    return _html_table(["kind", "object", "action", "reason"], rows)


def _audit_html(records: list[dict[str, Any]]) -> str:
    rows = [[_e(r["seq"]), _e(r["time"]), _e(r["event"]), _span("mono", _compact(r.get("data")))] for r in records]
    return _html_table(["seq", "time", "event", "data"], rows, (0,))


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
    parts.append(_cards(state, data))
    parts.append(_section("Timeline", timeline_svg(state)))
    if sizes := table_sizes(data):
        legend = '<p class="muted">Blue: tables copied and verified; grey: internal tables (rebuilt, not copied).</p>'
        parts.append(_section("Size by table", legend + sizes_svg(sizes)))
    if v := data.get("verification"):
        parts.append(_section("Verification: snapshot / target / sql.js per table", _verification_html(v)))
        named: list[tuple[str, str | None]] = [("Search parity", "search"), ("Query parity", "query")]
        named.append(("Other checks", None))
        parts += [_section(title, _checks_html(c)) for title, kind in named if (c := _checks(data, kind))]
    if bench := benchmark(state):
        parts.append(_section("Benchmark: p50 / p95 before and after (ms, in sql.js)", _benchmark_html(bench)))
    if a := data.get("assessment"):
        parts.append(_section(f"Findings (risk {a['level']})", _findings_html(a)))
    if backups(state, data):
        parts.append(_section("Backups", _backups_html(state, data)))
    if plan := data.get("plan"):
        parts.append(_section(f"Conversion ({plan['profile']})", _plan_html(plan)))
    if data.get("audit"):
        parts.append(_section("Audit events", _audit_html(data["audit"])))
    footer = f'<p class="meta">written by failback {_e(__version__)}; the same data is in report.json</p>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>failback run {_e(state.id)}: {_e(state.status)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}{footer}</main></body></html>\n"
    )


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(", ", ": "), ensure_ascii=False, default=str) if v else ""


RENDERERS: dict[str, Callable[[RunState, dict[str, Any]], str]] = {
    "md": render_markdown,
    "html": render_html,
    "json": render_json,
}


def write_reports(rd: RunDir, state: RunState, data: dict[str, Any]) -> list[Path]:
    """Write report.json, report.md and report.html into the run directory."""
    paths = []
    for fmt, render in RENDERERS.items():
        path = rd.file(f"report.{fmt}")
        write_text(path, render(state, data))
        paths.append(path)
    return paths
