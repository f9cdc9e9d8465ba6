"""The steps of a rollback: snapshot, backup, assess, convert, verify, switch, postcheck.

Each step is a function of the run's ``RunContext`` returning its JSON-able result (the driver checkpoints it in
the run folder and the audit log). A step reads the artifacts earlier steps left in the context (snapshot,
schema, plan, backup, assessment, converted target) and adds its own. Work happens on the snapshot, never on
the live source; the switch happens only after verification passed and only if the source still holds what
the snapshot holds.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assess.facts import Assessment, Liveness, SideFiles
from ..assess.gather import gather, gathered_merges, old_app_schema
from ..assess.liveness import observe_sides, start_watch
from ..assess.rules import evaluate, gate
from ..assess.statements import check_statements, load_statements, prepare_statements
from ..audit import AuditLog
from ..backup.sets import BackupResult, create_backup
from ..config import Config
from ..db.collations import CollationMerge
from ..db.digest import DigestSpec, TableDigest
from ..db.integrity import check_source
from ..db.schema import Schema
from ..engines import Engine, warm
from ..errors import (
    BackupError,
    ConfigError,
    NotADatabaseError,
    RiskRefused,
    SourceDamaged,
    VerificationFailed,
)
from ..files import file_xxh3, write_text
from ..guard import Guard, SourceEvidence, schema_fingerprint
from ..journal import RunDir, RunState, crash_point
from ..mode import ModePolicy
from ..plan.down import DownPlan, check_down, plan_down
from ..plan.model import Plan
from ..snapshot import Snapshot, take_snapshot
from .debt import record_debt
from .downconvert import CARRY_OVER, verify_down, write_down
from .export import PlanSettings, build_target, proved_plan, read_plan, verify_conversion
from .postcheck import Timing, compare, load_baseline, time_in_engine
from .switch import AppSwitch, current_provider, switch_app, temp_target
from .target_manifest import write_target_manifest

Progress = Callable[[str, int, int], None]


@dataclass
class Options:
    mode: str = "standard"  # standard or emergency
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    reason: str = ""
    break_lock: bool = False  # ignored: the OS lock is free once its holder died (kept for scripts, saved runs)
    repair_fts: bool = False  # accept a source whose only damage is in FTS indexes the target rebuilds
    reports: str = "all"  # the reports written (report.REPORT_SETS): all, or json (`failback report` renders the rest)


@dataclass
class RunContext:
    """One run as its steps see it: what it was given (config, options, mode, run folder, audit log, guard,
    engine, progress, a person to confirm high risk) and what its steps made so far."""

    cfg: Config
    opts: Options
    mode: ModePolicy
    rd: RunDir
    state: RunState
    audit: AuditLog
    guard: Guard
    engine: Engine
    progress: Progress  # a safe point to stop, and a crash point for the crash tests
    confirm: Callable[[Assessment], bool] | None = None  # asks a person at high risk; None: refuse
    snapshot: Snapshot | None = None
    sides: SideFiles | None = None
    liveness: Future[Liveness] | None = None  # the source's liveness watch, run beside the snapshot
    schema: Schema | None = None
    plan: Plan | None = None
    plan_written: str = ""  # the plan this process last wrote to plan.json, compact (save_plan)
    down: DownPlan | None = None  # convert.schema = "previous": the down-conversion's plan
    backup: BackupResult | None = None
    assessment: Assessment | None = None
    merges: tuple[dict[str, str], list[CollationMerge]] | None = None  # the assess step's, by the mapping it used
    verification: dict[str, Any] | None = None
    proved: list[tuple[DigestSpec, TableDigest]] = field(default_factory=list)  # VerifyReport.proved, this process
    tmp_target: Path | None = None  # the converted target under its temp name (removed by the driver's cleanup)
    converted: Path | None = None  # where the converted target's bytes are: tmp_target, or the target
    quick_check: Future[tuple[str, ...] | None] = field(default_factory=Future)  # the snapshot's findings
    backup_job: Future[dict[str, Any]] | None = None  # the backup, started in the background after the snapshot
    backup_started: float = field(default_factory=time.perf_counter)
    backup_started_at: float = field(default_factory=time.time)

    def event(self, name: str, data: dict[str, Any], *, sync: bool = False) -> None:
        """Append an audit event of this run: written now, made durable with the run's other records before its
        next destructive act (the guard syncs) and at its end (``sync``: now)."""
        self.audit.append(name, data, self.rd.id, sync=sync)

    def save_plan(self) -> None:
        """Write the plan to plan.json (what a resume and a report read), unless this process already wrote that
        very plan there (the convert step's proofs seldom change the snapshot step's plan)."""
        assert self.plan is not None
        dump = self.plan.dump()
        if (compact := json.dumps(dump)) != self.plan_written:  # C-encoded: ~10x cheaper than the indented text
            write_text(self.rd.file("plan.json"), json.dumps(dump, indent=2) + "\n")
            self.plan_written = compact

    @property
    def layers(self) -> list[Path]:
        """The backup layers this run writes."""
        return self.mode.layers(self.cfg.backup_layers)

    @property
    def target_engine(self) -> Engine:
        """The target engine with the stand-ins of the app functions the plan keeps objects for (``[app]
        functions``), as the app registers the real ones."""
        return self.engine.with_stand_ins(self.plan.stand_ins) if self.plan else self.engine

    def read_plan(self, snapshot: Path) -> None:
        """The snapshot's schema and its conversion plan for the configured target."""
        cfg = self.cfg
        try:
            self.schema, self.plan = read_plan(snapshot, PlanSettings.of(cfg))
        except NotADatabaseError as err:  # the snapshot is a page-for-page copy: its damage is the source's
            raise SourceDamaged(
                f"{cfg.source_path}: damaged: its page-for-page snapshot {err.message.removeprefix(f'{snapshot}: ')}"
            ) from err

    @property
    def app_switch(self) -> AppSwitch:
        return AppSwitch(self.cfg.app, self.cfg.app_config_path, self.cfg.target_path, self.rd)


