"""The public Python API: what the command line does, as functions that return typed results.

Every path parameter accepts a ``str`` or an ``os.PathLike``; a ``config`` parameter is the path of a
failback.toml. Errors are :class:`FailbackError` subclasses, each with a one-line ``message``, a ``hint`` and
the ``exit_code`` the CLI returns for it. A run (``rollback``, ``resume``, ``assess``) does not raise when it
stops: its :class:`RunResult` says how it ended (``status``, ``exit_code``, ``error``), and its report is
written whatever the outcome. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from .assess.facts import Assessment, Finding
from .assess.gather import file_big_integers, shared_disk_mirrors
from .assess.rules import js_integer_finding, shared_disk_finding
from .audit import ChainCheck, verify_chain
from .autorollback.hold import Hold, place_hold, release_hold
from .autorollback.rules import Evaluation
from .autorollback.watcher import CHECK_FIRED, Stop, Watcher, WatchResult
from .backup import prune as backup_prune
from .backup import sets as backup_sets
from .backup.prune import PruneResult
from .backup.sets import BackupResult, FolderCheck, RestoreResult
from .config import DEFAULT_NAME, DEFAULT_PROFILE, Config, ConvertConfig, load_config
from .demo import create_demo as create_demo_app
from .errors import BackupError
from .files import ensure_dir, write_text
from .fleet.demo import create_fleet
from .fleet.journal import FleetJournal, FleetState, new_fleet
from .fleet.manifest import FleetPlan, load_manifest, plan_fleet
from .fleet.report import RENDERERS as FLEET_RENDERERS
from .fleet.report import fleet_summary as summarise_fleet
from .fleet.waves import DEFAULT_MAX_FAILURES, DEFAULT_WAVES
from .journal import RunState, find_run, list_runs
from .metrics import serve_metrics
from .pipeline.debt import DebtPayment, unpaid
from .pipeline.debt import pay_debt as pay_run_debt
from .pipeline.drill import DrillResult, run_drill
from .pipeline.export import ExportResult, PlanSettings, export_database, read_plan, verify_export
from .pipeline.postcheck import Timing
from .pipeline.postcheck import record_baseline as record_engine_baseline
from .pipeline.rollback import Options, Outcome, Rollback, abort_run
from .pipeline.summary import step_line
from .plan.model import Plan
from .profiles import Profile, probe_engine, target_engine
from .report import RENDERERS
from .report.data import audit_anchors, load_report
from .scaffold import init_config
from .scaffold.propose import NativeSurvey
from .verify import VerifyReport

PathArg = str | os.PathLike[str]
ConfigArg = PathArg | Config
"""A failback.toml: its path, or a loaded :class:`Config` (``load_config(path, tenant=...)`` for a fleet template)."""
Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as a long phase advances (snapshot, copy, compression, …)."""
StepListener = Callable[[str, str, dict[str, Any]], None]
"""``on_step(step, event, result)``: a run's step started, is done (with its JSON result) or failed."""
Mode = Literal["standard", "emergency"]
Level = Literal["quick", "standard", "deep"]
ReportFormat = Literal["md", "html", "json"]
ReportSet = Literal["all", "json"]
RunResult = Outcome
Verification = VerifyReport


def _load(config: ConfigArg) -> Config:
    """``config`` loaded (a path), or as given (a Config)."""
    return config if isinstance(config, Config) else load_config(config)


