"""Carry out a conversion plan: build the target database from a snapshot, inside SQLite.

Rows move by ATTACH + INSERT…SELECT (never through Python). Tables copied with the transfer optimisation
get their indexes first (B-trees are copied without sorting); every other index, FTS index and trigger is
built after the data. On a snapshot of :data:`SIDE_MIN_BYTES` or more, the FTS3/FTS4 indexes are built from the
snapshot by a second process while this one copies the rows (:mod:`.fts_side`), then their shadow tables are
copied in. The target is written under a temp name; the caller publishes it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from ..assess.gather import collation_merges
from ..config import DEFAULT_PROFILE, ROLLBACK_VALUE, Config, ConvertConfig, VerifyConfig
from ..db.collations import CollationMerge
from ..db.connect import (
    connect,
    database_error,
    open_source,
    pragma,
    quote,
    readonly_uri,
    register_stand_ins,
    run_script,
)
from ..db.integrity import SourceIntegrity, check_source
from ..db.schema import Schema, created_object, read_schema
from ..db.sqltext import parse_virtual_table, significant, split_option, tokenize
from ..engines import Engine, browser_twin
from ..errors import (
    EnvironmentFailure,
    FailbackError,
    InputError,
    NotADatabaseError,
    UnsupportedSchemaError,
    VerificationFailed,
    from_os_error,
)
from ..files import ensure_dir, remove_quietly
from ..guard import FTS_SIDE, Protected, check_replaceable, publish_over, remove_stale_folders, temp_folder
from ..plan.model import Decision, Plan
from ..plan.planner import UserVersion, plan_conversion
from ..plan.proofs import apply_proofs, created_name
from ..profiles import engine_for, load_profile
from ..snapshot import take_snapshot
from ..verify import TableCheck, VerifyReport, verify_target
from .fts_side import SHADOWS, SideBuild, SideTable
from .target_manifest import write_target_manifest

Progress = Callable[[str, int, int], None]
# A smaller snapshot builds its FTS indexes in this process: the side process costs ~0.1 s (start, ATTACH, the
# shadow tables' copy) and saves the copy's and the indexes' time (~2 s/GB) when the other core is free.
SIDE_MIN_BYTES = 64 * 2**20
SIDE_OPTIONS = {"content", "tokenize", "prefix", "notindexed", "order", "matchinfo"}  # FTS4 options of a side build


@dataclass
class BuildResult:
    """Timings of the build phases (seconds) and the target's size."""

    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0


def check_refused(plan: Plan) -> None:
    """Raise the one-line refusal (exit 3) naming every object the plan refuses, with the first one's reason."""
    if plan.refused:
        names = ", ".join(f"{d.kind} {d.name!r}" for d in plan.refused)
        raise UnsupportedSchemaError(f"the target cannot hold {names}: {plan.refused[0].reason}")


def build_target(
    snapshot: Path,
    dest: Path,
    plan: Plan,
    progress: Progress | None = None,
    *,
    side_min_bytes: int = SIDE_MIN_BYTES,
    merges: Sequence[CollationMerge] | None = None,
) -> BuildResult:
    """Create ``dest`` (must not exist) from ``snapshot`` following ``plan``. On failure ``dest`` is removed.
    A snapshot of ``side_min_bytes`` or more has its FTS3/FTS4 indexes built beside the copy (:mod:`.fts_side`).
    ``merges``: the rows of ``snapshot`` that ``plan.collation_map`` merges, when the caller found them already
    (a run's assess step); else they are looked for here. Any refuses the build."""
    check_refused(plan)
    if merges := _collation_merges(snapshot, plan) if merges is None else merges:
        raise UnsupportedSchemaError(merges[0].message(), merges[0].fix())
    result = BuildResult()
    remove_quietly(dest, Path(str(dest) + "-journal"))
    try:  # created here, not by SQLite, so a read-only or full folder is named with its reason
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as err:
        raise from_os_error(err, f"cannot create {dest}") from err
    conn = connect(dest, create=True)
    try:
        with _side_folder(dest, snapshot, plan, side_min_bytes) as side_dir:
            _build(conn, snapshot, plan, result, progress or (lambda *_: None), side_dir)
    except apsw.FullError as err:
        conn.close()
        remove_quietly(dest, Path(str(dest) + "-journal"))
        raise EnvironmentFailure(f"cannot write {dest}: disk full") from err
    except (apsw.CorruptError, apsw.NotADBError) as err:  # the snapshot (a page-for-page copy) is damaged
        conn.close()
        remove_quietly(dest, Path(str(dest) + "-journal"))
        raise database_error(snapshot, err) from err
    except (apsw.Error, OSError) as err:
        conn.close()
        remove_quietly(dest, Path(str(dest) + "-journal"))
        raise FailbackError(f"building {dest.name} failed: {err}", "report this with `failback plan` output") from err
    except BaseException:
        conn.close()
        remove_quietly(dest, Path(str(dest) + "-journal"))
        raise
    conn.close()
    result.bytes = dest.stat().st_size
    return result