# -- snapshot -------------------------------------------------------------------------------------
def preflight(ctx: RunContext) -> None:
    """Refuse, before the snapshot, a target that must not be replaced (the source, a backup, a file the app
    config does not name, one beside a hot journal) and a second rollback: once the app is on sql.js,
    replacing its database would lose what it wrote."""
    ctx.guard.check_target()
    app, opts = ctx.cfg.app, ctx.opts
    current = current_provider(ctx.cfg.app_config_path, app.key)
    if current != app.native_value and not opts.dry_run and not (opts.force and opts.reason):
        raise RiskRefused(
            f"{ctx.cfg.app_config_path.name} has {app.key}={current!r}, not {app.native_value!r}: the app is "
            "not on the native provider, and a rollback now would replace the database it writes to",
            "check `failback status`; switch the app back to native first, or pass --force --reason '…'",
        )


def step_snapshot(ctx: RunContext) -> dict[str, Any]:
    preflight(ctx)
    ctx.sides = observe_sides(ctx.cfg.source_path)  # before the snapshot's read-only open adds a -shm
    ctx.liveness = start_watch(ctx.cfg.source_path, ctx.cfg.assess.liveness_seconds, ctx.sides)
    warm(ctx.engine)  # the target engine's start (Node, sql.js) beside the snapshot, not in the convert step
    ctx.snapshot = take_snapshot(ctx.cfg.source_path, ctx.rd.file("snapshot.sqlite"), ctx.progress)
    ctx.read_plan(ctx.snapshot.path)
    ctx.save_plan()
    return {
        "pages": ctx.snapshot.pages,
        "page_size": ctx.snapshot.page_size,
        "bytes": ctx.snapshot.path.stat().st_size,
        "restarts": ctx.snapshot.restarts,
        "guard": ctx.snapshot.guard.to_json(),
        "schema_sha256": schema_fingerprint(ctx.snapshot.path),
    }


