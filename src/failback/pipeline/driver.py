"""The driver of a rollback: it sequences the steps (``steps.STEPS``), checkpoints each result in the run folder
and the audit log, stops on a signal, resumes, finishes (reports) and cleans up; ``abort_run`` undoes a run.

Resume: a run killed anywhere is continued by ``Rollback.resume``. Finished steps are reused only after their
artifacts pass a hash check (the snapshot against its backup's SHA-256, the converted target against the XXH3
recorded when it was built, under its temp name or already renamed into place; a down-conversion's carry-over
against its SHA-256), and a passed verification with
the bytes it passed on; anything else is redone. The switch is idempotent: it looks at what is already
in place (config value, target hash) and does only the rest, so the app sees the complete old state or the
complete new state at every instant. SIGINT/SIGTERM stop a run between steps (or at a progress tick) with
exit 4, artifacts kept for ``resume``; ``abort_run`` puts everything back as it was.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..assess.facts import Assessment
from ..autorollback.notify import audit_log
from ..backup.manifest import read_manifest
from ..backup.retention import ABORTABLE, RESUMABLE
from ..backup.sets import BackupResult, find_backup
from ..config import Config
from ..db.digest import TableDigest
from ..engines import Engine
from ..errors import FailbackError, InputError, Interrupted, LockedError
from ..files import sha256_file
from ..guard import Guard
from ..journal import RunDir, RunLock, RunState, crash_point, find_run, list_runs
from ..metrics import publish_metrics
from ..mode import mode_policy
from ..plan.down import load_down
from ..plan.model import load_plan
from ..profiles import target_engine
from ..report import report_set, write_reports
from ..snapshot import Snapshot, SnapshotGuard
from .downconvert import CARRY_OVER
from .steps import STEPS, Options, Progress, RunContext, make_backup
from .switch import AppSwitch, holds, temp_target, undo_switch

TRUSTED = ("backup", "convert", "verify")  # steps whose saved result a resume reuses, each only with those before it
# (_trusted_steps)
SAVE_INTERVAL = 1.0  # seconds: a step finished this long ago is saved as the next starts, trusted by resume or not
STATUS_OF_EXIT = {1: "failed", 3: "refused", 4: "interrupted", 5: "source-changed", 6: "failed"}
StepHook = Callable[[str, str, dict[str, Any]], None]


@dataclass
class Outcome:
    """What a run did: its id and directory, its final status (done, dry-run, refused, failed, interrupted,
    source-changed) and each step's JSON result; ``error`` (None when done) says why it stopped."""

    run_id: str
    run_dir: Path
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    error: FailbackError | None = None
    reports: str = "all"  # the reports the run writes (REPORT_SETS): all, or json (report.json only)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this outcome: 0 when done, else the error's."""
        return 0 if self.error is None else self.error.exit_code

    @property
    def report_path(self) -> Path:
        """The run's report (written whatever the outcome): the first of its report set, report.md or (a run that
        wrote only that) report.json."""
        return self.run_dir / f"report.{report_set(self.reports)[0]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "results": self.results,
            "error": str(self.error) if self.error else None,
        }


