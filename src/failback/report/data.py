"""Report data: what a run's state and its files say, shared by every rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..audit import AuditHead, AuditLog
from ..journal import RunDir, RunState, StepState, list_runs, plain
from ..plan.model import load_plan

SECTIONS = ("plan", "assessment", "backup", "verification", "audit", "audit_head")


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


def audit_anchors(state_dir: Path) -> list[tuple[str, AuditHead]]:
    """The audit head each run's report.json copied when it was written, named by run: older views of the chain
    that a truncated or rewritten log (and head) must still agree with."""
    anchors = []
    for rd in list_runs(state_dir):
        try:
            head = AuditHead.parse(json.loads(rd.file("report.json").read_bytes()).get("audit_head"))
        except (OSError, ValueError, AttributeError):
            continue
        if head is not None:
            anchors.append((f"the report of run {rd.id}", head))
    return anchors


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


def down_decisions(state: RunState) -> dict[str, Any] | None:
    """The down-conversion's decisions (convert.schema = "previous"), as a plan's, or None for another run."""
    down = state.step("convert").result.get("down")
    return {"decisions": down} if down else None


def backups(state: RunState, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, backup) for every backup the run made: the source, the target it replaced and a carry-over."""
    found = [(role, b) for role, b in state.step("backup").result.items() if isinstance(b, dict) and "id" in b]
    return found or ([("source", data["backup"])] if data.get("backup") else [])


def source_repair(state: RunState) -> dict[str, Any] | None:
    """The source integrity check of the run, when the conversion repaired FTS indexes (``--repair-fts``)."""
    integrity = state.step("assess").result.get("source_integrity") or {}
    return integrity if integrity.get("repaired") else None


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
    """Everything: the run's state and the report data, as one compact JSON document (the C encoder: indenting
    takes the pure-Python one, ~10 ms a run; report.md and report.html are the ones a person reads)."""
    return json.dumps({"run": state.to_json(), **data}, separators=(",", ":"), default=plain) + "\n"


PAUSE = 1.0  # seconds between steps beyond which the timeline cuts the pause out


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