# -- backup ---------------------------------------------------------------------------------------
def step_backup(ctx: RunContext) -> dict[str, Any]:
    """Wait for the background backup (made here when the run resumed before it started); its layers were
    checked there."""
    result = ctx.backup_job.result() if ctx.backup_job is not None else make_backup(ctx)
    ctx.state.step("backup").started = ctx.backup_started_at  # when it really began, in the background
    if ctx.down is not None:  # written by the convert step meanwhile: kept in every layer, as the source is
        carry_over = ctx.rd.file(CARRY_OVER)
        result["carry_over"] = _layered(ctx, carry_over, "carry-over", level=ctx.cfg.backup.zstd_level).to_json()
    return {**result, "background_seconds": round(time.perf_counter() - ctx.backup_started, 3)}


def make_backup(ctx: RunContext) -> dict[str, Any]:
    """The source snapshot (and the file about to be replaced) in every layer, each copy verified."""
    assert ctx.snapshot is not None
    cfg, mode = ctx.cfg, ctx.mode
    need = cfg.backup.min_layers if mode.min_layers is None else mode.min_layers
    kw: dict[str, Any] = {
        "level": cfg.backup.zstd_level if mode.zstd_level is None else mode.zstd_level,
        "threads": min(cfg.backup.threads, 1),  # in the background: leave a core to the conversion
        "digests": mode.backup_digests,  # else deferred with the rest of the proof (paid from this backup)
        "progress": ctx.progress,
    }
    ctx.backup = create_backup(
        ctx.snapshot.path,
        ctx.layers,
        label="source",
        source=cfg.source_path,
        quick_check=ctx.quick_check.result,  # known once the assess step checked the snapshot
        **kw,
    )
    if ctx.backup.verified_layers < need:
        failed = "; ".join(x.error for x in ctx.backup.layers if not x.ok)
        raise BackupError(f"only {ctx.backup.verified_layers} of {need} required backup layer(s) verified: {failed}")
    out: dict[str, Any] = {"source": ctx.backup.to_json()}
    target = cfg.target_path
    crash_point("backup.source-stored")
    if target.exists():  # the file about to be replaced is backed up too
        out["previous_target"] = _layered(ctx, target, "previous-target", **kw).to_json()
        crash_point("backup.previous-target-stored")
    return out


def _layered(ctx: RunContext, path: Path, label: str, **kw: Any) -> BackupResult:
    """``path`` backed up (``label``) in the run's layers, each copy verified; refused below the layers required."""
    need = ctx.cfg.backup.min_layers if ctx.mode.min_layers is None else ctx.mode.min_layers
    made = create_backup(path, ctx.layers, label=label, source=path, **kw)
    if made.verified_layers < need:
        raise BackupError(f"{path} could not be backed up to {need} layer(s)")
    return made


# -- assess ---------------------------------------------------------------------------------------
def step_assess(ctx: RunContext) -> dict[str, Any]:
    assert ctx.snapshot is not None and ctx.schema is not None and ctx.plan is not None
    opts = ctx.opts
    checked = check_source(ctx.snapshot.path, ctx.cfg.source_path, ctx.schema, ctx.plan, opts.repair_fts)
    ctx.quick_check.set_result(checked.problems)
    integrity = checked.to_json()
    if integrity["repaired"]:
        ctx.event("source.repair-fts", integrity)
    ctx.assessment = evaluate(
        gather(
            ctx.cfg,
            ctx.snapshot.path,
            ctx.schema,
            ctx.plan,
            mode=ctx.mode,
            sides=ctx.sides,
            watching=ctx.liveness,
            checked=None if checked.problems else (),  # an intact snapshot is quick_checked once
        )
    )
    if (merges := gathered_merges(ctx.assessment.facts)) is not None:
        ctx.merges = (dict(ctx.plan.collation_map), merges)
    result = {**ctx.assessment.to_json(), "plan": ctx.plan.to_json(), "source_integrity": integrity}
    if not opts.dry_run:
        confirmed: list[bool] = []

        def ask(a: Assessment) -> bool:
            confirmed.append(bool(ctx.confirm and ctx.confirm(a)))
            return confirmed[-1]

        gate(ctx.assessment, yes=opts.yes, force=opts.force, reason=opts.reason, confirm=ask)
        if any(confirmed):
            ctx.event("gate.confirmed", {"level": ctx.assessment.level, "by": "terminal"})
        if opts.force and opts.reason:
            ctx.event("gate.override", {"level": ctx.assessment.level, "reason": opts.reason})
    return result


