"""Proofs: the target engine's verdict on each created object, applied to the plan."""

from __future__ import annotations

import re
from dataclasses import replace

from ..config import ConvertConfig
from ..db import sqltext
from .model import Action, Decision, Plan


def apply_proofs(
    plan: Plan,
    failures: dict[str, str],
    options: ConvertConfig | None = None,
    source_failures: dict[str, str] | None = None,
) -> Plan:
    """Objects that did not prepare in the target engine: views and triggers dropped when ``allow_drop`` names
    them, refused (the run stops) otherwise. ``failures`` maps an object name to the engine's error;
    ``source_failures`` the same objects' errors in the source engine on the source: an object that fails the same
    way there is broken in the source itself, and is kept as it is, faithfully, with a warning (its proof
    leaves the plan: it cannot pass in any engine)."""
    in_source = source_failures or {}
    faithful = {n: e for n, e in failures.items() if n in in_source and _message(in_source[n]) == _message(e)}
    failures = {n: e for n, e in failures.items() if n not in faithful}
    allowed = {n.lower() for n in (options or ConvertConfig()).allow_drop}
    failed = {p.name for p in plan.proofs if p.name in failures}
    proved = {p.name for p in plan.proofs} - failed
    decisions = []
    kinds = {p.kind for p in plan.proofs}
    for d in plan.decisions:
        if d.name in proved and d.kind in kinds and d.action is Action.KEEP:
            note = d.reason.removesuffix("; to be proved in the target") + "; " if d.severity != "info" else ""
            d = Decision(d.kind, d.name, d.action, f"{note}prepares in {plan.profile}", d.severity)
        if d.name in faithful and d.kind in ("view", "trigger"):
            d = Decision(
                d.kind,
                d.name,
                Action.KEEP,
                f"fails the same way in the source ({faithful[d.name]}): broken in the source itself, kept as it "
                "is; the old app meets it as the native app did",
                "warn",
            )
        if d.name in failed and d.kind in kinds:
            reason = f"does not prepare in {plan.profile}: {failures[d.name]}"
            if d.name.lower() in allowed and d.kind in ("view", "trigger"):
                d = Decision(d.kind, d.name, Action.DROP, f"{reason}; dropped (allowed by convert.allow_drop)", "high")
            else:
                d = Decision(
                    d.kind, d.name, Action.REFUSE, f"{reason}; add it to convert.allow_drop to drop it", "high"
                )
        decisions.append(d)
    gone = {d.name for d in decisions if d.action is Action.DROP and d.name in failed}
    return replace(
        plan,
        decisions=decisions,
        views=[sql for sql in plan.views if created_name(sql) not in gone],
        triggers=[sql for sql in plan.triggers if created_name(sql) not in gone],
        proofs=[p for p in plan.proofs if p.name not in gone and p.name not in faithful],
    )


def _message(error: str) -> str:
    """An engine's message without the exception class apsw puts first (``SQLError: no such column: x``)."""
    return re.sub(r"^[A-Za-z]*Error: ", "", error)


def created_name(sql: str) -> str:
    """The object name of a ``CREATE VIEW/TRIGGER [IF NOT EXISTS] name`` statement."""
    sig = [t for t in sqltext.tokenize(sql) if t.kind not in ("ws", "comment")]
    k = 2
    while k < len(sig) and sig[k].text.upper() in ("IF", "NOT", "EXISTS"):
        k += 1
    name = sig[k]
    if k + 2 < len(sig) and sig[k + 1].text == ".":
        name = sig[k + 2]
    return name.name