class Rollback:
    """One rollback run over a loaded config (``run`` a new one, or ``resume`` an interrupted one)."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        options: Options | None = None,
        progress: Progress | None = None,
        on_step: StepHook | None = None,
        engine: Engine | None = None,
        confirm: Callable[[Assessment], bool] | None = None,
    ) -> None:
        self.cfg, self.opts = cfg, options or Options()
        self.mode = mode_policy(self.opts.mode)  # an unknown mode is refused before anything is written
        self.report_formats = report_set(self.opts.reports)  # so is an unknown report set
        self.confirm = confirm  # asks a person at high risk (the CLI, on a terminal); None: refuse
        self.config_path = config_path
        self._progress: Progress = progress or (lambda *_: None)
        self.on_step: StepHook = on_step or (lambda *_: None)
        self.engine = engine or target_engine(cfg.target)
        self.audit = audit_log(cfg)
        self._stop: int | None = None
        self._unsaved: set[str] = set()  # steps finished since state.json was last saved
        self._saved_at = time.monotonic()  # when state.json was last saved by a step's start
        self._run_id = ""

    def run(self) -> Outcome:
        """Start a new run; a FailbackError ends it with its exit code and leaves the app as it was."""
        rd, state = RunDir.create(self.cfg.state_path, self.config_path, self.opts.mode, asdict(self.opts))
        crash_point("run.created")
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
        self._run_id = rd.id
        if state.status != "running":  # a resumed run (a new one was saved running when created)
            state.status = "running"
            rd.save(state)
        lock = RunLock(self.cfg.state_path)
        guard = Guard(self.cfg, self.audit, rd.id, lock)
        ctx = RunContext(
            self.cfg, self.opts, self.mode, rd, state, self.audit, guard, self.engine, self.progress, self.confirm
        )
        outcome = Outcome(rd.id, rd.path, "running", reports=self.opts.reports)
        try:
            lock.acquire(rd.id)
            if not resuming and not self.opts.dry_run:
                _refuse_beside_unfinished(self.cfg.state_path, rd.id)
        except FailbackError as err:
            lock.release()
            return self._finish(ctx, outcome, "refused", err)
        ctx.event(
            "run.resume" if resuming else "run.start",
            {"mode": self.opts.mode, "dry_run": self.opts.dry_run, "tool": __version__},
        )
        pool = ThreadPoolExecutor(1, thread_name_prefix="failback-backup")
        trusted = _trusted_steps(ctx) if resuming else set()
        try:
            for name, fn in STEPS:
                self._check_stop()
                if self.opts.dry_run and name not in ("snapshot", "assess"):
                    _set(ctx, name, "skipped")
                elif name in trusted:
                    outcome.results[name] = state.step(name).result
                    ctx.event(f"step.{name}.reused", {})
                else:
                    outcome.results[name] = self._step(ctx, name, fn)
                if name == "snapshot" and not self.opts.dry_run and "backup" not in trusted:
                    ctx.backup_started, ctx.backup_started_at = time.perf_counter(), time.time()
                    ctx.backup_job = pool.submit(make_backup, ctx)
            return self._finish(ctx, outcome, "dry-run" if self.opts.dry_run else "done", None)
        except KeyboardInterrupt:
            interrupted = Interrupted("interrupted; run `failback resume` to continue")
            return self._finish(ctx, outcome, "interrupted", interrupted)
        except FailbackError as err:
            return self._finish(ctx, outcome, STATUS_OF_EXIT.get(err.exit_code, "failed"), err)
        finally:
            if not ctx.quick_check.done():  # ended before the source check: the backup records no findings
                ctx.quick_check.set_result(None)
            pool.shutdown(wait=True)  # a background backup must finish reading the snapshot first
            try:
                _cleanup(ctx)
            finally:
                if ctx.snapshot is not None:
                    ctx.snapshot.guard.close()
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
            name, run = signal.Signals(self._stop).name, self._run_id
            raise Interrupted(f"stopped by {name}; the run can be resumed with `failback resume {run}`")

    def progress(self, phase: str, done: int, total: int) -> None:
        """Progress from inside a step: a safe point to stop, and a crash point for the crash tests."""
        self._check_stop()
        crash_point(f"progress:{phase.split(' ', 1)[0]}")
        self._progress(phase, done, total)

    def _step(self, ctx: RunContext, name: str, fn: Callable[[RunContext], dict[str, Any]]) -> dict[str, Any]:
        """Run one step, checkpointing its status and result in the run folder and the audit log. state.json is
        saved as the next step starts when a step whose result a resume reuses finished (TRUSTED; the switch's
        start so follows the verification's save) and the steps before it in TRUSTED are done too (a resume trusts
        the conversion only with the backup, joined after it: the save after the join holds both), or any step
        finished at least SAVE_INTERVAL ago (what `status` shows of a long run); when a step fails; at the run's
        end. A crash before a step's result is saved leaves it unfinished: resume redoes it, as after a crash
        inside it."""
        st = ctx.state.step(name)
        st.status, st.started, st.error = "running", time.time(), ""
        done = {s.name for s in ctx.state.steps if s.status == "done"}
        reusable = self._unsaved.intersection(itertools.takewhile(done.__contains__, TRUSTED))
        if reusable or (self._unsaved and time.monotonic() - self._saved_at >= SAVE_INTERVAL):
            ctx.rd.save(ctx.state)
            self._unsaved, self._saved_at = set(), time.monotonic()
        self.on_step(name, "start", {})
        t0 = time.perf_counter()
        try:
            result = fn(ctx)
        except BaseException as err:
            st.status, st.seconds, st.error = "failed", time.perf_counter() - t0, str(err)
            if isinstance(err, Interrupted | KeyboardInterrupt):
                st.status = "interrupted"
            ctx.rd.save(ctx.state)
            ctx.event(f"step.{name}.{st.status}", {"error": str(err)})
            self.on_step(name, "failed", {"error": str(err)})
            raise
        crash_point(f"{name}.end")
        st.status, st.seconds, st.result = "done", time.perf_counter() - t0, result
        self._unsaved.add(name)
        ctx.event(f"step.{name}.done", {"seconds": round(st.seconds, 3), **_summary(result)})
        self.on_step(name, "done", result)
        return result

    def _finish(self, ctx: RunContext, outcome: Outcome, status: str, err: FailbackError | None) -> Outcome:
        """Record the final status, write the run's reports (whatever the outcome) and the last audit event."""
        outcome.status, outcome.error = status, err
        state = ctx.state
        state.status, state.exit_code = status, outcome.exit_code
        state.error = str(err) if err else ""
        ctx.event("run.end", {"status": status, "exit_code": outcome.exit_code, "error": state.error}, sync=True)
        report = state.step("report")
        report.status, t0 = "done", time.perf_counter()
        files = write_reports(ctx.rd, state, _report_data(ctx), self.report_formats)
        report.seconds = time.perf_counter() - t0
        report.result = outcome.results["report"] = {"files": [str(p) for p in files]}
        ctx.rd.save(state)
        if problem := publish_metrics(ctx.cfg):
            ctx.event("metrics.failed", {"error": problem}, sync=True)
        return outcome


