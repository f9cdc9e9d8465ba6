"""What the runs in the state folder still need from the backups — the facts ``retention.must_keep`` decides from.

Reads each run's ``state.json`` (its status and the backups its backup step made) and its
``verification-debt.json`` (the backup an unpaid debt is paid from). A run that cannot be read stops the caller:
nothing may be deleted on a guess about what it needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import BackupError
from ..journal import DEBT, RunDir, list_runs
from .retention import RunNeeds


def read_debt(rd: RunDir) -> dict[str, Any] | None:
    """The run's debt record, or None when it has none."""
    try:
        data = json.loads(rd.file(DEBT).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def debt_unpaid(debt: dict[str, Any] | None) -> bool:
    """A debt is unpaid until a payment succeeded (a failed payment stays unpaid)."""
    return debt is not None and not (debt.get("paid") or {}).get("ok")


def unpaid(state_dir: Path) -> list[RunDir]:
    """Runs with verification debt not yet paid, newest first."""
    return [rd for rd in list_runs(state_dir) if debt_unpaid(read_debt(rd))]


def run_needs(state_dir: Path) -> list[RunNeeds]:
    """What every run refers to in the backups, newest run first."""
    out = []
    for rd in list_runs(state_dir):
        try:
            state = rd.load()
            made = state.step("backup").result
            debt = read_debt(rd)
            owed = str(debt["backup"]) if debt is not None and debt_unpaid(debt) and debt.get("backup") else None
            used = {role: str(b["id"]) for role, b in made.items() if isinstance(b, dict) and "id" in b}
        except (OSError, ValueError, TypeError, KeyError, StopIteration) as err:
            raise BackupError(
                f"cannot read run {rd.path} ({err}); refusing to prune what it may still need",
                "inspect or remove that run directory, then run prune again",
            ) from None
        out.append(RunNeeds(rd.id, state.status, used, owed))
    return out
