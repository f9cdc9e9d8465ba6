"""The orchestrator: snapshot → backup → assess → convert → verify → switch → postcheck → report.

Each step is a method returning a JSON-able result; ``_step`` records it in the run directory (checkpoint) and
in the audit log. Work happens on the snapshot, never on the live source. The switch happens only after
verification passed and only if the source still holds what the snapshot holds.

Resume: a run killed anywhere is continued by ``Rollback.resume``. Finished steps are reused only after their
artifacts pass a hash check (the snapshot against its backup's SHA-256, the converted target against the XXH3
recorded when it was built, under its temp name or already renamed into place), and a passed verification with
the bytes it passed on; anything else is redone. The switch is idempotent: it looks at what is already
in place (config value, target hash) and does only the rest, so the app sees the complete old state or the
complete new state at every instant. SIGINT/SIGTERM stop a run between steps (or at a progress tick) with
exit 4, artifacts kept for ``resume``; ``abort_run`` puts everything back as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..assess.facts import Assessment, SideFiles
from ..assess.gather import gather
from ..assess.liveness import observe_sides
from ..assess.rules import evaluate, gate
from ..audit import AuditLog
from ..backup.manifest import read_manifest
from ..backup.retention import ABORTABLE, RESUMABLE
from ..backup.sets import BackupResult, create_backup, find_backup
from ..config import Config
from ..db.connect import connect
from ..db.digest import TableDigest
from ..db.integrity import check_source
from ..db.schema import Schema, read_schema
from ..engines import Engine
from ..engines.sqljs import SqlJsEngine
from ..errors import (
    BackupError,
    FailbackError,
    InputError,
    Interrupted,
    LockedError,
    RiskRefused,
    SourceChanged,
    VerificationFailed,
    from_os_error,
)
from ..files import file_xxh3, sha256_file, tmp_name, write_text
from ..guard import Guard, SourceEvidence, schema_fingerprint
from ..journal import RunDir, RunLock, RunState, crash_point, find_run, list_runs
from ..mode import mode_policy
from ..plan.model import Plan, load_plan
from ..plan.planner import plan_conversion
from ..plan.proofs import apply_proofs
from ..profiles import load_profile
from ..report import write_reports
from ..snapshot import Snapshot, SnapshotGuard, take_snapshot
from ..verify import verify_target
from .debt import record_debt
from .export import build_target, prove_schema
from .postcheck import Timing, compare, load_baseline, time_in_engine
from .switch import current_provider

Progress = Callable[[str, int, int], None]
STATUS_OF_EXIT = {1: "failed", 3: "refused", 4: "interrupted", 5: "source-changed", 6: "failed"}
REPLACED = "target-replaced"  # written just before this run renames its converted file over the target


@dataclass
class Options:
    mode: str = "standard"  # standard or emergency
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    reason: str = ""
    break_lock: bool = False  # ignored: the OS lock is free once its holder died (kept for scripts, saved runs)
    repair_fts: bool = False  # accept a source whose only damage is in FTS indexes the target rebuilds


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
    """One rollback run over a loaded config (``run`` a new one, or ``resume`` an interrupted one)."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        options: Options | None = None,
        progress: Progress | None = None,
        on_step: Callable[[str, str, dict[str, Any]], None] | None = None,
        engine: Engine | None = None,
        confirm: Callable[[Assessment], bool] | None = None,
    ) -> None:
        self.cfg, self.opts = cfg, options or Options()
        self.mode = mode_policy(self.opts.mode)  # an unknown mode is refused before anything is written
        self.confirm = confirm  # asks a person at high risk (the CLI, on a terminal); None: refuse
        self.config_path = config_path
        self._progress: Progress = progress or (lambda *_: None)
        self.on_step = on_step or (lambda *_: None)
        self.engine = engine or SqlJsEngine()
        self.audit = AuditLog(cfg.state.audit_log)
        self.snapshot: Snapshot | None = None
        self.schema: Schema | None = None
        self.plan: Plan | None = None
        self.backup: BackupResult | None = None
        self.assessment: Assessment | None = None
        self.verification: dict[str, Any] | None = None
        self.tmp_target: Path | None = None  # the converted target under its temp name (removed by _cleanup)
        self.converted: Path | None = None  # where the converted target's bytes are: tmp_target, or the target
        self._stop: int | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="failback-backup")
        self._backup_job: Future[dict[str, Any]] | None = None
        self._quick_check: Future[tuple[str, ...] | None] = Future()  # the snapshot's findings, for its backup
        self._backup_started, self._backup_started_at = time.perf_counter(), time.time()
        self.sides: SideFiles | None = None

    @property
    def target_engine(self) -> Engine:
        """The target engine with the stand-ins of the app functions the plan keeps objects for (``[app]
        functions``), as the app registers the real ones."""
        return self.engine.with_stand_ins(self.plan.stand_ins) if self.plan else self.engine

    # -- driver ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Start a new run; a FailbackError ends it with its exit code and leaves the app as it was."""
        rd, state = RunDir.create(self.cfg.state_path, self.config_path, self.opts.mode)
        state.options = asdict(self.opts)
        return self._drive(rd, state, resuming=False)

    @classmethod
    def resume(cls, cfg: Config, config_path: Path, run_id: str | None = None, **kw: Any) -> Outcome:
        """Continue an interrupted run (default: the newest unfinished one) from its last trusted checkpoint."""
        rd = find_run(cfg.state_path, run_id, RESUMABLE)
        state = rd.load()
        self = cls(cfg, config_path, Options(**state.options), **kw)
        return self._drive(rd, state, resuming=True)

    def _drive(self, rd: RunDir, state: RunState, resuming: bool) -> Outcome:
        with self._signals():
            return self._drive_steps(rd, state, resuming)

    def _drive_steps(self, rd: RunDir, state: RunState, resuming: bool) -> Outcome:
        self.rd, self.state = rd, state
        state.status = "running"
        rd.save(state)
        lock = RunLock(self.cfg.state_path)
        outcome = Outcome(rd.id, rd.path, "running")
        try:
            lock.acquire(rd.id)
            if not resuming and not self.opts.dry_run:
                _refuse_beside_unfinished(self.cfg.state_path, rd.id)
        except FailbackError as err:
            lock.release()
            return self._finish(outcome, "refused", err)
        self.guard = Guard(self.cfg, self.audit, rd.id, lock)
        self.audit.append(
            "run.resume" if resuming else "run.start",
            {"mode": self.opts.mode, "dry_run": self.opts.dry_run, "tool": __version__},
            rd.id,
        )
        # The backup starts in the background as soon as the snapshot exists and is joined (layers checked)
        # before verification: it runs on the second core while the target is built. Nothing is switched
        # before it is verified.
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("snapshot", self.step_snapshot),
            ("assess", self.step_assess),
            ("convert", self.step_convert),
            ("backup", self.step_backup),
            ("verify", self.step_verify),
            ("switch", self.step_switch),
            ("postcheck", self.step_postcheck),
        ]
        trusted = self._trusted_steps() if resuming else set()
        try:
            for name, fn in steps:
                self._check_stop()
                if self.opts.dry_run and name not in ("snapshot", "assess"):
                    self._set(name, "skipped")
                elif name in trusted:
                    outcome.results[name] = self.state.step(name).result
                    self.audit.append(f"step.{name}.reused", {}, rd.id)
                else:
                    outcome.results[name] = self._step(name, fn)
                if name == "snapshot" and not self.opts.dry_run and "backup" not in trusted:
                    self._backup_started, self._backup_started_at = time.perf_counter(), time.time()
                    self._backup_job = self._pool.submit(self._make_backup)
            return self._finish(outcome, "dry-run" if self.opts.dry_run else "done", None)
        except KeyboardInterrupt:
            return self._finish(outcome, "interrupted", Interrupted("interrupted; run `failback resume` to continue"))
        except FailbackError as err:
            return self._finish(outcome, STATUS_OF_EXIT.get(err.exit_code, "failed"), err)
        finally:
            if not self._quick_check.done():  # ended before the source check: the backup records no findings
                self._quick_check.set_result(None)
            self._pool.shutdown(wait=True)  # a background backup must finish reading the snapshot first
            try:
                self._cleanup()
            finally:
                if self.snapshot is not None:
                    self.snapshot.guard.close()
                lock.release()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the run to stop at the next safe point (between steps or at a progress tick)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, _frame: object) -> None:
            self._stop = signum

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _check_stop(self) -> None:
        if self._stop is not None:
            name = signal.Signals(self._stop).name
            raise Interrupted(f"stopped by {name}; the run can be resumed with `failback resume {self.rd.id}`")

    def progress(self, phase: str, done: int, total: int) -> None:
        """Progress from inside a step: a safe point to stop, and a crash point for the crash tests."""
        self._check_stop()
        crash_point(f"progress:{phase.split(' ', 1)[0]}")
        self._progress(phase, done, total)

    def _step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        st = self.state.step(name)
        st.status, st.started, st.error = "running", time.time(), ""
        self.rd.save(self.state)
        self.on_step(name, "start", {})
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException as err:
            st.status, st.seconds, st.error = "failed", time.perf_counter() - t0, str(err)
            if isinstance(err, Interrupted | KeyboardInterrupt):
                st.status = "interrupted"
            self.rd.save(self.state)
            self.audit.append(f"step.{name}.{st.status}", {"error": str(err)}, self.rd.id)
            self.on_step(name, "failed", {"error": str(err)})
            raise
        crash_point(f"{name}.end")
        st.status, st.seconds, st.result = "done", time.perf_counter() - t0, result
        self.rd.save(self.state)
        self.audit.append(f"step.{name}.done", {"seconds": round(st.seconds, 3), **_summary(result)}, self.rd.id)
        self.on_step(name, "done", result)
        return result

    def _set(self, name: str, status: str) -> None:
        self.state.step(name).status = status
        self.rd.save(self.state)

    def _finish(self, outcome: Outcome, status: str, err: FailbackError | None) -> Outcome:
        """Record the final status, write the run's reports (whatever the outcome) and the last audit event."""
        outcome.status, outcome.error = status, err
        self.state.status, self.state.exit_code = status, outcome.exit_code
        self.state.error = str(err) if err else ""
        self.audit.append(
            "run.end",
            {"status": status, "exit_code": outcome.exit_code, "error": self.state.error},
            self.rd.id,
        )
        report = self.state.step("report")
        report.status, t0 = "done", time.perf_counter()
        files = write_reports(self.rd, self.state, self._report_data())
        report.seconds = time.perf_counter() - t0
        report.result = outcome.results["report"] = {"files": [str(p) for p in files]}
        self.rd.save(self.state)
        return outcome

    def _cleanup(self) -> None:
        """Temp files go unless the run can be resumed; the snapshot stays only for a resume. The converted
        target's temp name goes too when this process never used it (a resume refused before trusting it)."""
        if self.state.status == "interrupted":
            return
        tmp = self.tmp_target or temp_target(self.cfg.target_path, self.rd.id)
        snapshot = [self.snapshot.path] if self.snapshot is not None else []
        self.guard.remove_temp(self.rd.path, tmp, Path(f"{tmp}-journal"), *snapshot)

    # -- resume ---------------------------------------------------------------------------------
    def _trusted_steps(self) -> set[str]:
        """Finished steps whose artifacts still pass their hash checks, in order; the first untrusted step
        and everything after it run again. The switch and the cheap steps always run (they are idempotent). A
        verification that passed is reused with the exact bytes it passed on (the converted target's XXH3)."""
        trusted: set[str] = set()
        done = {s.name for s in self.state.steps if s.status == "done"}
        if {"snapshot", "backup"} <= done and self._restore_snapshot_and_backup():
            trusted |= {"snapshot", "backup"}
            if "convert" in done and self._restore_target():
                trusted.add("convert")
                if "verify" in done and self.state.step("verify").result.get("ok"):
                    trusted.add("verify")
                    self.verification = self.state.step("verify").result
        return trusted

    def _restore_snapshot_and_backup(self) -> bool:
        path = self.rd.file("snapshot.sqlite")
        source = self.state.step("backup").result.get("source", {})
        try:
            folders = find_backup(self._layers(), source["id"])
            manifest = read_manifest(folders[0])
        except (KeyError, FailbackError):
            return False
        if not path.exists() or sha256_file(path) != manifest["sha256"]["raw"]:
            return False
        snap = self.state.step("snapshot").result
        g = snap["guard"]
        guard = SnapshotGuard(Path(g["source"]), g["data_version"], g["fingerprint"], None)
        self.snapshot = Snapshot(path, guard, snap["pages"], snap["page_size"], snap["restarts"], 0.0)
        self.schema = _read_schema(path)
        self.plan = plan_conversion(
            self.schema, load_profile(self.cfg.target.profile), self.cfg.convert, self.cfg.app.functions
        )
        digests = {t: TableDigest(t, d["rows"], d["digest"]) for t, d in manifest.get("tables", {}).items()}
        self.backup = BackupResult(source["id"], manifest, digests=digests)
        return True

    def _restore_target(self) -> bool:
        """Find the converted target where it now is: under its temp name, or already renamed into place by a
        killed switch (the target holding the very bytes built, by their XXH3). Only a temp name becomes
        ``tmp_target``: ``_cleanup`` removes that one."""
        result = self.state.step("convert").result
        tmp, built = Path(result.get("path", "")), result.get("xxh3")
        if _holds(tmp, built):
            self.tmp_target = self.converted = tmp
        elif _holds(self.cfg.target_path, built):
            self.converted = self.cfg.target_path
        else:
            return False
        self.plan = load_plan(json.loads(self.rd.file("plan.json").read_text(encoding="utf-8")))
        return True

    def _layers(self) -> list[Path]:
        return self.mode.layers(self.cfg.backup_layers)

    # -- steps ----------------------------------------------------------------------------------
    def step_snapshot(self) -> dict[str, Any]:
        self.preflight()
        self.sides = observe_sides(self.cfg.source_path)  # before the snapshot's read-only open adds a -shm
        self.snapshot = take_snapshot(self.cfg.source_path, self.rd.file("snapshot.sqlite"), self.progress)
        self.schema = _read_schema(self.snapshot.path)
        self.plan = plan_conversion(
            self.schema, load_profile(self.cfg.target.profile), self.cfg.convert, self.cfg.app.functions
        )
        write_text(self.rd.file("plan.json"), json.dumps(self.plan.dump(), indent=2) + "\n")
        return {
            "pages": self.snapshot.pages,
            "page_size": self.snapshot.page_size,
            "bytes": self.snapshot.path.stat().st_size,
            "restarts": self.snapshot.restarts,
            "guard": self.snapshot.guard.to_json(),
            "schema_sha256": schema_fingerprint(self.snapshot.path),
        }

    def preflight(self) -> None:
        """Refuse, before the snapshot, a target that must not be replaced (the source, a backup, a file the app
        config does not name, one beside a hot journal) and a second rollback: once the app is on sql.js,
        replacing its database would lose what it wrote."""
        self.guard.check_target()
        app = self.cfg.app
        current = current_provider(self.cfg.app_config_path, app.key)
        if current != app.native_value and not self.opts.dry_run and not (self.opts.force and self.opts.reason):
            raise RiskRefused(
                f"{self.cfg.app_config_path.name} has {app.key}={current!r}, not {app.native_value!r}: the app is "
                "not on the native provider, and a rollback now would replace the database it writes to",
                "check `failback status`; switch the app back to native first, or pass --force --reason '…'",
            )

    def step_backup(self) -> dict[str, Any]:
        """Wait for the background backup; its layers were checked there."""
        if self._backup_job is None:  # (resumed before the backup started)
            self._backup_job = self._pool.submit(self._make_backup)
        result = self._backup_job.result()
        self.state.step("backup").started = self._backup_started_at  # when it really began, in the background
        return {**result, "background_seconds": round(time.perf_counter() - self._backup_started, 3)}

    def _make_backup(self) -> dict[str, Any]:
        """The source snapshot (and the file about to be replaced) in every layer, each copy verified."""
        assert self.snapshot is not None
        need = self.cfg.backup.min_layers if self.mode.min_layers is None else self.mode.min_layers
        kw: dict[str, Any] = {
            "level": self.cfg.backup.zstd_level if self.mode.zstd_level is None else self.mode.zstd_level,
            "threads": min(self.cfg.backup.threads, 1),  # in the background: leave a core to the conversion
            "digests": self.mode.backup_digests,  # else deferred with the rest of the proof (paid from this backup)
            "progress": self.progress,
        }
        self.backup = create_backup(
            self.snapshot.path,
            self._layers(),
            label="source",
            source=self.cfg.source_path,
            quick_check=self._quick_check.result,  # known once the assess step checked the snapshot
            **kw,
        )
        if self.backup.verified_layers < need:
            failed = "; ".join(x.error for x in self.backup.layers if not x.ok)
            raise BackupError(
                f"only {self.backup.verified_layers} of {need} required backup layer(s) verified: {failed}"
            )
        out: dict[str, Any] = {"source": self.backup.to_json()}
        target = self.cfg.target_path
        crash_point("backup.source-stored")
        if target.exists():  # the file about to be replaced is backed up too
            prev = create_backup(target, self._layers(), label="previous-target", source=target, **kw)
            if prev.verified_layers < need:
                raise BackupError(f"the current target {target} could not be backed up to {need} layer(s)")
            crash_point("backup.previous-target-stored")
            out["previous_target"] = prev.to_json()
        return out

    def step_assess(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.schema is not None and self.plan is not None
        checked = check_source(self.snapshot.path, self.cfg.source_path, self.schema, self.plan, self.opts.repair_fts)
        self._quick_check.set_result(checked.problems)
        integrity = checked.to_json()
        if integrity["repaired"]:
            self.audit.append("source.repair-fts", integrity, self.rd.id)
        facts = gather(self.cfg, self.snapshot.path, self.schema, self.plan, mode=self.mode, sides=self.sides)
        self.assessment = evaluate(facts)
        result = {**self.assessment.to_json(), "plan": self.plan.to_json(), "source_integrity": integrity}
        if not self.opts.dry_run:
            confirmed: list[bool] = []

            def ask(a: Assessment) -> bool:
                confirmed.append(bool(self.confirm and self.confirm(a)))
                return confirmed[-1]

            gate(self.assessment, yes=self.opts.yes, force=self.opts.force, reason=self.opts.reason, confirm=ask)
            if any(confirmed):
                self.audit.append("gate.confirmed", {"level": self.assessment.level, "by": "terminal"}, self.rd.id)
            if self.opts.force and self.opts.reason:
                self.audit.append(
                    "gate.override", {"level": self.assessment.level, "reason": self.opts.reason}, self.rd.id
                )
        return result

    def step_convert(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.plan is not None
        target = self.cfg.target_path
        self.plan = apply_proofs(self.plan, prove_schema(self.plan, self.target_engine), self.cfg.convert)
        write_text(self.rd.file("plan.json"), json.dumps(self.plan.dump(), indent=2) + "\n")
        self.tmp_target = self.converted = temp_target(target, self.rd.id)
        built = build_target(self.snapshot.path, self.tmp_target, self.plan, self.progress)
        return {
            "bytes": built.bytes,
            "seconds": built.seconds,
            "decisions": len(self.plan.decisions),
            "path": str(self.tmp_target),
            "xxh3": file_xxh3(self.tmp_target),
        }

    def step_verify(self) -> dict[str, Any]:
        assert self.snapshot is not None and self.plan is not None and self.converted is not None
        digests = self.backup.digests if self.backup else None
        repaired = self.state.step("assess").result.get("source_integrity", {}).get("repaired", [])
        v = self.cfg.verify
        report = verify_target(
            self.converted,
            self.plan,
            self.target_engine,
            snapshot=self.snapshot.path,
            snapshot_digests_=digests if self.mode.backup_digests else None,
            level=self.mode.verify_level,
            fts_queries=v.fts_queries,
            sample_terms=v.sample_terms,
            queries=v.queries,
            timed=self.cfg.benchmark.queries,
            runs=self.cfg.benchmark.runs,
            repaired=repaired,
        )
        self.verification = result = report.to_json()
        if not report.ok:
            raise VerificationFailed(f"verification failed: {report.problems[0]}")
        if report.deferred:  # a quick verification: what was skipped is recorded, to be paid by `verify --debt`
            debt = {
                "run": self.rd.id,
                "deferred": report.deferred,
                "backup": self.backup.id if self.backup else None,
                "target": str(self.cfg.target_path),
                "target_xxh3": self.state.step("convert").result["xxh3"],
                "repaired": repaired,  # FTS indexes repaired (--repair-fts): their search parity is not compared
                "paid": None,
            }
            record_debt(self.rd, debt, self.audit)
        return result

    def step_switch(self) -> dict[str, Any]:
        """Target into place, then the config; each part is skipped when it is already done (resume). Every
        path re-checks the target and the source first, and a source written since the snapshot puts back a
        target a killed attempt had already replaced."""
        assert self.snapshot is not None
        app, target = self.cfg.app, self.cfg.target_path
        converted = self.state.step("convert").result["xxh3"]
        before = self.rd.file("app-config.before")
        if current_provider(self.cfg.app_config_path, app.key) == app.rollback_value and before.exists():
            return self._switched("already switched")
        kept = self.rd.file("previous-target.sqlite")
        in_place = self.rd.file(REPLACED).exists() and _holds(target, converted)
        self.guard.check_target()
        try:
            self.guard.check_source(self._evidence())
        except SourceChanged as err:
            if not in_place:
                raise
            undone = self.guard.put_back(kept, ours=True)
            self.audit.append("switch.undone", {"undone": undone}, self.rd.id)
            raise SourceChanged(f"{err.message}; {undone}") from None
        if not in_place:
            probe_writable(self.cfg.app_config_path)  # the config switch must be able to follow the rename
            assert self.tmp_target is not None and self.tmp_target.exists(), "converted target missing"
            self.guard.keep_previous(kept)  # the old target's inode (and side files) stay in the run directory
            crash_point("switch.kept")
            write_text(self.rd.file(REPLACED), converted + "\n")  # abort undoes only what this run replaced
            self.guard.put_in_place(self.tmp_target)
            self.tmp_target, self.converted = None, target
            self.audit.append("switch.target", {"target": str(target), "previous_kept": kept.exists()}, self.rd.id)
        crash_point("switch.renamed")
        old, new = self.guard.rewrite_app_config(before)
        self.audit.append(
            "switch.config",
            {"config": str(self.cfg.app_config_path), "key": app.key, "from": old, "to": new},
            self.rd.id,
        )
        crash_point("switch.config")
        return self._switched("switched")

    def _switched(self, how: str) -> dict[str, Any]:
        return {
            "target": str(self.cfg.target_path),
            "config": str(self.cfg.app_config_path),
            "from": self.cfg.app.native_value,
            "to": self.cfg.app.rollback_value,
            "how": how,
        }

    def _evidence(self) -> SourceEvidence:
        """What the snapshot saw of the source, for the guard's check."""
        assert self.snapshot is not None
        tables = self.backup.manifest.get("tables") if self.backup is not None else None
        return SourceEvidence(self.snapshot.guard, tables, self.state.step("snapshot").result.get("schema_sha256"))

    def step_postcheck(self) -> dict[str, Any]:
        """The app's hot queries on the new target vs the recorded baseline (a regression is reported, not
        undone: the data is already proven)."""
        baseline = load_baseline(self.cfg.state_path)
        queries = self.cfg.benchmark.queries
        if not queries:
            return {"skipped": "no [benchmark] queries configured"}
        measured = (self.verification or {}).get("timings")
        if measured:  # timed by the verification's sql.js run on the same bytes: no third load of the file
            now = [Timing(**t) for t in measured]
        else:
            now = time_in_engine(self.target_engine, self.cfg.target_path, queries, self.cfg.benchmark.runs)
        rows = compare(baseline or {}, now, self.cfg.benchmark.max_regression, self.cfg.benchmark.min_delta_ms)
        regressions = [r for r in rows if not r["ok"]]
        if regressions:
            self.audit.append("postcheck.regression", {"queries": [r["sql"] for r in regressions]}, self.rd.id)
        return {"baseline": bool(baseline), "queries": rows, "ok": not regressions}

    def _report_data(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json() if self.plan else None,
            "assessment": self.assessment.to_json() if self.assessment else None,
            "backup": self.backup.to_json() if self.backup and self.backup.layers else None,
            "verification": self.verification,
            "audit": self.audit.records(self.rd.id),
            "audit_head": head.to_json() if (head := self.audit.head()) else None,
        }


def probe_writable(path: Path) -> None:
    """Prove a file can be replaced atomically (a temp file created and removed beside it), so nothing is
    switched half-way; EnvironmentFailure (exit 6) otherwise."""
    probe = tmp_name(path, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise from_os_error(err, f"cannot replace {path}") from err


def temp_target(target: Path, run_id: str) -> Path:
    """The name run ``run_id`` builds its converted target under, beside ``target``."""
    return target.with_name(f".{target.name}.failback-{run_id}")


def _holds(path: Path, xxh3: str | None) -> bool:
    """Whether ``path`` is a file with exactly the bytes whose XXH3 is ``xxh3``."""
    return bool(xxh3) and path.is_file() and file_xxh3(path) == xxh3


def _read_schema(path: Path) -> Schema:
    conn = connect(path, readonly=True)
    try:
        return read_schema(conn)
    finally:
        conn.close()


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The small part of a step's result that goes into the audit log."""
    keys = ("bytes", "pages", "restarts", "level", "go", "ok", "from", "to", "target", "how", "xxh3")
    out = {k: result[k] for k in keys if k in result}
    if "source" in result and isinstance(result["source"], dict):
        out["backup"] = result["source"].get("id")
        out["sha256"] = result["source"].get("sha256")
    return out


def _unfinished(state_dir: Path, but: str = "") -> list[tuple[str, str]]:
    """(id, status) of the runs that did not finish (running with its process gone, or interrupted), newest first."""
    return [(rd.id, st) for rd in list_runs(state_dir) if rd.id != but and (st := rd.load().status) in RESUMABLE]


def _refuse_beside_unfinished(state_dir: Path, this: str) -> None:
    """A new rollback waits for an unfinished one: that run's snapshot, backups and perhaps a half-done switch wait
    for `resume` or `abort`, and a second run switching over them would let that abort undo the second's result."""
    if unfinished := _unfinished(state_dir, but=this):
        run, status = unfinished[0]
        raise LockedError(
            f"run {run} did not finish (status {status}): resume or abort it before a new rollback",
            f"`failback resume {run}` finishes it; `failback abort {run}` undoes it",
        )


def abort_run(cfg: Config, run_id: str | None = None) -> dict[str, Any]:
    """Undo an unfinished run (without an id: the newest unfinished one, else the newest that failed or was
    refused): remove its temp files and, if it got as far as the switch, put the previous
    target (with its side files) and config back — only while the new target is untouched since (else the
    app's writes would be lost: refuse) and while no live process holds the lock."""
    rd = find_run(cfg.state_path, run_id, ABORTABLE if run_id or not _unfinished(cfg.state_path) else RESUMABLE)
    state = rd.load()
    if state.status in ("done", "aborted", "dry-run"):
        raise InputError(f"run {rd.id} is {state.status}; nothing to abort", "to go back to native, see the runbook")
    lock = RunLock(cfg.state_path)
    try:
        lock.acquire(rd.id)
    except LockedError as err:
        raise LockedError(f"cannot abort run {rd.id}: {err.message}", "stop that run first (Ctrl-C)") from None
    later = [r.id for r in list_runs(cfg.state_path) if r.id > rd.id and r.load().status == "done"]
    if later:
        lock.release()
        raise InputError(
            f"run {later[-1]} finished after run {rd.id}: aborting {rd.id} would undo what the app now reads",
            "`failback abort` cannot undo a finished run; roll forward by hand (see docs/ROLLBACK-PROCEDURES.md)",
        )
    audit = AuditLog(cfg.state.audit_log)
    try:
        undone = _undo(cfg, rd, state, Guard(cfg, audit, rd.id, lock))
        state.status, state.error = "aborted", ""
        rd.save(state)
        audit.append("run.aborted", {"undone": undone}, rd.id)
    finally:
        lock.release()
    return {"run": rd.id, "undone": undone}


def _undo(cfg: Config, rd: RunDir, state: RunState, guard: Guard) -> list[str]:
    """Put back what run ``rd`` changed (config, target, side files) and remove its temp files."""
    converted = state.step("convert").result.get("xxh3")
    target, app = cfg.target_path, cfg.app
    undone: list[str] = []
    before = rd.file("app-config.before")
    switched_config = before.exists() and current_provider(cfg.app_config_path, app.key) == app.rollback_value
    target_is_ours = rd.file(REPLACED).exists() and _holds(target, converted)  # equal bytes alone prove nothing
    if switched_config and not target_is_ours:
        raise InputError(
            f"run {rd.id} switched the app and its new database has changed since: aborting would lose those writes",
            "keep the rollback, or roll forward by hand (see docs/ROLLBACK-PROCEDURES.md)",
        )
    if switched_config:
        guard.restore_app_config(before)
        undone.append(f"{cfg.app_config_path.name} restored")
        crash_point("abort.config-restored")
    put_back = guard.put_back(rd.file("previous-target.sqlite"), ours=target_is_ours)
    undone += [put_back] if put_back else []
    tmp = Path(state.step("convert").result.get("path") or temp_target(target, rd.id))
    guard.remove_temp(rd.path, tmp, Path(f"{tmp}-journal"), rd.file("snapshot.sqlite"), rd.file("snapshot.sqlite.part"))
    return undone