def _no_progress(phase: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""


# -- conversion -------------------------------------------------------------------------------------
def _settings(
    config: ConfigArg | None, profile: str | None, allow_drop: Iterable[str], functions: Iterable[str]
) -> tuple[Config | None, PlanSettings]:
    """The config (if any) and the plan settings: ``config``'s, with ``profile`` and the extras given."""
    cfg = _load(config) if config is not None else None
    s = PlanSettings.of(cfg, profile)
    options = s.options
    if extra := list(allow_drop):
        base = options or ConvertConfig()
        options = base.model_copy(update={"allow_drop": [*base.allow_drop, *extra]})
    return cfg, replace(s, options=options, functions=[*(s.functions or ()), *functions])


def export(
    source: PathArg,
    target: PathArg,
    *,
    profile: str | None = None,
    config: ConfigArg | None = None,
    allow_drop: Iterable[str] = (),
    functions: Iterable[str] = (),
    force: bool = False,
    repair_fts: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Convert ``source`` into a database the target engine accepts, verify it in apsw and in the target engine,
    then write ``target`` (never partially; an existing ``target`` only with ``force``). Works on a snapshot:
    ``source`` is only read, also while its app writes. Raises ``VerificationFailed`` (nothing written),
    ``UnsupportedSchemaError`` for an object the target cannot hold and that may not be dropped, and
    ``SourceDamaged`` for a damaged source (``repair_fts``: accept damage only in FTS indexes the target
    rebuilds).

    ``profile``: the target's capability profile (a name or a file; default: the config's ``[target]
    profile``, else sql.js 1.16.0). ``config``: take ``[convert]``, ``[verify]`` and ``[app] functions``
    from this failback.toml. ``allow_drop``: objects the target cannot hold that may be dropped (added to
    ``[convert] allow_drop``); ``functions``: SQL functions the app registers itself, as "name/arity"
    (added to ``[app] functions``)."""
    cfg, settings = _settings(config, profile, allow_drop, functions)
    return export_database(
        Path(source), Path(target), cfg=cfg, settings=settings, force=force, progress=progress, repair_fts=repair_fts
    )


def verify(
    source: PathArg,
    target: PathArg,
    *,
    profile: str | None = None,
    config: ConfigArg | None = None,
    allow_drop: Iterable[str] = (),
    functions: Iterable[str] = (),
    level: Level = "standard",
    browser: bool = False,
) -> Verification:
    """Prove ``target`` holds ``source``'s data and the schema export plans for it, in apsw and in the target
    engine: row counts and content digests of every table, integrity, foreign keys, search parity, each view
    and trigger. A difference is reported (``ok`` false, ``differences``), never raised. ``level``: quick,
    standard or deep. ``browser`` (or the config's ``[verify] browser``): the target engine's checks run again
    in headless Chromium and must give the same results (``browser`` in the result: its time, the tab's peak
    memory, a warning above what mobile browsers hold). ``profile``, ``config``, ``allow_drop``,
    ``functions``: as export was given them."""
    cfg, settings = _settings(config, profile, allow_drop, functions)
    in_browser = browser or (cfg is not None and cfg.verify.browser)
    return verify_export(Path(source), Path(target), settings, level=level, browser=in_browser)


def plan(
    source: PathArg,
    *,
    profile: str | None = None,
    config: ConfigArg | None = None,
    allow_drop: Iterable[str] = (),
    functions: Iterable[str] = (),
) -> Plan:
    """What each schema object of ``source`` becomes in the target, and why (``Plan.decisions``); reads
    ``source`` only. ``profile``, ``config``, ``allow_drop``, ``functions``: as for ``export``."""
    s = _settings(config, profile, allow_drop, functions)[1]
    return read_plan(Path(source), s)[1]


def data_findings(source: PathArg) -> list[Finding]:
    """What the data of ``source`` asks of the app, beyond its schema: columns holding integers beyond
    ±(2^53−1), which sql.js rounds unless the app reads them as BigInt. Reads ``source`` only."""
    big = file_big_integers(Path(source))
    return [js_integer_finding(big)] if big else []


# -- runs -------------------------------------------------------------------------------------------
def rollback(
    config: ConfigArg,
    *,
    mode: Mode = "standard",
    yes: bool = False,
    dry_run: bool = False,
    force: bool = False,
    reason: str = "",
    repair_fts: bool = False,
    reports: ReportSet = "all",
    progress: Progress | None = None,
    on_step: StepListener | None = None,
    confirm: Callable[[Assessment], bool] | None = None,
) -> RunResult:
    """Roll the app of ``config`` back: snapshot, backup, assess, convert, verify, switch, post-check, report.

    ``mode="emergency"``: one backup layer and a quick verification, the rest recorded as debt
    (``pay_debt``). ``dry_run``: snapshot, assess and plan; change nothing. The risk gate proceeds at high
    risk with ``yes`` (or when ``confirm(assessment)`` returns True), at critical risk only with ``force`` and a
    ``reason`` (written to the audit log). ``reports="json"`` writes report.json alone (a fleet's tenants do;
    ``failback report`` renders it as Markdown or HTML on demand), ``"all"`` report.md and report.html too.
    Raises only when the run cannot start (e.g. the config does not load); once started, how it ended is in
    the result, and its report is written."""
    cfg = _load(config)
    options = Options(
        mode=mode, dry_run=dry_run, yes=yes, force=force, reason=reason, repair_fts=repair_fts, reports=reports
    )
    return Rollback(cfg, cfg.file, options, progress, on_step, confirm=confirm).run()


def resume(
    config: ConfigArg, run: str | None = None, *, progress: Progress | None = None, on_step: StepListener | None = None
) -> RunResult:
    """Continue an interrupted run (default: the newest unfinished one) from its last trusted checkpoint."""
    cfg = _load(config)
    return Rollback.resume(cfg, cfg.file, run, progress=progress, on_step=on_step)


def assess(config: ConfigArg, *, mode: Mode = "standard", progress: Progress | None = None) -> RunResult:
    """Assess the risk of a rollback, changing nothing (a dry run): ``results["assess"]`` holds the level,
    ``go`` (false: the gate would refuse), the findings and the facts behind them."""
    return rollback(config, mode=mode, dry_run=True, progress=progress)


def drill(config: ConfigArg, *, folder: PathArg | None = None, progress: Progress | None = None) -> DrillResult:
    """Rehearse a rollback of ``config``'s app on copies: snapshot (the source is only read), backup, assess,
    convert, verify, the old app's statements, the switch and the post-check, all on copies in ``folder``
    (default: a new folder under the state folder's ``drills/``). Nothing of the app is switched or changed
    (its files' sha256 are compared before and after). The drill report (``report_path``: time per step against
    the estimate, what would have blocked, what the on-call person would have had to decide) is written there,
    and a ``drill`` event in the audit log. ``exit_code``: 0 when a rollback now would go through, 3 when it
    would have been blocked."""
    cfg = _load(config)
    return run_drill(cfg, cfg.file, folder=Path(folder) if folder else None, progress=progress)


@dataclass(frozen=True)
class Aborted:
    """An aborted run and what was put back."""

    run: str
    undone: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "undone": list(self.undone)}


def abort(config: ConfigArg, run: str | None = None) -> Aborted:
    """Undo an unfinished run (default: the newest): temp files removed; source, config and target as before it.
    Refuses when the app has written to the new target since the switch (those writes would be lost)."""
    result = abort_run(_load(config), run)
    return Aborted(result["run"], tuple(result["undone"]))


@dataclass(frozen=True)
class ProtectedBackup:
    """A backup prune must keep whatever the retention rules say: whether a backup folder holds it, and why."""

    id: str
    present: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "present": self.present, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Status:
    """The runs (newest first), those whose verification debt is unpaid, and the backups prune must keep."""

    runs: tuple[RunState, ...]
    unpaid: frozenset[str]
    protected: tuple[ProtectedBackup, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [{**r.to_json(), "verification_debt_unpaid": r.id in self.unpaid} for r in self.runs],
            "protected_backups": [p.to_json() for p in self.protected],
        }


def status(config: ConfigArg) -> Status:
    """Every run of the app with its steps, the runs owing verification debt, and the protected backups."""
    cfg = _load(config)
    entries = backup_sets.list_backups(cfg.backup_layers)
    stored = {e["manifest"]["id"] for e in entries}
    return Status(
        tuple(rd.load() for rd in list_runs(cfg.state_path)),
        frozenset(rd.id for rd in unpaid(cfg.state_path)),
        tuple(
            ProtectedBackup(bid, bid in stored, tuple(reasons))
            for bid, reasons in backup_prune.protected_backups(entries, cfg.state_path).items()
        ),
    )


def pay_debt(config: ConfigArg, run: str | None = None) -> DebtPayment:
    """Run the verification an emergency run deferred (default: the newest unpaid one) and record its outcome."""
    cfg = _load(config)
    return pay_run_debt(cfg, target_engine(cfg.target), run)


@dataclass(frozen=True)
class Baseline:
    """How the app's benchmark queries ran in the target engine (each query's p50/p95 and rows) and on the live
    source (``metrics``): what the post-check of a rollback compares against."""

    recorded: str
    engine: str
    runs: int
    database: str
    queries: tuple[Timing, ...]
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "queries": [asdict(q) for q in self.queries]}


def record_baseline(config: ConfigArg, *, database: PathArg | None = None) -> Baseline:
    """Time ``[benchmark] queries`` in the target engine on ``database`` (default: ``[target] path``) and on the
    live source, and store them in the state folder as the baseline."""
    cfg = _load(config)
    data = record_engine_baseline(cfg, target_engine(cfg.target), Path(database) if database is not None else None)
    queries = tuple(Timing(**q) for q in data["queries"])
    return Baseline(data["recorded"], data["engine"], data["runs"], data["database"], queries, data["metrics"])


def verify_audit(config: ConfigArg) -> ChainCheck:
    """Check the audit log's hash chain, and its end against the head and every run report's copy of it."""
    cfg = _load(config)
    return verify_chain(cfg.state.audit_log, audit_anchors(cfg.state_path))


def report(
    config: ConfigArg, run: str | None = None, *, format: ReportFormat = "md", output: PathArg | None = None
) -> str:
    """The report of ``run`` (an id or a unique prefix; default: the newest run) as Markdown, one self-contained
    HTML page, or JSON; rendered from the run directory, with the audit events recorded since. ``output``: also
    write it to this file (atomically)."""
    cfg = _load(config)
    state, data = load_report(find_run(cfg.state_path, run), cfg.state.audit_log)
    text = RENDERERS[format](state, data)
    if output is not None:
        write_text(Path(output), text, 0o644)
    return text


def step_summary(step: str, result: dict[str, Any]) -> str:
    """What a run's ``step`` did, in one line, from the JSON ``result`` an ``on_step`` listener receives with its
    "done" event (the line `failback rollback` prints for each step)."""
    return step_line(step, result)


# -- setting up -------------------------------------------------------------------------------------
def init(
    native: PathArg | None = None, output: PathArg = DEFAULT_NAME, *, profile: str = DEFAULT_PROFILE
) -> NativeSurvey:
    """Inspect the native database ``native`` (default: the one SQLite database in the current folder; only read)
    and write a commented failback.toml to ``output`` for the target ``profile``: its FTS tables with search terms
    drawn from their text, the collations used, the sync layouts detected and the app's provider setting when a
    .env or .json beside it holds one. Never replaces ``output`` (InputError when it exists)."""
    return init_config(Path(native) if native is not None else None, Path(output), profile)


def probe(engine: str = "sqljs", *, engine_path: PathArg | None = None, output: PathArg | None = None) -> Profile:
    """Probe a real engine (``sqljs`` or ``sqlite``) for its capabilities (compile options, version, modules,
    functions) and return its profile; ``engine_path``: another sql.js build (a folder holding sql-wasm.js and
    sql-wasm.wasm), recorded in the profile; ``output``: also write the profile there as TOML."""
    prof = probe_engine(engine, Path(engine_path) if engine_path is not None else None)
    if output is not None:
        write_text(Path(output), prof.to_toml(), 0o644)
    return prof


def create_demo(directory: PathArg, *, notes: int = 3000) -> Path:
    """Build (or re-build) a GRDB-style sample app in ``directory``: native.sqlite (WAL, FTS5) with ``notes``
    notes, app.env, the pre-migration sql.js file and a failback.toml, whose path is returned."""
    return create_demo_app(Path(directory), notes)


# -- automatic rollback -----------------------------------------------------------------------------
RollbackRunner = Callable[[Mode], RunResult]
"""``run_rollback(mode)``: how ``watch`` runs the rollback a rule decided on (``yes`` given: a firing rule
pre-authorises a high risk)."""


@dataclass(frozen=True)
class CheckResult:
    """What ``check`` evaluated: the samples taken, whether a rollback rule fired, and each evaluation."""

    fired: bool
    evaluations: tuple[Evaluation, ...]

    @property
    def samples(self) -> int:
        """How many samples were evaluated."""
        return len(self.evaluations)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 3 when a rollback rule fired, else 0."""
        return CHECK_FIRED if self.fired else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "fired": self.fired,
            "exit_code": self.exit_code,
            "evaluations": [ev.to_json() for ev in self.evaluations],
        }


def check(
    config: ConfigArg, *, samples: int = 1, on_evaluation: Callable[[Evaluation], None] | None = None
) -> CheckResult:
    """Evaluate ``[triggers]`` ``samples`` times, an interval apart, and say whether a rollback rule fired; never
    rolls back (a hold changes nothing here). ``on_evaluation(ev)`` is called as each evaluation is made."""
    cfg = _load(config)
    watcher = Watcher(cfg, cfg.file, dry_run=True, via="check")
    evaluations: list[Evaluation] = []
    for n in range(samples):
        if n:
            time.sleep(cfg.triggers.interval)
        ev = watcher.evaluate()
        evaluations.append(ev)
        if on_evaluation:
            on_evaluation(ev)
    return CheckResult(any(ev.decision.rollback_fired for ev in evaluations), tuple(evaluations))


def watch(
    config: ConfigArg,
    *,
    max_samples: int | None = None,
    dry_run: bool = False,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    run_rollback: RollbackRunner | None = None,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
) -> WatchResult:
    """Evaluate ``[triggers]`` every interval and roll back (``run_rollback``, default: ``rollback(config,
    mode=mode, yes=True)``) when a rollback rule fires, unless ``dry_run`` or a hold; ends after ``max_samples``,
    an automatic rollback (its outcome in the result) or SIGINT/SIGTERM (handled while it runs: call it from the
    main thread), which abandons a sample being read or interrupts a rollback in progress (resumable).
    ``metrics_port``: also serve failback's own metrics at ``http://metrics_address:metrics_port/metrics``."""
    cfg = _load(config)
    path = cfg.file

    def rollback_with(opts: Options) -> Outcome:
        if run_rollback is None:
            return Rollback(cfg, path, opts).run()
        return run_rollback(opts.mode)  # type: ignore[arg-type]

    with Stop().installed() as stop, contextlib.ExitStack() as serving:
        watcher = Watcher(cfg, path, dry_run=dry_run, run_rollback=rollback_with, stop=stop)
        if metrics_port is not None:
            serving.enter_context(serve_metrics(cfg, lambda: watcher.last, metrics_address, metrics_port))
        return watcher.watch(max_samples, on_evaluation)


def hold(config: ConfigArg, reason: str) -> Hold:
    """Block automatic rollbacks (``watch``) until ``release``, for ``reason``; a manual rollback still works."""
    return place_hold(_load(config), reason)


def release(config: ConfigArg) -> Hold | None:
    """Lift the hold (returned; None when there was none): automatic rollbacks may run again."""
    return release_hold(_load(config))


# -- backups ----------------------------------------------------------------------------------------
def create_backup(
    config: ConfigArg,
    *,
    label: str = "manual",
    progress: Progress | None = None,
    on_result: Callable[[BackupResult], None] | None = None,
) -> BackupResult:
    """Snapshot the source and store a verified, compressed copy in every backup folder; raises BackupError when
    fewer copies than ``[backup] min_layers`` verified. ``on_result(result)`` is called before that check, so
    each folder's outcome can be shown also when the backup falls short."""
    cfg = _load(config)
    result = backup_sets.backup_source(cfg, label, progress or _no_progress)
    if on_result:
        on_result(result)
    if result.verified_layers < cfg.backup.min_layers:
        failed = "; ".join(f"{layer.folder}: {layer.error}" for layer in result.layers if not layer.ok)
        raise BackupError(
            f"backup {result.id}: only {result.verified_layers} of {cfg.backup.min_layers} required layer(s) "
            f"verified ({failed})"
        )
    return result


def backup_warnings(config: ConfigArg) -> list[Finding]:
    """What weakens the backups of ``config`` without stopping them: mirrors on the primary folder's file system
    (one disk failure loses both)."""
    cfg = _load(config)
    return [shared_disk_finding(m) for m in shared_disk_mirrors(cfg.backup_layers)]


@dataclass(frozen=True)
class StoredBackup:
    """One backup: its manifest and the backup folders holding a copy."""

    manifest: dict[str, Any]
    folders: tuple[str, ...]

    @property
    def id(self) -> str:
        """The backup's id (sortable: UTC time, label, random suffix)."""
        return str(self.manifest["id"])

    @property
    def label(self) -> str:
        """The label it was made with (``manual``, or the run's)."""
        return str(self.manifest["label"])

    def to_json(self) -> dict[str, Any]:
        keys = ("id", "label", "created", "source", "bytes", "sha256", "user_version")
        return {**{k: self.manifest.get(k) for k in keys}, "folders": list(self.folders)}


def list_backups(config: ConfigArg) -> list[StoredBackup]:
    """Every backup with a valid manifest, newest first."""
    cfg = _load(config)
    return [
        StoredBackup(e["manifest"], tuple(map(str, e["folders"]))) for e in backup_sets.list_backups(cfg.backup_layers)
    ]


@dataclass(frozen=True)
class BackupCheck:
    """What checking stored copies found, by folder (a copy without problems is verified)."""

    copies: dict[str, FolderCheck]

    @property
    def ok(self) -> bool:
        """Every copy checked is verified."""
        return not any(c.problems for c in self.copies.values())

    def to_json(self) -> dict[str, Any]:
        return {folder: c.problems for folder, c in self.copies.items()}


def verify_backup(config: ConfigArg, backup: str | None = None, *, deep: bool = False) -> BackupCheck:
    """Check every stored copy of ``backup`` (an id or a unique prefix; None: every backup) against its
    checksums; ``deep`` also decompresses it, runs integrity_check and compares the content digests."""
    cfg = _load(config)
    if backup is None:
        folders = [f for e in backup_sets.list_backups(cfg.backup_layers) for f in e["folders"]]
    else:
        folders = backup_sets.find_backup(cfg.backup_layers, backup)
    work = ensure_dir(cfg.state.tmp)
    return BackupCheck({str(f): backup_sets.check_folder(f, deep, work) for f in folders})


def restore_backup(
    config: ConfigArg, backup: str, dest: PathArg, *, force: bool = False, progress: Progress | None = None
) -> RestoreResult:
    """Restore ``backup`` to ``dest`` from the first stored copy that passes every check (both checksums,
    integrity_check, the content digests); refuses to overwrite ``dest`` (or its side files) unless ``force``."""
    cfg = _load(config)
    return backup_sets.restore_backup(cfg.backup_layers, backup, Path(dest), force, progress or _no_progress)


def prune_backups(config: ConfigArg, *, dry_run: bool = False) -> PruneResult:
    """Delete the backups the retention rules (``keep_last``, ``keep_within``, ``keep_daily``) do not keep; never
    one a resume, an abort or unpaid verification debt needs, nor the newest verified backup of each label."""
    return backup_prune.prune_backups(_load(config), dry_run)


# -- fleets -----------------------------------------------------------------------------------------
FleetListener = Callable[[int, Any, FleetState], None]
"""``on_result(wave, result, state)``: a wave (from 0) started (``result`` None) or one of its tenants finished."""


def fleet_plan(manifest: PathArg) -> FleetPlan:
    """Check every tenant of the fleet ``manifest`` (CSV, JSONL or TOML; docs/fleet.md) before anything runs: its
    config loads, its files exist, and no tenant's file or folder is another's. Reads only."""
    return plan_fleet(load_manifest(Path(manifest)))


def fleet_run(
    manifest: PathArg,
    *,
    state: PathArg = ".failback-fleet",
    waves: Iterable[str] = DEFAULT_WAVES,
    max_failures: str = DEFAULT_MAX_FAILURES,
    pause_between: bool = False,
    yes: bool = False,
    workers: int = 2,
    threads: int = 2,
    scheduler: str | None = None,
    approval_timeout: float | None = None,
    on_result: FleetListener | None = None,
) -> FleetState:
    """Roll every tenant of ``manifest`` back, wave by wave, on Dask: an embedded cluster of ``workers`` processes
    running ``threads`` tenants at a time each, or the scheduler at ``scheduler`` (tcp://HOST:PORT). Refuses
    (ConfigError) when `fleet_plan` finds a problem.
    The fleet's journal and audit log go to the folder ``state``; the returned state's ``status`` is ``done``,
    ``halted`` (a wave's failures exceeded ``max_failures``) or ``awaiting-approval`` (``pause_between`` waited
    ``approval_timeout`` seconds for `fleet_approve`). ``yes``: each tenant's run proceeds at high risk."""
    from .fleet.runner import open_client, run_fleet  # Dask distributed: about a second to import, fleets only

    journal = FleetJournal(Path(state))
    fleet = new_fleet(journal, Path(manifest), list(waves), max_failures, pause_between, yes)
    with open_client(workers, scheduler, threads) as client:  # a scheduler that does not answer: no journal written
        journal.start(fleet)
        return run_fleet(journal, client, on_result, approval_timeout)


def fleet_resume(
    state: PathArg = ".failback-fleet",
    *,
    workers: int = 2,
    threads: int = 2,
    scheduler: str | None = None,
    approval_timeout: float | None = None,
    on_result: FleetListener | None = None,
) -> FleetState:
    """Finish the fleet run in ``state``: tenants already switched, refused or failed are not run again; one cut
    off mid-run continues through the per-database ``resume``. Same arguments and result as ``fleet_run``."""
    from .fleet.runner import open_client, run_fleet  # Dask distributed: about a second to import, fleets only

    with open_client(workers, scheduler, threads) as client:
        return run_fleet(FleetJournal(Path(state)), client, on_result, approval_timeout)


def fleet_status(state: PathArg = ".failback-fleet") -> FleetState:
    """Where the fleet run in ``state`` stands: its status, waves and every tenant's state and outcome."""
    return FleetJournal(Path(state)).load()


def fleet_approve(state: PathArg, wave: int) -> None:
    """Let ``wave`` (from 1) start after a pause, or go on although its failures exceed the budget."""
    FleetJournal(Path(state)).approve(wave)


def fleet_report(state: PathArg = ".failback-fleet", *, format: ReportFormat = "md") -> str:
    """The fleet report as Markdown, one self-contained HTML page or JSON: outcome counts per wave, a histogram of
    per-tenant seconds, the tenants not switched with their one-line errors and the command to run next."""
    return FLEET_RENDERERS[format](fleet_status(state))


def fleet_summary(state: FleetState) -> dict[str, Any]:
    """A fleet's state as the JSON of `fleet status --json` and the report: counts per wave, durations, the tenants
    not switched, and ``next``: what the operator does next."""
    return summarise_fleet(state)


def create_demo_fleet(directory: PathArg, tenants: int, *, notes: int = 300, corrupt: int = 0) -> Path:
    """Build a demo fleet of ``tenants`` sample apps in ``directory`` (``corrupt`` of them with a damaged source
    database) and return its manifest (fleet.csv)."""
    return create_fleet(Path(directory), tenants, notes=notes, corrupt=corrupt)
