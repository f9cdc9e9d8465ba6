"""Verification debt: what an emergency rollback skipped, and paying it later.

An emergency run writes ``verification-debt.json`` in its run directory (deferred checks, the backup of the
snapshot, the XXH3 of the target it switched to). ``pay_debt`` restores that backup, takes the target as
switched — or, if the app has written to it since, rebuilds it from the backup with the saved plan and checks
it is byte-identical to what was switched — then runs the full standard verification and records the result
in the debt file and the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..autorollback.notify import audit_log
from ..backup.keep import read_debt, unpaid
from ..backup.sets import restore_backup
from ..config import Config
from ..engines import Engine
from ..errors import InputError
from ..files import file_xxh3, write_text
from ..guard import PAYING, remove_stale_folders, temp_folder
from ..journal import DEBT, RunDir, find_run
from ..plan.model import load_plan
from ..verify import VerifyReport
from .export import build_target, verify_conversion


@dataclass(frozen=True)
class DebtPayment:
    """A paid verification debt: the run, the full verification's report, and which target it verified."""

    run: str
    report: VerifyReport
    target: str  # "as switched" or "rebuilt from the backup (…)"

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "target": self.target, "verification": self.report.to_json()}


def record_debt(rd: RunDir, debt: dict[str, Any], audit: AuditLog) -> None:
    """Record what a run's emergency verification deferred: once. A verification run again on the same bytes
    (a resume) owes the same debt, already in the file and the audit log."""
    text = json.dumps(debt, indent=2) + "\n"
    if read_debt(rd) == json.loads(text):
        return
    write_text(rd.file(DEBT), text)
    audit.append("verify.debt", {"deferred": debt["deferred"]}, rd.id)


def pay_debt(cfg: Config, engine: Engine, run: str | None = None) -> DebtPayment:
    """Run the deferred verification of ``run`` (default: the newest unpaid one) and record the outcome."""
    runs = unpaid(cfg.state_path) if run is None else [find_run(cfg.state_path, run)]
    if not runs or read_debt(runs[0]) is None:
        raise InputError(f"no unpaid verification debt{' for run ' + run if run else ''}", "see `failback status`")
    rd = runs[0]
    debt = read_debt(rd) or {}
    plan = load_plan(json.loads(rd.file("plan.json").read_text(encoding="utf-8")))
    remove_stale_folders(cfg.state_path, PAYING)  # a payment killed midway left its restored snapshot
    with temp_folder(cfg.state_path, PAYING) as work:
        snapshot = restore_backup(cfg.backup_layers, str(debt["backup"]), work / "snapshot.sqlite").path
        target = Path(debt["target"])
        how = "as switched"
        if not target.exists() or file_xxh3(target) != debt["target_xxh3"]:
            target = work / "rebuilt.sqlite"
            build_target(snapshot, target, plan)
            same = file_xxh3(target) == debt["target_xxh3"]
            how = (
                "rebuilt from the backup ("
                + ("byte-identical to" if same else "DIFFERENT from")
                + " the switched file)"
            )
        engine = engine.with_stand_ins(plan.stand_ins)
        report = verify_conversion(target, plan, engine, snapshot, cfg.verify, repaired=debt.get("repaired", []))
        if how.endswith("DIFFERENT from the switched file)"):
            report.problems.append("the rebuilt target differs from the file that was switched to")
    debt["paid"] = {"ok": report.ok, "target": how, "problems": report.problems, "tables": len(report.tables)}
    write_text(rd.file(DEBT), json.dumps(debt, indent=2) + "\n")
    audit_log(cfg).append(
        "verify.debt.paid" if report.ok else "verify.debt.failed",
        {"target": how, "problems": report.problems[:5], "checks": len(report.checks)},
        rd.id,
    )
    return DebtPayment(rd.id, report, how)
