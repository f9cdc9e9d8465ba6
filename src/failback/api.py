"""The public Python API: what the command line does, as functions that return typed results.

Every path parameter accepts a ``str`` or an ``os.PathLike``; a ``config`` parameter is the path of a
failback.toml. Errors are :class:`FailbackError` subclasses, each with a one-line ``message``, a ``hint`` and
the ``exit_code`` the CLI returns for it. A run (``rollback``, ``resume``, ``assess``) does not raise when it
stops: its :class:`RunResult` says how it ended (``status``, ``exit_code``, ``error``), and its report is
written whatever the outcome. Nothing here prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .assess.facts import Assessment, Finding
from .assess.gather import file_big_integers
from .assess.rules import js_integer_finding
from .audit import ChainCheck, verify_chain
from .autorollback.rules import Evaluation
from .autorollback.watcher import CHECK_FIRED, Watcher
from .backup import prune as backup_prune
from .backup import sets as backup_sets
from .backup.prune import PruneResult
from .backup.sets import BackupResult, FolderCheck, RestoreResult
from .config import Config, ConvertConfig, load_config
from .errors import BackupError
from .files import ensure_dir
from .journal import RunState, find_run, list_runs
from .pipeline.debt import DebtPayment, unpaid
from .pipeline.debt import pay_debt as pay_run_debt
from .pipeline.export import ExportResult, PlanSettings, export_database, read_plan, verify_export
from .pipeline.postcheck import Timing
from .pipeline.postcheck import record_baseline as record_engine_baseline
from .pipeline.rollback import Options, Outcome, Rollback, abort_run
from .plan.model import Plan
from .profiles import target_engine
from .report import RENDERERS
from .report.data import audit_anchors, load_report
from .verify import VerifyReport

PathArg = str | os.PathLike[str]
Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as a long phase advances (snapshot, copy, compression, …)."""
StepListener = Callable[[str, str, dict[str, Any]], None]
"""``on_step(step, event, result)``: a run's step started, is done (with its JSON result) or failed."""
Mode = Literal["standard", "emergency"]
Level = Literal["quick", "standard", "deep"]
ReportFormat = Literal["md", "html", "json"]
RunResult = Outcome
Verification = VerifyReport


def _no_progress(phase: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""


# -- conversion -------------------------------------------------------------------------------------
def _settings(
    config: PathArg | None, profile: str | None, allow_drop: Iterable[str], functions: Iterable[str]
) -> tuple[Config | None, PlanSettings]:
    """The config (if any) and the plan settings: ``config``'s, with ``profile`` and the extras given."""
    cfg = load_config(config) if config is not None else None
    s = PlanSettings.of(cfg, profile)
    options = s.options
    if extra := list(allow_drop):
        base = options or ConvertConfig()
        options = base.model_copy(update={"allow_drop": [*base.allow_drop, *extra]})
    return cfg, PlanSettings(s.profile, options, [*(s.functions or ()), *functions])


def export(
    source: PathArg,
    target: PathArg,
    *,
    profile: str | None = None,
    config: PathArg | None = None,
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
    config: PathArg | None = None,
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
    config: PathArg | None = None,
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
    config: PathArg,
    *,
    mode: Mode = "standard",
    yes: bool = False,
    dry_run: bool = False,
    force: bool = False,
    reason: str = "",
    repair_fts: bool = False,
    progress: Progress | None = None,
    on_step: StepListener | None = None,
    confirm: Callable[[Assessment], bool] | None = None,
) -> RunResult:
    """Roll the app of ``config`` back: snapshot, backup, assess, convert, verify, switch, post-check, report.

    ``mode="emergency"``: one backup layer and a quick verification, the rest recorded as debt
    (``pay_debt``). ``dry_run``: snapshot, assess and plan; change nothing. The risk gate proceeds at high
    risk with ``yes`` (or when ``confirm(assessment)`` returns True), at critical risk only with ``force`` and a
    ``reason`` (written to the audit log). Raises only when the run cannot start (e.g. the config does not
    load); once started, how it ended is in the result, and its report is written."""
    path = Path(config)
    options = Options(mode=mode, dry_run=dry_run, yes=yes, force=force, reason=reason, repair_fts=repair_fts)
    return Rollback(load_config(path), path, options, progress, on_step, confirm=confirm).run()


def resume(
    config: PathArg, run: str | None = None, *, progress: Progress | None = None, on_step: StepListener | None = None
) -> RunResult:
    """Continue an interrupted run (default: the newest unfinished one) from its last trusted checkpoint."""
    path = Path(config)
    return Rollback.resume(load_config(path), path, run, progress=progress, on_step=on_step)


def assess(config: PathArg, *, mode: Mode = "standard", progress: Progress | None = None) -> RunResult:
    """Assess the risk of a rollback, changing nothing (a dry run): ``results["assess"]`` holds the level,
    ``go`` (false: the gate would refuse), the findings and the facts behind them."""
    return rollback(config, mode=mode, dry_run=True, progress=progress)


@dataclass(frozen=True)
class Aborted:
    """An aborted run and what was put back."""

    run: str
    undone: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "undone": list(self.undone)}


def abort(config: PathArg, run: str | None = None) -> Aborted:
    """Undo an unfinished run (default: the newest): temp files removed; source, config and target as before it.
    Refuses when the app has written to the new target since the switch (those writes would be lost)."""
    result = abort_run(load_config(config), run)
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


