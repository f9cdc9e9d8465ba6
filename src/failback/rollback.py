"""The orchestrator: snapshot → backup → assess → convert → verify → switch → report.

Each step is a method that returns a JSON-able result; ``run`` records it in the run directory (checkpoint)
and in the audit log. Work happens on the snapshot, never on the live source. The switch happens only after
verification passed and only if the source is unchanged since the snapshot.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .assess import Assessment, gate, run_assessment
from .audit import AuditLog
from .backup import BackupResult, Snapshot, create_backup, take_snapshot
from .benchmark import compare, load_baseline, time_in_engine
from .config import Config
from .convert import Plan, apply_proofs, plan_conversion
from .digest import TableDigest
from .engines import Engine
from .engines.sqljs import SqlJsEngine
from .errors import BackupError, FailbackError, Interrupted, RiskRefused, SourceChanged, VerificationFailed
from .export import build_target, prove_schema
from .files import file_xxh3, fsync_dir, remove_quietly, write_text
from .journal import DEBT, RunDir, RunLock, RunState
from .profiles import load_profile
from .report import write_reports
from .schema import Schema, read_schema
from .sqlite import connect
from .switch import current_provider, switch_provider
from .verify import VerifyReport, verify_target

Progress = Callable[[str, int, int], None]


@dataclass
class Options:
    mode: str = "standard"  # standard or emergency
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    reason: str = ""
    break_lock: bool = False


@dataclass
class Outcome:
    """What a run did: its directory, final state and the step results."""

    run_id: str
    run_dir: Path
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    error: FailbackError | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code


class Rollback:
    """One rollback run over a loaded config."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        options: Options | None = None,
        progress: Progress | None = None,
        on_step: Callable[[str, str, dict[str, Any]], None] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.cfg, self.opts = cfg, options or Options()
        self.config_path = config_path
        self.progress: Progress = progress or (lambda *_: None)
        self.on_step = on_step or (lambda *_: None)
        self.engine = engine or SqlJsEngine()
        self.audit = AuditLog(cfg.state_path / "audit.jsonl")
        self.snapshot: Snapshot | None = None
        self.schema: Schema | None = None
        self.plan: Plan | None = None
        self.backup: BackupResult | None = None
        self.assessment: Assessment | None = None
        self.verification: VerifyReport | None = None
        self.tmp_target: Path | None = None

    @property
    def emergency(self) -> bool:
        return self.opts.mode == "emergency"

    # -- driver ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Run every step; a FailbackError ends the run with its exit code and leaves the app as it was."""
        rd, state = RunDir.create(self.cfg.state_path, self.config_path, self.opts.mode)
        self.rd, self.state = rd, state
        lock = RunLock(self.cfg.state_path)
        outcome = Outcome(rd.id, rd.path, "running")
        try:
            lock.acquire(rd.id, self.opts.break_lock)
        except FailbackError as err:
            return self._finish(outcome, "refused", err)
        self.audit.append(
            "run.start", {"mode": self.opts.mode, "dry_run": self.opts.dry_run, "tool": __version__}, rd.id
        )
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("snapshot", self.step_snapshot),
            ("backup", self.step_backup),
            ("assess", self.step_assess),
            ("convert", self.step_convert),
            ("verify", self.step_verify),
            ("switch", self.step_switch),
            ("postcheck", self.step_postcheck),
        ]
        try:
            for name, fn in steps:
                if self.opts.dry_run and name not in ("snapshot", "assess"):
                    self._set(name, "skipped")
                    continue
                outcome.results[name] = self._step(name, fn)
            status = "dry-run" if self.opts.dry_run else "done"
            return self._finish(outcome, status, None)
        except KeyboardInterrupt:
            return self._finish(outcome, "interrupted", Interrupted("interrupted by the user; nothing was switched"))
        except FailbackError as err:
            status = {1: "failed", 3: "refused", 4: "interrupted", 5: "source-changed"}.get(err.exit_code, "failed")
            return self._finish(outcome, status, err)
        finally:
            self._cleanup()
            if self.snapshot is not None:
                self.snapshot.guard.close()
            lock.release()

    def _step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        st = self.state.step(name)
        st.status, st.started = "running", time.time()
        self.rd.save(self.state)
        self.on_step(name, "start", {})
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException as err:
            st.status, st.seconds, st.error = "failed", time.perf_counter() - t0, str(err)
            self.rd.save(self.state)
            self.audit.append(f"step.{name}.failed", {"error": str(err)}, self.rd.id)
            self.on_step(name, "failed", {"error": str(err)})
            raise
        st.status, st.seconds, st.result = "done", time.perf_counter() - t0, result
        self.rd.save(self.state)
        self.audit.append(f"step.{name}.done", {"seconds": round(st.seconds, 3), **_summary(result)}, self.rd.id)
        self.on_step(name, "done", result)
        return result

    def _set(self, name: str, status: str) -> None:
        self.state.step(name).status = status
        self.rd.save(self.state)

    def _finish(self, outcome: Outcome, status: str, err: FailbackError | None) -> Outcome:
        outcome.status, outcome.error = status, err
        self.state.status, self.state.exit_code = status, outcome.exit_code
        self.state.error = str(err) if err else ""
        self.audit.append(
            "run.end",
            {"status": status, "exit_code": outcome.exit_code, "error": self.state.error},
            self.rd.id,
        )
        report = self.state.step("report")  # written whatever the outcome, after the final status is known
        report.status, t0 = "done", time.perf_counter()
        files = write_reports(self.rd, self.state, self._report_data())
        report.seconds = time.perf_counter() - t0
        report.result = outcome.results["report"] = {"files": [str(p) for p in files]}
        self.rd.save(self.state)
        return outcome

    def _cleanup(self) -> None:
        if self.tmp_target is not None:
            remove_quietly(self.tmp_target, Path(str(self.tmp_target) + "-journal"))
        if self.snapshot is not None and (self.opts.dry_run or self.state.status == "done"):
            remove_quietly(self.snapshot.path)

    # -- steps ----------------------------------------------------------------------------------
    def step_snapshot(self) -> dict[str, Any]:
        self.preflight()
        self.snapshot = take_snapshot(self.cfg.source_path, self.rd.file("snapshot.sqlite"), self.progress)
        conn = connect(self.snapshot.path, readonly=True)
        try:
            self.schema = read_schema(conn)
        finally:
            conn.close()
        self.plan = plan_conversion(self.schema, load_profile(self.cfg.target.profile), self.cfg.convert)
        write_text(self.rd.file("plan.json"), json.dumps(self.plan.dump(), indent=2) + "\n")
        return {
            "pages": self.snapshot.pages,
            "page_size": self.snapshot.page_size,
            "bytes": self.snapshot.path.stat().st_size,
            "restarts": self.snapshot.restarts,
            "guard": self.snapshot.guard.to_json(),
        }

    def preflight(self) -> None:
        """Refuse a second rollback: once the app is on sql.js, replacing its database would lose what it wrote."""
        app = self.cfg.app
        current = current_provider(self.cfg.app_config_path, app.key)
        if current != app.native_value and not self.opts.dry_run and not (self.opts.force and self.opts.reason):
            raise RiskRefused(
                f"{self.cfg.app_config_path.name} has {app.key}={current!r}, not {app.native_value!r}: the app is "
                "not on the native provider, and a rollback now would replace the database it writes to",
                "check `failback status`; switch the app back to native first, or pass --force --reason '…'",
            )

    def step_backup(self) -> dict[str, Any]:
        assert self.snapshot is not None
        layers = self.cfg.backup_layers[:1] if self.emergency else self.cfg.backup_layers
        need = 1 if self.emergency else self.cfg.backup.min_layers
        kw = {
            "level": 1 if self.emergency else self.cfg.backup.zstd_level,
            "threads": self.cfg.backup.threads,
            "progress": self.progress,
        }
        self.backup = create_backup(self.snapshot.path, layers, label="source", source=self.cfg.source_path, **kw)  # type: ignore[arg-type]
        if self.backup.verified_layers < need:
            failed = "; ".join(x.error for x in self.backup.layers if not x.ok)
            raise BackupError(
                f"only {self.backup.verified_layers} of {need} required backup layer(s) verified: {failed}"
            )
        out: dict[str, Any] = {"source": self.backup.to_json()}
        target = self.cfg.target_path
        if target.exists():  # the file about to be replaced is backed up too
            prev = create_backup(target, layers, label="previous-target", source=target, **kw)  # type: ignore[arg-type]
            if prev.verified_layers < need:
                raise BackupError(f"the current target {target} could not be backed up to {need} layer(s)")
            out["previous_target"] = prev.to_json()
        return out

    def step_assess(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.schema is not None and self.plan is not None
        self.assessment = run_assessment(
            self.cfg, self.snapshot.path, self.schema, self.plan, emergency=self.emergency, dry_run=self.opts.dry_run
        )
        result = {**self.assessment.to_json(), "plan": self.plan.to_json()}
        if not self.opts.dry_run:
            gate(self.assessment, yes=self.opts.yes, force=self.opts.force, reason=self.opts.reason)
            if self.opts.force and self.opts.reason:
                self.audit.append(
                    "gate.override", {"level": self.assessment.level, "reason": self.opts.reason}, self.rd.id
                )
        return result

    def step_convert(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.plan is not None
        target = self.cfg.target_path
        self.plan = apply_proofs(self.plan, prove_schema(self.plan, self.engine), self.cfg.convert)
        write_text(self.rd.file("plan.json"), json.dumps(self.plan.dump(), indent=2) + "\n")
        self.tmp_target = target.with_name(f".{target.name}.failback-{self.rd.id}")
        built = build_target(self.snapshot.path, self.tmp_target, self.plan, self.progress)
        return {"bytes": built.bytes, "seconds": built.seconds, "decisions": len(self.plan.decisions)}

    def step_verify(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.plan is not None and self.tmp_target is not None
        digests: dict[str, TableDigest] | None = self.backup.digests if self.backup else None
        v = self.cfg.verify
        self.verification = verify_target(
            self.tmp_target,
            self.plan,
            self.engine,
            snapshot=self.snapshot.path,
            snapshot_digests_=None if self.emergency else digests,
            level="quick" if self.emergency else "standard",
            fts_queries=v.fts_queries,
            sample_terms=v.sample_terms,
            queries=v.queries,
        )
        result = self.verification.to_json()
        if not self.verification.ok:
            raise VerificationFailed(f"verification failed: {self.verification.problems[0]}")
        if self.verification.deferred:  # emergency: what was skipped is recorded, to be paid by `verify --debt`
            debt = {
                "run": self.rd.id,
                "deferred": self.verification.deferred,
                "backup": self.backup.id if self.backup else None,
                "target": str(self.cfg.target_path),
                "target_xxh3": file_xxh3(self.tmp_target),
                "paid": None,
            }
            write_text(self.rd.file(DEBT), json.dumps(debt, indent=2) + "\n")
            self.audit.append("verify.debt", {"deferred": debt["deferred"]}, self.rd.id)
        return result

    def step_postcheck(self) -> dict[str, Any]:
        """The app's hot queries on the new target vs the recorded baseline (a regression is reported, not
        undone: the data is already proven)."""
        baseline = load_baseline(self.cfg.state_path)
        queries = self.cfg.benchmark.queries
        if not queries:
            return {"skipped": "no [benchmark] queries configured"}
        now = time_in_engine(self.engine, self.cfg.target_path, queries, self.cfg.benchmark.runs)
        rows = compare(baseline or {}, now, self.cfg.benchmark.max_regression)
        regressions = [r for r in rows if not r["ok"]]
        if regressions:
            self.audit.append("postcheck.regression", {"queries": [r["sql"] for r in regressions]}, self.rd.id)
        return {"baseline": bool(baseline), "queries": rows, "ok": not regressions}

    def step_switch(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.tmp_target is not None
        why = self.snapshot.guard.changed()
        if why:
            raise SourceChanged(f"source changed after the snapshot ({why}); nothing was switched")
        target = self.cfg.target_path
        kept = None
        if target.exists():  # keep the old target's inode in the run directory (roll forward / inspection)
            kept = self.rd.file("previous-target.sqlite")
            try:
                os.link(target, kept)
            except OSError:
                from .files import copy_file

                copy_file(target, kept)
        os.replace(self.tmp_target, target)
        fsync_dir(target.parent)
        self.tmp_target = None
        self.audit.append(
            "switch.target", {"target": str(target), "previous_kept": str(kept) if kept else None}, self.rd.id
        )
        old, new = switch_provider(
            self.cfg.app_config_path,
            self.cfg.app.key,
            self.cfg.app.rollback_value,
            self.rd.file("app-config.before"),
        )
        self.audit.append(
            "switch.config",
            {"config": str(self.cfg.app_config_path), "key": self.cfg.app.key, "from": old, "to": new},
            self.rd.id,
        )
        return {"target": str(target), "config": str(self.cfg.app_config_path), "from": old, "to": new}

    def _report_data(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json() if self.plan else None,
            "assessment": self.assessment.to_json() if self.assessment else None,
            "backup": self.backup.to_json() if self.backup else None,
            "verification": self.verification.to_json() if self.verification else None,
            "audit": self.audit.records(self.rd.id),
        }


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The small part of a step's result that goes into the audit log."""
    keys = ("bytes", "pages", "restarts", "level", "go", "ok", "from", "to", "target")
    out = {k: result[k] for k in keys if k in result}
    if "source" in result and isinstance(result["source"], dict):
        out["backup"] = result["source"].get("id")
        out["sha256"] = result["source"].get("sha256")
    return out


__all__ = ["Options", "Outcome", "Rollback", "RunState"]
