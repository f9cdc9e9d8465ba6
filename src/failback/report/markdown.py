"""The Markdown report: what a person reads."""

from __future__ import annotations

import json
from typing import Any

from ..db.integrity import repair_note
from ..journal import RunState
from ..verify import table_status
from .data import _checks, _ms, _rows, backups, benchmark, down_decisions, elapsed, source_repair

# -- the tables (plain text; Markdown and HTML render the same rows) ---------------------------------
Table = tuple[list[str], list[list[str]]]


def _yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def findings_table(a: dict[str, Any]) -> Table:
    return ["severity", "finding", "fix"], [[f["severity"], f["message"], f["fix"]] for f in a["findings"]]


def layers_table(b: dict[str, Any]) -> Table:
    return ["layer", "verified", "error"], [[x["folder"], _yes_no(x["ok"]), x["error"]] for x in b.get("layers", [])]


def hashes_table(b: dict[str, Any]) -> Table:
    """SHA-256 and size of the stored data (none when no layer could store it)."""
    sha, size = b.get("sha256") or {}, b.get("bytes") or {}
    return ["kind", "sha256", "bytes"], [[k, sha[k], f"{size[k]:,}"] for k in ("raw", "compressed") if k in sha]


def plan_table(plan: dict[str, Any]) -> Table:
    return ["kind", "object", "action", "reason"], [
        [d["kind"], d["name"], d["action"], d["reason"]] for d in plan["decisions"]
    ]


def matrix_table(v: dict[str, Any]) -> Table:
    """The verification matrix: rows · digest per table in snapshot, target and sql.js; a table that was not
    compared says why (dropped by the plan, or unreadable in the source too)."""
    cell = {"equal": "yes", "differs": "NO"}
    return ["table", "snapshot", "target", "sql.js", "equal"], [
        [
            t["table"],
            _rows(t["snapshot"]),
            _rows(t["target"]),
            _rows(t["sqljs"]),
            cell.get(table_status(t)) or f"{table_status(t)}: {t.get('detail', '')}",
        ]
        for t in v["tables"]
    ]


def checks_table(checks: list[dict[str, Any]]) -> Table:
    return ["check", "name", "ok", "detail"], [[c["kind"], c["name"], _yes_no(c["ok"]), c["detail"]] for c in checks]


def benchmark_table(queries: list[dict[str, Any]]) -> Table:
    header = ["query", "p50 before", "p50 after", "p95 before", "p95 after", "p95 ratio", "ok"]
    return header, [
        [
            q["sql"],
            _ms(q.get("before_p50_ms")),
            _ms(q["p50_ms"]),
            _ms(q.get("before_p95_ms")),
            _ms(q["p95_ms"]),
            "—" if q.get("ratio") is None else f"{q['ratio']:.2f}",
            " ".join(filter(None, [_yes_no(q["ok"]), q.get("error")])),
        ]
        for q in queries
    ]


def audit_table(records: list[dict[str, Any]]) -> Table:
    return ["seq", "time", "event", "data"], [
        [str(r["seq"]), r["time"], r["event"], _compact(r.get("data"))] for r in records
    ]


def steps_table(state: RunState) -> Table:
    return ["step", "status", "seconds"], [
        [s.name, s.status, "" if s.seconds is None else f"{s.seconds:.2f}"] for s in state.steps
    ]


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(", ", ": "), ensure_ascii=False, default=str) if v else ""


CHECK_GROUPS: list[tuple[str, str | None]] = [
    ("Search parity", "search"),
    ("Query parity", "query"),
    ("Other checks", None),
]


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (pipes and newlines in cells escaped), then a blank line."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return [*out, ""]


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
    lines += ["", "## Steps", "", *md_table(*steps_table(state))]
    if repaired := source_repair(state):
        lines += ["## Source repaired", "", f"- {repair_note(repaired)}", ""]
    if a := data.get("assessment"):
        lines += [f"## Risk: {a['level']}", "", *md_table(*findings_table(a))]
    for role, b in backups(state, data):
        lines += [f"## Backup of the {role.replace('_', ' ')}: `{b['id']}`", ""]
        lines += [*md_table(*hashes_table(b)), *md_table(*layers_table(b))]
    if plan := data.get("plan"):
        lines += ["## Conversion", "", *md_table(*plan_table(plan))]
    if down := down_decisions(state):
        lines += ["## Down-conversion to the old app's schema", "", *md_table(*plan_table(down))]
    if v := data.get("verification"):
        lines += [f"## Verification ({v['level']}): {'passed' if v['ok'] else 'FAILED'}", ""]
        lines += [
            f"- integrity: {v['integrity']}; foreign key violations: {v['foreign_keys']}; sql.js {v['sqljs_version']}",
            "",
            *md_table(*matrix_table(v)),
        ]
        for title, kind in CHECK_GROUPS:
            if checks := _checks(data, kind):
                lines += [f"### {title}", "", *md_table(*checks_table(checks))]
        lines += [f"- problem: {p}" for p in v.get("problems") or []]
        if v.get("deferred"):
            lines += [f"Deferred (verification debt): {', '.join(v['deferred'])}", ""]
    if bench := benchmark(state):
        lines += ["## Benchmark (ms, sql.js)", "", *md_table(*benchmark_table(bench))]
    if data.get("audit"):
        lines += ["## Audit events", "", *md_table(*audit_table(data["audit"]))]
    if head := data.get("audit_head"):
        lines.append(f"Audit head when this report was written: record {head['seq']}, sha256 `{head['hash']}`")
    return "\n".join(lines) + "\n"