@contextlib.contextmanager
def _side_folder(dest: Path, snapshot: Path, plan: Plan, min_bytes: int) -> Iterator[Path | None]:
    """A temp folder beside ``dest`` for the side FTS build (removed on the way out; a killed run's is removed by
    the next build here), when ``plan`` creates FTS3/FTS4 tables and ``snapshot`` has ``min_bytes``; else None."""
    if snapshot.stat().st_size < min_bytes or not any(_fts_module(sql) for sql in plan.virtual_tables):
        yield None
        return
    remove_stale_folders(dest.parent, FTS_SIDE)
    with temp_folder(dest.parent, FTS_SIDE) as folder:
        yield folder


def _fts_module(sql: str) -> bool:
    """Whether ``sql`` creates an FTS3 or FTS4 table."""
    words = [t.text.upper() for _, t in significant(tokenize(sql))[:3]]
    return words == ["CREATE", "VIRTUAL", "TABLE"] and parse_virtual_table(sql).module.lower() in ("fts3", "fts4")


def _side_tables(conn: apsw.Connection, plan: Plan) -> dict[int, SideTable]:
    """The FTS3/FTS4 tables of ``plan`` a side process can build exactly as ``conn`` would (the target's tables
    created in ``main``, the snapshot attached as ``src``), by the index of their CREATE in ``plan.virtual_tables``
    (their fill follows it). A table the plan fills from ``src`` alone is filled the same way there; an FTS4
    table the plan rebuilds from its external content table is filled there from the snapshot's copy of that
    table (the same rows in rowid order, as 'rebuild' reads them), when the target declares the columns it reads
    as the snapshot does, so they hold the same values. Any other table is built here, after the copy."""
    copied = {c.table for c in plan.copies}
    vts = plan.virtual_tables
    tables = {}
    for i, (create, fill) in enumerate(itertools.pairwise(vts)):
        if _fts_module(create) and (table := _side_table(conn, create, fill, copied)) is not None:
            tables[i] = table
    return tables


def _side_table(conn: apsw.Connection, create: str, fill: str, copied: set[str]) -> SideTable | None:
    name = created_object(create).name
    head = f"INSERT INTO main.{quote(name)}("
    if not fill.startswith(head):
        return None
    if fill != f"{head}{quote(name)}) VALUES('rebuild')":  # filled by INSERT…SELECT: from src alone?
        sig = [t.name.lower() for _, t in significant(tokenize(fill))]
        in_main = sum(a == "main" and b == "." for a, b in itertools.pairwise(sig))
        return SideTable(name, create, fill) if in_main == 1 else None
    vt = parse_virtual_table(create)
    options = dict(kv for arg in vt.args if (kv := split_option(arg)))
    columns = [significant(tokenize(arg))[0][1].name for arg in vt.args if split_option(arg) is None]
    content = options.get("content")
    if vt.module.lower() != "fts4" or not content or content not in copied or set(options) - SIDE_OPTIONS:
        return None
    declared = [_declared(conn, schema, content, columns) for schema in ("main", "src")]
    if declared[0] != declared[1] or None in declared[0]:
        return None
    cols = ", ".join(map(quote, columns))
    return SideTable(name, create, f"{head}docid, {cols}) SELECT rowid, {cols} FROM src.{quote(content)}")