def _set(ctx: RunContext, name: str, status: str) -> None:
    ctx.state.step(name).status = status
    ctx.rd.save(ctx.state)


def _cleanup(ctx: RunContext) -> None:
    """Temp files go unless the run can be resumed; the snapshot stays only for a resume. The converted
    target's temp name goes too when this process never used it (a resume refused before trusting it)."""
    if ctx.state.status == "interrupted":
        return
    tmp = ctx.tmp_target or temp_target(ctx.cfg.target_path, ctx.rd.id)
    snapshot = [ctx.snapshot.path] if ctx.snapshot is not None else []
    ctx.guard.remove_temp(ctx.rd.path, tmp, Path(f"{tmp}-journal"), *snapshot)


def _report_data(ctx: RunContext) -> dict[str, Any]:
    return {
        "plan": ctx.plan.to_json() if ctx.plan else None,
        "assessment": ctx.assessment.to_json() if ctx.assessment else None,
        "backup": ctx.backup.to_json() if ctx.backup and ctx.backup.layers else None,
        "verification": ctx.verification,
        "audit": ctx.audit.records(ctx.rd.id),
        "audit_head": head.to_json() if (head := ctx.audit.head()) else None,
    }


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The small part of a step's result that goes into the audit log."""
    keys = ("bytes", "pages", "restarts", "level", "go", "ok", "from", "to", "target", "how", "xxh3")
    out = {k: result[k] for k in keys if k in result}
    if "source" in result and isinstance(result["source"], dict):
        out["backup"] = result["source"].get("id")
        out["sha256"] = result["source"].get("sha256")
    return out