# -- convert --------------------------------------------------------------------------------------
def step_convert(ctx: RunContext) -> dict[str, Any]:
    assert ctx.snapshot is not None and ctx.plan is not None
    if ctx.cfg.convert.down_to == "previous":
        return convert_down(ctx)
    ctx.plan = proved_plan(ctx.plan, ctx.target_engine, ctx.snapshot.path, ctx.cfg.convert)
    ctx.save_plan()
    ctx.tmp_target = ctx.converted = temp_target(ctx.cfg.target_path, ctx.rd.id)
    merges = ctx.merges[1] if ctx.merges and ctx.merges[0] == ctx.plan.collation_map else None  # same snapshot
    built = build_target(ctx.snapshot.path, ctx.tmp_target, ctx.plan, ctx.progress, merges=merges)
    return {
        "bytes": built.bytes,
        "seconds": built.seconds,
        "decisions": len(ctx.plan.decisions),
        "path": str(ctx.tmp_target),
        "xxh3": file_xxh3(ctx.tmp_target),
    }


def convert_down(ctx: RunContext) -> dict[str, Any]:
    """convert.schema = "previous": the target at the old app's schema, and what it does not know in the run's
    carry-over database (refused, before anything is written, when an old NOT NULL column has no fill value)."""
    assert ctx.snapshot is not None and ctx.schema is not None
    old = old_app_schema(ctx.cfg)
    if old is None:
        raise ConfigError(
            'convert.schema = "previous", but the old app\'s schema is unknown (no [app] schema, no previous target)',
            'set [app] schema to the old app\'s schema, or convert.schema = "source"',
        )
    ctx.down = plan_down(ctx.schema, old[0].schema, ctx.cfg.convert.fill)
    check_down(ctx.down)
    write_text(ctx.rd.file("down.json"), json.dumps(ctx.down.dump(), indent=2) + "\n")
    ctx.tmp_target = ctx.converted = temp_target(ctx.cfg.target_path, ctx.rd.id)
    carry_over = ctx.rd.file(CARRY_OVER)
    started = time.perf_counter()
    sha = write_down(ctx.snapshot.path, ctx.tmp_target, carry_over, ctx.down)
    return {
        "bytes": ctx.tmp_target.stat().st_size,
        "seconds": {"total": round(time.perf_counter() - started, 3)},
        "schema": "previous",
        "old_schema": old[1],
        "decisions": len(ctx.down.decisions),
        "down": [d.to_json() for d in ctx.down.decisions],
        "path": str(ctx.tmp_target),
        "xxh3": file_xxh3(ctx.tmp_target),
        "carry_over": str(carry_over),
        "carry_sha256": sha,
    }