def _declared(conn: apsw.Connection, schema: str, table: str, columns: list[str]) -> list[str | None]:
    """The declared type of each of ``columns`` of ``schema.table``; None for a missing or generated column."""
    rows = conn.execute("SELECT name, type, hidden FROM pragma_table_xinfo(?, ?)", (table, schema))
    types = {name.lower(): kind for name, kind, hidden in rows if hidden == 0}
    return [types.get(c.lower()) for c in columns]


def _collation_merges(snapshot: Path, plan: Plan) -> list[CollationMerge]:
    """Rows of the snapshot the plan's collation mapping would merge under a unique key (none without mapping)."""
    if not plan.collation_map:
        return []
    conn = open_source(snapshot)
    try:
        return collation_merges(conn, plan.collation_map)
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(snapshot, err) from err
    finally:
        conn.close()


def _never_called(*_args: object) -> None:
    """The build's stand-in app function: creating a CHECK that calls it needs it to exist, but the build must
    never compute one of its values (see the rule in :mod:`failback.plan.planner`)."""
    raise apsw.ConstraintError("an app function was called while building: its value would come from a stand-in")


def _build(
    conn: apsw.Connection, snapshot: Path, plan: Plan, result: BuildResult, progress: Progress, side_dir: Path | None
) -> None:
    p = plan.pragmas
    if plan.stand_ins:  # the copied rows passed their CHECKs with the app's own functions when written
        register_stand_ins(conn, plan.stand_ins, _never_called)
        run_script(conn, "PRAGMA ignore_check_constraints = ON")
    run_script(
        conn,
        f"PRAGMA page_size = {int(p['page_size'])}; PRAGMA auto_vacuum = {int(p['auto_vacuum'])};"
        f" PRAGMA encoding = '{p['encoding']}'; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;"
        " PRAGMA foreign_keys = OFF; PRAGMA cache_size = -65536;",
    )
    conn.execute("ATTACH DATABASE ? AS src", (readonly_uri(snapshot),))
    t0 = time.perf_counter()
    with contextlib.ExitStack() as running:  # leaving it stops a side process still running
        side, built = None, {}
        with conn:  # the tables, their rows and their indexes
            for sql in plan.create_tables + plan.early_indexes:
                conn.execute(sql)
            result.seconds["schema"] = time.perf_counter() - t0
            if side_dir is not None and (built := _side_tables(conn, plan)):
                side = running.enter_context(SideBuild(side_dir, readonly_uri(snapshot), p, list(built.values())))
            t = time.perf_counter()
            total = len(plan.copies)
            for i, copy in enumerate(plan.copies):
                progress(f"copy {copy.table}", i, total)
                conn.execute(copy.sql)
            progress("copy", total, total)
            for sql in plan.after_data:
                run_script(conn, sql)
            result.seconds["copy"] = time.perf_counter() - t
            t = time.perf_counter()
            for sql in plan.late_indexes:
                conn.execute(sql)
            result.seconds["indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        if side is not None:  # ATTACH cannot run inside a transaction
            progress("search indexes", 0, len(plan.virtual_tables))
            result.seconds["fts_side"] = side.result()  # its own build time; "fts_wait": what this one waited
            conn.execute("ATTACH DATABASE ? AS side", (str(side.path),))
            result.seconds["fts_wait"] = time.perf_counter() - t
            t = time.perf_counter()
        with conn:  # the virtual tables, views, triggers and header values
            for i, sql in enumerate(plan.virtual_tables):
                progress("search indexes", i, len(plan.virtual_tables))
                if i - 1 not in built:  # a side-built table's fill: its shadow tables are copied instead
                    conn.execute(sql)
                if i in built:
                    _copy_shadows(conn, built[i].name)
            result.seconds["fts"] = time.perf_counter() - t
            for sql in plan.views + plan.triggers:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {int(p['user_version'])}")
            conn.execute(f"PRAGMA application_id = {int(p['application_id'])}")
        if side is not None:
            conn.execute("DETACH DATABASE side")
    conn.execute("DETACH DATABASE src")
    run_script(conn, "PRAGMA synchronous = FULL")
    result.seconds["total"] = time.perf_counter() - t0


def _copy_shadows(conn: apsw.Connection, name: str) -> None:
    """Copy the FTS table ``name``'s shadow tables from ``side`` into ``main``, where it was just created: the same
    definitions, so SQLite's transfer optimisation copies their records as they are."""
    for suffix in SHADOWS:
        shadow = name + suffix
        if conn.execute("SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?", (shadow,)).get:
            conn.execute(f"INSERT INTO main.{quote(shadow)} SELECT * FROM side.{quote(shadow)}")


def prove_schema(plan: Plan, engine: Engine) -> dict[str, str]:
    """Create the planned schema (no data) in the target engine and prepare every view and trigger there.

    Returns the objects that failed, with the engine's error. The schema is created in one transaction (one
    journal, not one per statement). Each trigger is created and proved inside its own transaction, rolled back
    afterwards, so a broken trigger cannot make its neighbours fail: the action after it ends whatever transaction
    a failure left open ("SAVEPOINT …; ROLLBACK" ends one or none without an error)."""
    creates = [sql for sql in plan.virtual_tables if sql.lstrip().upper().startswith("CREATE")]
    schema_sql = ";\n".join([*plan.create_tables, *creates, *plan.views])
    actions: list[dict[str, object]] = [{"op": "exec", "sql": f"BEGIN;\n{schema_sql};\nCOMMIT"}] if schema_sql else []
    tags: list[str | None] = [None] if schema_sql else []
    by_name = {p.name: p for p in plan.proofs}
    for sql in plan.triggers:
        proof = by_name.get(created_name(sql))
        actions += [
            {"op": "exec", "sql": f"BEGIN; {sql}; {proof.sql if proof else ''}; ROLLBACK"},
            {"op": "exec", "sql": "SAVEPOINT failback_end; ROLLBACK"},
        ]
        tags += [proof.name if proof else None, None]
    for proof in plan.proofs:
        if proof.kind != "trigger":
            actions.append({"op": "exec", "sql": proof.sql})
            tags.append(proof.name)
    if not actions:
        return {}
    results = engine.with_stand_ins(plan.stand_ins).run(None, actions).results
    if schema_sql and not results[0]["ok"]:
        raise UnsupportedSchemaError(
            f"the planned schema does not load in {plan.profile}: {results[0]['error']}",
            "report this with the output of `failback plan`",
        )
    return {tag: r["error"] for tag, r in zip(tags, results, strict=True) if tag and not r["ok"]}


def prove_in_source(plan: Plan, source: Path, names: set[str]) -> dict[str, str]:
    """The source engine's error for each proof of ``names``, run on the source database itself (read-only, with
    the app functions' stand-ins): what fails there is broken in the source, not by the conversion."""
    conn = open_source(source)
    try:
        register_stand_ins(conn, plan.stand_ins, lambda *_: None)
        failed = {}
        for proof in plan.proofs:
            if proof.name in names:
                try:
                    conn.execute(proof.sql).fetchall()
                except apsw.Error as err:
                    failed[proof.name] = str(err)
        return failed
    finally:
        conn.close()


def proved_plan(plan: Plan, engine: Engine, source: Path, options: ConvertConfig | None) -> Plan:
    """``plan`` with each view and trigger proved in ``engine`` (see ``apply_proofs``); an object that fails
    there is also tried on ``source`` in the source engine: failing the same way, it is kept faithfully."""
    failures = prove_schema(plan, engine)
    in_source = prove_in_source(plan, source, set(failures)) if failures else {}
    return apply_proofs(plan, failures, options, in_source)


@dataclass(frozen=True)
class ExportResult:
    """What an export did and proved: the target written, its plan, the verification it passed, its size, the
    seconds it took (``build``: per build phase) and the source's integrity check."""

    target: Path
    plan: Plan
    verification: VerifyReport
    bytes: int
    seconds: float
    build: dict[str, float]
    integrity: SourceIntegrity

    @property
    def ok(self) -> bool:
        """The target holds the source's data (always true: a failed export raises and writes nothing)."""
        return self.verification.ok

    @property
    def tables(self) -> list[TableCheck]:
        """Each table's rows and digest in the source, the target and sql.js."""
        return self.verification.tables

    @property
    def decisions(self) -> list[Decision]:
        """What became of each schema object, and why."""
        return self.plan.decisions

    def to_json(self) -> dict[str, object]:
        return {
            "target": str(self.target),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "build_seconds": self.build,
            "plan": self.plan.to_json(),
            "verification": self.verification.to_json(),
            "source_integrity": self.integrity.to_json(),
        }


@dataclass(frozen=True)
class PlanSettings:
    """What a source is planned with: the target's profile, the [convert] settings and the app's functions."""

    profile: str = DEFAULT_PROFILE
    options: ConvertConfig | None = None
    functions: list[str] | None = None
    user_version: UserVersion | None = None
    engine_path: Path | None = None  # [target] engine_path: the build engine_for runs

    @classmethod
    def of(cls, cfg: Config | None, profile: str | None = None) -> PlanSettings:
        """``profile`` (default: ``cfg``'s ``[target] profile``, else the default one) with ``cfg``'s settings."""
        if cfg is None:
            return cls(profile or cls.profile)
        return cls(
            profile or cfg.target.profile,
            cfg.convert,
            cfg.app.functions,
            target_user_version(cfg),
            cfg.target.engine_path,
        )


def target_user_version(cfg: Config) -> UserVersion | None:
    """The ``user_version`` the result carries under ``target.user_version``: a number as configured, the previous
    target file's ("previous", when that file exists and reads), else None (the source's)."""
    policy = cfg.target.user_version
    if isinstance(policy, int):
        return UserVersion(policy, "configured")
    previous = cfg.target_path
    if policy == "source" or not previous.exists():
        return None
    try:
        conn = open_source(previous)
    except NotADatabaseError:  # assess reports the unreadable file; the source's is kept
        return None
    try:
        return UserVersion(pragma(conn, "user_version"), "previous")
    finally:
        conn.close()


def read_plan(db: Path, settings: PlanSettings) -> tuple[Schema, Plan]:
    """The schema of the database file ``db`` (read-only) and its conversion plan under ``settings``; a file that
    cannot be read is a NotADatabaseError (a full disk or an I/O error: EnvironmentFailure) naming ``db``."""
    conn = open_source(db)
    try:
        schema = read_schema(conn)
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(db, err) from err
    finally:
        conn.close()
    return schema, plan_conversion(
        schema, load_profile(settings.profile), settings.options, settings.functions, settings.user_version
    )


def plan_for(
    source: Path,
    profile: str = DEFAULT_PROFILE,
    options: ConvertConfig | None = None,
    functions: list[str] | None = None,
) -> Plan:
    """The conversion plan of a database file (read-only): ``read_plan`` with these settings."""
    return read_plan(source, PlanSettings(profile, options, functions))[1]


def verify_conversion(
    target: Path, plan: Plan, engine: Engine, snapshot: Path, checks: VerifyConfig | None, **kw: Any
) -> VerifyReport:
    """``verify_target`` of ``target`` against ``snapshot`` with the checks of failback.toml's ``[verify]``
    (``checks``; its defaults without a config); ``kw``: the rest of ``verify_target``'s options."""
    v = checks or VerifyConfig()
    return verify_target(
        target,
        plan,
        engine,
        snapshot=snapshot,
        fts_queries=v.fts_queries,
        sample_terms=v.sample_terms,
        queries=v.queries,
        browser=browser_twin(engine) if v.browser else None,
        browser_memory_warn_mb=v.browser_memory_warn_mb,
        **kw,
    )


def export_database(
    source: Path,
    target: Path,
    *,
    profile: str = DEFAULT_PROFILE,
    cfg: Config | None = None,
    settings: PlanSettings | None = None,
    force: bool = False,
    progress: Progress | None = None,
    engine: Engine | None = None,
    repair_fts: bool = False,
) -> ExportResult:
    """Snapshot ``source``, check its integrity, convert, verify in both engines, then publish ``target`` (never
    partial). A damaged source is refused, unless only FTS indexes the target rebuilds are damaged and
    ``repair_fts`` allows the repair. ``settings`` (default: ``profile`` with ``cfg``'s) say how it is planned."""
    t0 = time.perf_counter()
    if (target.exists() or target.is_symlink()) and not force:
        raise InputError(f"{target} exists; refusing to overwrite", "pass --force or choose another path")
    check_replaceable(target, Protected.of(cfg, source))  # not the source, a backup, the state folder, …
    ensure_dir(target.parent)
    snap_path = target.with_name(f".{target.name}.failback-snapshot")
    tmp = target.with_name(f".{target.name}.failback-build")
    try:
        snap = take_snapshot(source, snap_path, progress or (lambda *_: None))
        snap.guard.close()
        s = settings or PlanSettings.of(cfg, profile)
        try:
            schema, plan = read_plan(snap.path, s)
        except NotADatabaseError as err:  # the snapshot is a page-for-page copy: its damage is the source's
            raise database_error(source, err.__cause__ or err) from err
        check_refused(plan)  # before any check: a refused object could fail them for its own reason
        integrity = check_source(snap.path, source, schema, plan, repair_fts)
        engine = (engine or engine_for(s.profile, s.engine_path)).with_stand_ins(plan.stand_ins)
        plan = proved_plan(plan, engine, snap.path, s.options)
        try:
            built = build_target(snap.path, tmp, plan, progress)
        except NotADatabaseError as err:
            raise database_error(source, err.__cause__ or err) from err
        report = verify_conversion(
            tmp, plan, engine, snap.path, cfg.verify if cfg else None, repaired=integrity.repaired, schema=schema
        )
        if not report.ok:
            raise VerificationFailed(f"{target} not written: {report.problems[0]}")
        publish_over(tmp, target)  # the old file's -wal/-shm/-journal go with it
        write_target_manifest(target, cfg.app.rollback_value if cfg else ROLLBACK_VALUE, report.proved)  # web app
        seconds = time.perf_counter() - t0
        return ExportResult(target, plan, report, target.stat().st_size, seconds, built.seconds, integrity)
    finally:
        remove_quietly(snap_path, tmp, Path(str(tmp) + "-journal"))


def verify_export(
    source: Path,
    target: Path,
    settings: PlanSettings,
    *,
    level: str = "standard",
    engine: Engine | None = None,
    browser: bool = False,
) -> VerifyReport:
    """Prove ``target`` holds ``source``'s data and the schema export plans for it, in apsw and in the target
    engine: ``source`` is planned again as export plans it, each view and trigger proved in the target engine.
    ``browser``: the target engine's job runs in headless Chromium too, and must give the same results.
    Problems are in the report, never raised; a ``target`` that is not a readable database is an error."""
    open_source(target).close()
    _, plan = read_plan(source, settings)
    engine = (engine or engine_for(settings.profile, settings.engine_path)).with_stand_ins(plan.stand_ins)
    plan = proved_plan(plan, engine, source, settings.options)
    return verify_conversion(target, plan, engine, source, VerifyConfig(browser=browser), level=level)