# -- resume ---------------------------------------------------------------------------------------
def _trusted_steps(ctx: RunContext) -> set[str]:
    """Finished steps whose artifacts still pass their hash checks, in order; the first untrusted step
    and everything after it run again. The switch and the cheap steps always run (they are idempotent). A
    verification that passed is reused with the exact bytes it passed on (the converted target's XXH3)."""
    trusted: set[str] = set()
    done = {s.name for s in ctx.state.steps if s.status == "done"}
    if {"snapshot", "backup"} <= done and _restore_snapshot_and_backup(ctx):
        trusted |= {"snapshot", "backup"}
        if "convert" in done and _restore_target(ctx):
            trusted.add("convert")
            if "verify" in done and ctx.state.step("verify").result.get("ok"):
                trusted.add("verify")
                ctx.verification = ctx.state.step("verify").result
    return trusted


def _restore_snapshot_and_backup(ctx: RunContext) -> bool:
    path = ctx.rd.file("snapshot.sqlite")
    source = ctx.state.step("backup").result.get("source", {})
    try:
        folders = find_backup(ctx.layers, source["id"])
        manifest = read_manifest(folders[0])
    except (KeyError, FailbackError):
        return False
    if not path.exists() or sha256_file(path) != manifest["sha256"]["raw"]:
        return False
    snap = ctx.state.step("snapshot").result
    g = snap["guard"]
    guard = SnapshotGuard(Path(g["source"]), g["data_version"], g["fingerprint"], None)
    ctx.snapshot = Snapshot(path, guard, snap["pages"], snap["page_size"], snap["restarts"], 0.0)
    ctx.read_plan(path)
    digests = {t: TableDigest(t, d["rows"], d["digest"]) for t, d in manifest.get("tables", {}).items()}
    ctx.backup = BackupResult(source["id"], manifest, digests=digests)
    return True


def _restore_target(ctx: RunContext) -> bool:
    """Find the converted target where it now is: under its temp name, or already renamed into place by a
    killed switch (the target holding the very bytes built, by their XXH3). Only a temp name becomes
    ``tmp_target``: the cleanup removes that one."""
    result = ctx.state.step("convert").result
    tmp, built = Path(result.get("path", "")), result.get("xxh3")
    carry = result.get("carry_sha256")  # a down-conversion: its carry-over is trusted by its SHA-256 only
    carry_over = ctx.rd.file(CARRY_OVER)
    if carry is not None and not (carry_over.is_file() and sha256_file(carry_over) == carry):
        return False
    if holds(tmp, built):
        ctx.tmp_target = ctx.converted = tmp
    elif holds(ctx.cfg.target_path, built):
        ctx.converted = ctx.cfg.target_path
    else:
        return False
    ctx.plan = load_plan(json.loads(ctx.rd.file("plan.json").read_text(encoding="utf-8")))
    if carry is not None:
        ctx.down = load_down(json.loads(ctx.rd.file("down.json").read_text(encoding="utf-8")))
    return True


# -- one run at a time, and abort -----------------------------------------------------------------
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
    audit = audit_log(cfg)
    try:
        guard = Guard(cfg, audit, rd.id, lock)
        converted = state.step("convert").result
        undone = undo_switch(AppSwitch(cfg.app, cfg.app_config_path, cfg.target_path, rd), guard, converted.get("xxh3"))
        tmp = Path(converted.get("path") or temp_target(cfg.target_path, rd.id))
        snapshot, part = rd.file("snapshot.sqlite"), rd.file("snapshot.sqlite.part")
        guard.remove_temp(rd.path, tmp, Path(f"{tmp}-journal"), snapshot, part)
        state.status, state.error = "aborted", ""
        rd.save(state)
        audit.append("run.aborted", {"undone": undone}, rd.id)
    finally:
        lock.release()
    return {"run": rd.id, "undone": undone}
