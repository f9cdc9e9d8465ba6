"""What each step of a run did, in one line, from the JSON result its ``on_step`` listener receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..verify import tables_summary


def step_line(name: str, r: dict[str, Any]) -> str:
    """One line for step ``name``'s JSON result ``r`` (a step without a line of its own: the files it wrote)."""
    if name == "snapshot":
        return f"{r['bytes'] / 1e6:.1f} MB, {r['pages']} pages, {r['restarts']} restart(s)"
    if name == "backup":
        s = r["source"]
        ok = sum(x["ok"] for x in s["layers"])
        return f"{s['id']} → {ok}/{len(s['layers'])} layer(s) verified, sha256 {s['sha256']['compressed'][:16]}…"
    if name == "assess":
        repaired = (r.get("source_integrity") or {}).get("repaired")
        return f"risk {r['level']} ({len(r['findings'])} findings)" + (
            f"; FTS index of {', '.join(repaired)} repaired (--repair-fts)" if repaired else ""
        )
    if name == "convert":
        line = f"{r['bytes'] / 1e6:.1f} MB built in {r['seconds'].get('total', 0):.2f} s ({r['decisions']} decisions)"
        if "carry_over" in r:
            carried = sum(d["action"] == "carry" for d in r["down"])
            line += f"; at the old app's schema, {carried} carried into {Path(r['carry_over']).name}"
        return line
    if name == "verify":
        checks = sum(c["ok"] for c in r["checks"])
        return f"{tables_summary(r['tables'], 'in snapshot/target/sql.js')}, {checks}/{len(r['checks'])} checks passed"
    if name == "postcheck":
        if "skipped" in r:
            return str(r["skipped"])
        slow = [q for q in r["queries"] if not q["ok"]]
        base = "against the baseline" if r["baseline"] else "(no baseline recorded: `failback baseline record`)"
        return f"{len(r['queries'])} queries timed in sql.js {base}" + (
            f"; {len(slow)} slower than allowed" if slow else ""
        )
    if name == "switch":
        return f"{r['config']}: {r['from']} → {r['to']}"
    return ", ".join(Path(f).name for f in r.get("files", []))