# -- verify ---------------------------------------------------------------------------------------
def step_verify(ctx: RunContext) -> dict[str, Any]:
    """Verification, with the old app's statements run in the same sql.js job (one load of the target)."""
    assert ctx.snapshot is not None and ctx.plan is not None and ctx.converted is not None
    digests = ctx.backup.digests if ctx.backup else None
    repaired = ctx.state.step("assess").result.get("source_integrity", {}).get("repaired", [])
    drift = ctx.assessment.facts.drift if ctx.assessment else []
    statements, prepared = load_statements(ctx.cfg), None
    if ctx.down is not None:  # the target at the old schema: target + carry-over hold all of the source
        carry_over = ctx.rd.file(CARRY_OVER)
        args = (ctx.snapshot.path, ctx.converted, carry_over, ctx.down, ctx.target_engine, ctx.mode.verify_level)
        report = verify_down(*args)
    else:
        with contextlib.suppress(NotADatabaseError):  # a target apsw cannot read: the verification says so
            prepared = prepare_statements(ctx.converted, statements, drift)
        report = verify_conversion(
            ctx.converted,
            ctx.plan,
            ctx.target_engine,
            ctx.snapshot.path,
            ctx.cfg.verify,
            snapshot_digests_=digests if ctx.mode.backup_digests else None,
            level=ctx.mode.verify_level,
            timed=ctx.cfg.benchmark.queries,
            runs=ctx.cfg.benchmark.runs,
            repaired=repaired,
            statements=prepared,
            schema=ctx.schema,  # read from this snapshot by the snapshot step
        )
    if prepared is None and report.ok:  # not run in the verification's job: run on their own
        report.add_statements(check_statements(ctx.target_engine, ctx.converted, statements, drift))
    ctx.verification, ctx.proved = (result := report.to_json()), report.proved
    if not report.ok:
        failed = [c for c in report.statements if not c.ok]
        if failed and report.problems[0] == failed[0].message():  # only statements fail
            raise VerificationFailed(
                f"verification failed: {failed[0].message()}",
                "change the schema so the old app's statements run, or fix [app] statements",
            )
        raise VerificationFailed(f"verification failed: {report.problems[0]}")
    if report.deferred:  # a quick verification: what was skipped is recorded, to be paid by `verify --debt`
        debt = {
            "run": ctx.rd.id,
            "deferred": report.deferred,
            "backup": ctx.backup.id if ctx.backup else None,
            "target": str(ctx.cfg.target_path),
            "target_xxh3": ctx.state.step("convert").result["xxh3"],
            "repaired": repaired,  # FTS indexes repaired (--repair-fts): their search parity is not compared
            "paid": None,
        }
        record_debt(ctx.rd, debt, ctx.audit)
    return result


# -- switch ---------------------------------------------------------------------------------------
def step_switch(ctx: RunContext) -> dict[str, Any]:
    """The converted target into place, then the app config (see ``switch.switch_app``)."""
    assert ctx.snapshot is not None
    built = ctx.state.step("convert").result["xxh3"]
    tables = ctx.backup.manifest.get("tables") if ctx.backup is not None else None
    evidence = SourceEvidence(ctx.snapshot.guard, tables, ctx.state.step("snapshot").result.get("schema_sha256"))
    switched = switch_app(ctx.app_switch, ctx.guard, evidence, built, ctx.tmp_target, ctx.event)
    if ctx.tmp_target is not None and not ctx.tmp_target.exists():  # renamed into place
        ctx.tmp_target, ctx.converted = None, ctx.cfg.target_path
    app = ctx.cfg.app
    write_target_manifest(ctx.cfg.target_path, app.rollback_value, ctx.proved)  # what the web app checks
    return {
        "target": str(ctx.cfg.target_path),
        "config": str(ctx.cfg.app_config_path),
        "from": app.native_value,
        "to": app.rollback_value,
        "how": "switched" if switched else "already switched",
    }


# -- postcheck ------------------------------------------------------------------------------------
def step_postcheck(ctx: RunContext) -> dict[str, Any]:
    """The app's hot queries on the new target vs the recorded baseline (a regression is reported, not
    undone: the data is already proven)."""
    baseline = load_baseline(ctx.cfg.state_path)
    bench = ctx.cfg.benchmark
    if not bench.queries:
        return {"skipped": "no [benchmark] queries configured"}
    measured = (ctx.verification or {}).get("timings")
    if measured:  # timed by the verification's sql.js run on the same bytes: no third load of the file
        now = [Timing(**t) for t in measured]
    else:
        now = time_in_engine(ctx.target_engine, ctx.cfg.target_path, bench.queries, bench.runs)
    rows = compare(baseline or {}, now, bench.max_regression, bench.min_delta_ms)
    regressions = [r for r in rows if not r["ok"]]
    if regressions:
        ctx.event("postcheck.regression", {"queries": [r["sql"] for r in regressions]})
    return {"baseline": bool(baseline), "queries": rows, "ok": not regressions}


STEPS: tuple[tuple[str, Callable[[RunContext], dict[str, Any]]], ...] = (
    ("snapshot", step_snapshot),
    ("assess", step_assess),
    ("convert", step_convert),
    ("backup", step_backup),
    ("verify", step_verify),
    ("switch", step_switch),
    ("postcheck", step_postcheck),
)
"""The steps in the order they run. The backup starts in the background as soon as the snapshot exists and is
joined (layers checked) before verification: it runs on the second core while the target is built."""
