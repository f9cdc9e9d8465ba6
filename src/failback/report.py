"""Run reports: JSON (everything) and Markdown (what a person reads), written into the run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import write_text
from .journal import RunDir, RunState


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
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
        f"- mode: {state.mode}",
    ]
    if state.error:
        lines.append(f"- error: {state.error}")
    lines += ["", "## Steps", ""]
    lines += _md_table(
        ["step", "status", "seconds"],
        [[s.name, s.status, f"{s.seconds:.2f}" if s.seconds is not None else ""] for s in state.steps],
    )
    if data.get("assessment"):
        a = data["assessment"]
        lines += [f"## Risk: {a['level']}", ""]
        lines += _md_table(
            ["severity", "finding", "fix"], [[f["severity"], f["message"], f["fix"]] for f in a["findings"]]
        )
    if data.get("backup"):
        b = data["backup"]
        lines += ["## Backup", "", f"- id `{b['id']}`, sha256 (compressed) `{b['sha256']['compressed']}`", ""]
        lines += _md_table(["layer", "verified", "error"], [[x["folder"], x["ok"], x["error"]] for x in b["layers"]])
    if data.get("plan"):
        lines += ["## Conversion", ""]
        lines += _md_table(
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

        def d(x: dict[str, Any] | None) -> str:
            return "—" if x is None else f"{x['rows']} · {x['digest'][:12]}" if x["digest"] else str(x["rows"])

        lines += _md_table(
            ["table", "snapshot", "target", "sql.js", "equal"],
            [
                [t["table"], d(t["snapshot"]), d(t["target"]), d(t["sqljs"]), "yes" if t["ok"] else "NO"]
                for t in v["tables"]
            ],
        )
        if v["checks"]:
            lines += _md_table(
                ["check", "name", "ok", "detail"],
                [[c["kind"], c["name"], c["ok"], c["detail"]] for c in v["checks"]],
            )
        if v["deferred"]:
            lines += [f"Deferred (verification debt): {', '.join(v['deferred'])}", ""]
    if data.get("audit"):
        lines += ["## Audit events", ""]
        lines += _md_table(["seq", "time", "event"], [[r["seq"], r["time"], r["event"]] for r in data["audit"]])
    return "\n".join(lines) + "\n"


def write_reports(rd: RunDir, state: RunState, data: dict[str, Any]) -> list[Path]:
    """Write report.json and report.md into the run directory."""
    full = {"run": state.to_json(), **data}
    paths = [rd.file("report.json"), rd.file("report.md")]
    write_text(paths[0], json.dumps(full, indent=2, default=str) + "\n")
    write_text(paths[1], render_markdown(state, data))
    return paths