def status(config: PathArg) -> Status:
    """Every run of the app with its steps, the runs owing verification debt, and the protected backups."""
    cfg = load_config(config)
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


def pay_debt(config: PathArg, run: str | None = None) -> DebtPayment:
    """Run the verification an emergency run deferred (default: the newest unpaid one) and record its outcome."""
    cfg = load_config(config)
    return pay_run_debt(cfg, target_engine(cfg.target), run)


@dataclass(frozen=True)
class CheckResult:
    """The evaluations of a ``check`` (each with every rule's ``status``, ``note``, ``streak``, ``values`` and
    ``flapping``, and the decision) and whether a rollback rule fired (``exit_code`` 3, as `failback check`)."""

    evaluations: tuple[Evaluation, ...]
    fired: bool

    @property
    def exit_code(self) -> int:
        return CHECK_FIRED if self.fired else 0

    def to_json(self) -> dict[str, Any]:
        """The document `failback check --json` prints."""
        evaluations = [ev.to_json() for ev in self.evaluations]
        return {
            "samples": len(evaluations),
            "fired": self.fired,
            "exit_code": self.exit_code,
            "evaluations": evaluations,
        }


def check(config: PathArg, *, samples: int = 1) -> CheckResult:
    """Evaluate [triggers] ``samples`` times, an ``interval`` apart, as `failback check` does: never rolls back,
    whatever fires (audited with ``via: check``). Only fresh samples count (see the runbook's trigger section)."""
    cfg = load_config(config)
    watcher = Watcher(cfg, Path(config), dry_run=True, via="check")
    evaluations = []
    for n in range(samples):
        if n:
            time.sleep(cfg.triggers.interval)
        evaluations.append(watcher.evaluate())
    return CheckResult(tuple(evaluations), any(ev.decision.rollback_fired for ev in evaluations))


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


def record_baseline(config: PathArg, *, database: PathArg | None = None) -> Baseline:
    """Time ``[benchmark] queries`` in the target engine on ``database`` (default: ``[target] path``) and on the
    live source, and store them in the state folder as the baseline."""
    cfg = load_config(config)
    data = record_engine_baseline(cfg, target_engine(cfg.target), Path(database) if database is not None else None)
    queries = tuple(Timing(**q) for q in data["queries"])
    return Baseline(data["recorded"], data["engine"], data["runs"], data["database"], queries, data["metrics"])


def verify_audit(config: PathArg) -> ChainCheck:
    """Check the audit log's hash chain, and its end against the head and every run report's copy of it."""
    cfg = load_config(config)
    return verify_chain(cfg.state.audit_log, audit_anchors(cfg.state_path))


def report(config: PathArg, run: str | None = None, *, format: ReportFormat = "md") -> str:
    """The report of ``run`` (an id or a unique prefix; default: the newest run) as Markdown, one self-contained
    HTML page, or JSON; rendered from the run directory, with the audit events recorded since."""
    cfg = load_config(config)
    state, data = load_report(find_run(cfg.state_path, run), cfg.state.audit_log)
    return RENDERERS[format](state, data)


# -- backups ----------------------------------------------------------------------------------------
def create_backup(config: PathArg, *, label: str = "manual", progress: Progress | None = None) -> BackupResult:
    """Snapshot the source and store a verified, compressed copy in every backup folder; raises BackupError when
    fewer copies than ``[backup] min_layers`` verified."""
    cfg = load_config(config)
    result = backup_sets.backup_source(cfg, label, progress or _no_progress)
    if result.verified_layers < cfg.backup.min_layers:
        failed = "; ".join(f"{layer.folder}: {layer.error}" for layer in result.layers if not layer.ok)
        raise BackupError(
            f"backup {result.id}: only {result.verified_layers} of {cfg.backup.min_layers} required layer(s) "
            f"verified ({failed})"
        )
    return result


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


def list_backups(config: PathArg) -> list[StoredBackup]:
    """Every backup with a valid manifest, newest first."""
    cfg = load_config(config)
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


def verify_backup(config: PathArg, backup: str | None = None, *, deep: bool = False) -> BackupCheck:
    """Check every stored copy of ``backup`` (an id or a unique prefix; None: every backup) against its
    checksums; ``deep`` also decompresses it, runs integrity_check and compares the content digests."""
    cfg = load_config(config)
    if backup is None:
        folders = [f for e in backup_sets.list_backups(cfg.backup_layers) for f in e["folders"]]
    else:
        folders = backup_sets.find_backup(cfg.backup_layers, backup)
    work = ensure_dir(cfg.state.tmp)
    return BackupCheck({str(f): backup_sets.check_folder(f, deep, work) for f in folders})


def restore_backup(
    config: PathArg, backup: str, dest: PathArg, *, force: bool = False, progress: Progress | None = None
) -> RestoreResult:
    """Restore ``backup`` to ``dest`` from the first stored copy that passes every check (both checksums,
    integrity_check, the content digests); refuses to overwrite ``dest`` (or its side files) unless ``force``."""
    cfg = load_config(config)
    return backup_sets.restore_backup(cfg.backup_layers, backup, Path(dest), force, progress or _no_progress)


def prune_backups(config: PathArg, *, dry_run: bool = False) -> PruneResult:
    """Delete the backups the retention rules (``keep_last``, ``keep_within``, ``keep_daily``) do not keep; never
    one a resume, an abort or unpaid verification debt needs, nor the newest verified backup of each label."""
    return backup_prune.prune_backups(load_config(config), dry_run)
