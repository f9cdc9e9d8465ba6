"""The fleet report, from the journal: outcome counts per wave, a histogram of per-tenant seconds, the failed
tenants with their one-line errors and the command to run next; as JSON, Markdown or one self-contained HTML page."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any

from .journal import FleetState

BUCKETS = 10  # histogram bars


def next_step(state: FleetState) -> str:
    """What the operator does next, given where the fleet stands."""
    if state.status == "done":
        bad = sum(e.state in ("refused", "failed") for e in state.tenants.values())
        if bad:
            return f"done; {bad} tenant(s) not switched: fix each (its command is in `failback fleet report`)"
        return "done: every tenant switched"
    if state.status == "halted":
        return (
            f"read `failback fleet report`, fix what failed; to go on anyway: `failback fleet approve --wave "
            f"{state.wave + 1}` then `failback fleet resume`"
        )
    if state.status == "awaiting-approval":
        return f"`failback fleet approve --wave {state.wave + 1}`, then `failback fleet resume` if no run is waiting"
    return "`failback fleet resume` finishes the fleet (switched tenants are not run again)"


def tenant_command(entry: Any) -> str:
    """The command that looks into one failed tenant."""
    if entry.state == "lost":
        return "`failback fleet resume`"
    return f"`failback status -c {entry.config}`"


def histogram(seconds: list[float]) -> list[dict[str, float | int]]:
    """Per-tenant durations in ``BUCKETS`` equal bins from 0 to the longest."""
    if not seconds:
        return []
    width = max(seconds) / BUCKETS or 1.0
    counts = [0] * BUCKETS
    for s in seconds:
        counts[min(BUCKETS - 1, int(s / width))] += 1
    return [{"from": round(i * width, 3), "to": round((i + 1) * width, 3), "tenants": n} for i, n in enumerate(counts)]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def fleet_summary(state: FleetState) -> dict[str, Any]:
    """The report's data (also `fleet status --json`)."""
    seconds = [e.seconds for e in state.tenants.values() if e.seconds is not None and e.state == "switched"]
    return {
        "manifest": state.manifest,
        "created": state.created,
        "status": state.status,
        "reason": state.reason,
        "next": next_step(state),
        "waves": [{"wave": n + 1, "tenants": len(ids), "counts": state.counts(n)} for n, ids in enumerate(state.waves)],
        "counts": state.counts(),
        "seconds": {"p50": percentile(seconds, 0.5), "p95": percentile(seconds, 0.95), "histogram": histogram(seconds)},
        "failed": [
            {
                "tenant": t,
                "state": e.state,
                "exit_code": e.exit_code,
                "error": e.error,
                "run": e.run,
                "next": tenant_command(e),
            }
            for t, e in state.tenants.items()
            if e.state in ("refused", "failed", "lost")
        ],
    }


def render_json(state: FleetState) -> str:
    return json.dumps(fleet_summary(state), indent=2) + "\n"


def render_markdown(state: FleetState) -> str:
    s = fleet_summary(state)
    lines = [f"# Fleet rollback: {s['status']}", "", f"Manifest `{s['manifest']}`, started {s['created']}.", ""]
    if s["reason"]:
        lines += [f"**{s['reason']}**", ""]
    lines += [
        "| wave | tenants | switched | refused | failed | lost | to run |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in s["waves"]:
        c = w["counts"]
        cells = [
            w["wave"],
            w["tenants"],
            c["switched"],
            c["refused"],
            c["failed"],
            c["lost"],
            c["pending"] + c["dispatched"],
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    sec = s["seconds"]
    if sec["p50"] is not None:
        lines += ["", f"Per switched tenant: p50 {sec['p50']:.3f} s, p95 {sec['p95']:.3f} s.", ""]
        lines += ["| seconds | tenants |", "|---|---:|"]
        lines += [f"| {b['from']:.3f}–{b['to']:.3f} | {b['tenants']} |" for b in sec["histogram"]]
    if s["failed"]:
        lines += [
            "",
            "## Tenants not switched",
            "",
            "| tenant | state | exit | error | next |",
            "|---|---|---:|---|---|",
        ]
        for f in s["failed"]:
            error = f["error"].replace("|", "\\|")
            lines.append(f"| {f['tenant']} | {f['state']} | {f['exit_code']} | {error} | {f['next']} |")
    lines += ["", f"Next: {s['next']}", ""]
    return "\n".join(lines)


def _headers(*names: str) -> str:
    return "".join(f"<th>{n}</th>" for n in names)


def render_html(state: FleetState) -> str:
    s = fleet_summary(state)
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{v}</td>"
            for v in (w["wave"], w["tenants"], *(w["counts"][k] for k in ("switched", "refused", "failed", "lost")))
        )
        + "</tr>"
        for w in s["waves"]
    )
    top = max((b["tenants"] for b in s["seconds"]["histogram"]), default=1) or 1
    bars = "".join(
        f'<div class="bar"><span>{b["from"]:.2f}–{b["to"]:.2f} s</span>'
        f'<i style="width:{100 * b["tenants"] / top:.0f}%"></i><b>{b["tenants"]}</b></div>'
        for b in s["seconds"]["histogram"]
    )
    failed = "".join(
        f'<tr class="failed"><td>{e(f["tenant"])}</td><td>{e(f["state"])}</td><td>{f["exit_code"]}</td>'
        f"<td>{e(f['error'])}</td><td><code>{e(f['next'])}</code></td></tr>"
        for f in s["failed"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fleet rollback: {e(s["status"])}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:2px 8px}}.bar{{display:flex;gap:8px;align-items:center}}.bar span{{width:9em}}.bar i{{background:#4a8;
height:12px;display:block}}.failed td{{color:#a22}}</style></head><body>
<h1 id="status">Fleet rollback: {e(s["status"])}</h1><p>{e(s["reason"])}</p>
<table id="waves"><tr>{_headers("wave", "tenants", "switched", "refused", "failed", "lost")}</tr>{rows}</table>
<h2>Seconds per switched tenant</h2><div id="histogram">{bars}</div>
<h2>Tenants not switched</h2>
<table id="failed"><tr>{_headers("tenant", "state", "exit", "error", "next")}</tr>{failed}</table>
<p id="next">Next: {e(s["next"])}</p></body></html>
"""


RENDERERS: dict[str, Callable[[FleetState], str]] = {"json": render_json, "md": render_markdown, "html": render_html}
