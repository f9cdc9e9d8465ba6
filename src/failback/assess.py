"""Risk assessment: gather facts (effects), then the pure ``evaluate`` turns them into findings — severity
info/warn/high/critical, a message and a fix — and a level. Low and medium proceed; high needs --yes (or a
confirmation); critical needs --force --reason.

Facts:

* size: files, free pages, rows and bytes per table (dbstat), and each step's duration estimated from the
  throughput measured once on this machine (``measure_throughput``, cached in the state folder);
* disk: free space on every file system the rest of the rollback writes to, against the bytes it writes;
* schema complexity, the conversion plan's findings, and target fit (memory budget, the profile's limits);
* pending changes: ``sync.pending_sql`` probes and presets for known sync layouts;
* liveness of the live source, read without writing anything: stat, its header, ``data_version`` on a
  read-only connection and /proc/locks. Its files are never opened outside SQLite: closing a plain file
  descriptor would drop the locks this process's SQLite connections hold on them;
* ``quick_check`` of the snapshot, per B-tree: the FTS indexes' own consistency, the slow part on SQLite 3.54,
  does not matter because the target rebuilds every search index from the text;
* migration state: ``grdb_migrations``, and rows only the old sql.js file holds.

Emergency mode skips the slow facts (calibration unless cached, dbstat, quick_check), never pending changes,
disk or liveness.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import zstandard

from . import __version__, sqltext
from .collations import CollationMerge
from .config import Config
from .convert import Action, Plan, plan_conversion
from .errors import FailbackError, RiskRefused
from .files import ensure_dir, free_bytes, write_text
from .guard import CALIBRATING, remove_stale_folders, temp_folder
from .journal import crash_point
from .profiles import Profile, load_profile
from .schema import Schema, Table, digest_specs, read_schema
from .sqlite import connect, database_error, open_source, pragma, quote

LEVELS = ("low", "medium", "high", "critical")
SEVERITY_LEVEL = {"info": "low", "warn": "medium", "high": "high", "critical": "critical"}
MB = 1_000_000

# Pending-change presets (names compared lower-case, without underscores).
OUTBOX_NAMES = ("outbox", "pendingchange", "pendingmutation", "pendingoperation", "syncqueue", "uploadqueue")
SYNCED_FLAGS = ("issynced", "synced", "isuploaded", "uploaded")  # 0 or NULL: not synced yet
DIRTY_FLAGS = ("needssync", "needsupload", "isdirty", "dirty", "pendingsync", "haspendingchanges", "ispending")
SERVER_RECORD = "lastknownserverrecord"  # CloudKit system fields; NULL until the server has the record
TOMBSTONE = "isdeleted"  # SQLiteData's _isDeleted: a deletion the server has not confirmed yet
TIME_NAME = re.compile(r"(?:[a-z0-9](?:At|On|Date|Time|Timestamp)|_(?:at|on|date|time|timestamp))$")
TIME_WORDS = ("date", "time", "timestamp", "created", "modified", "updated", "mtime", "ctime")
EDIT_WORDS = ("modif", "updat", "chang", "edit")
READ_ONLY_ACTIONS = {apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE}

# SQLite's locks (os_unix.c): a writer write-locks bytes of the database file from 0x40000000 (rollback
# journal), or this byte of the -shm (WAL); every WAL connection read-locks -shm byte 128 while open.
WAL_WRITE_LOCK = 120
WATCH_INTERVAL = 0.05

CALIBRATION_FILE = "calibration.json"
CALIBRATION_NOTES = 2000  # a ~4 MB sample database
CALIBRATION_RUNS = 3
JS_SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER: larger integers lose digits as JavaScript numbers
HEADROOM = 0.10  # disk: less free space than needed + 10% (and 100 MB) is worth a warning


# -- facts ----------------------------------------------------------------------------------------
@dataclass
class TableSize:
    """One table: rows (tables only), bytes of its B-trees with their indexes and largest cell (dbstat)."""

    rows: int | None = None
    bytes: int | None = None
    max_payload: int | None = None


@dataclass
class DiskNeed:
    """One file system written by the rest of the rollback: its folders, free bytes and what goes there."""

    folders: list[str]
    free: int
    parts: dict[str, int]

    @property
    def needed(self) -> int:
        return sum(self.parts.values())


@dataclass
class LimitCheck:
    """A value of the database against one of the target profile's limits."""

    limit: str
    allowed: int
    value: int
    where: str


@dataclass
class Pending:
    """Unsynced changes found by a preset (outbox, cloudkit, flag) or a ``sync.pending_sql`` probe."""

    kind: str
    where: str
    count: int | None
    oldest: str | None = None
    error: str = ""


@dataclass(frozen=True)
class SideFiles:
    """What lies beside the live database: -wal and -journal sizes (None when absent), whether -shm exists."""

    wal_bytes: int | None
    journal_bytes: int | None
    shm: bool


@dataclass
class Liveness:
    """What a short watch of the live source saw."""

    seconds: float = 0.0
    wal_mode: bool = False
    writes_seen: int = 0  # watch intervals in which something was committed
    evidence: list[str] = field(default_factory=list)
    wal_growth: int = 0
    writer_pids: list[int] = field(default_factory=list)
    open_pids: list[int] = field(default_factory=list)
    locks_known: bool = False
    hot_journal: int = 0  # bytes of a -journal no writer holds
    wal_without_shm: int = 0  # bytes of a -wal with no -shm beside it
    error: str = ""


@dataclass
class Calibration:
    """Throughput of each step's work on this machine, in MB of snapshot per second."""

    key: dict[str, Any]
    mb_per_s: dict[str, float]
    seconds: float


@dataclass
class Facts:
    """What is true about the source, the snapshot, the target and the machine, before anything changes."""

    mode: str = "standard"
    source_bytes: int = 0
    wal_bytes: int = 0
    snapshot_bytes: int = 0
    target_bytes: int = 0  # estimated size of the converted database
    zstd_ratio: float = 1.0  # zstd at the backup's settings, measured on samples of the snapshot
    zstd_mb_per_s: float = 0.0
    page_size: int = 4096
    free_pages: int = 0
    tables: dict[str, TableSize] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    plan_findings: list[dict[str, str]] = field(default_factory=list)
    memory_warn_bytes: int = 256 * MB
    memory_critical_bytes: int = 1024 * MB
    limits: list[LimitCheck] = field(default_factory=list)
    disk: list[DiskNeed] = field(default_factory=list)
    calibration: Calibration | None = None
    estimates: dict[str, float] = field(default_factory=dict)  # seconds per step
    pending: list[Pending] = field(default_factory=list)
    liveness: Liveness = field(default_factory=Liveness)
    integrity: list[str] | None = None  # quick_check problems; None when not run
    migrations: list[str] = field(default_factory=list)
    old_only_rows: dict[str, int] = field(default_factory=dict)
    collation_merges: list[CollationMerge] = field(default_factory=list)
    shared_disk_mirrors: list[str] = field(default_factory=list)  # backup mirrors on the primary's file system
    big_integers: list[str] = field(default_factory=list)  # table.column holding integers beyond ±(2^53−1)
    errors: list[str] = field(default_factory=list)  # facts that could not be read
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One thing the person deciding must know, and what to do about it."""

    severity: str  # info, warn, high, critical
    code: str
    message: str
    fix: str = ""


@dataclass
class Assessment:
    """The findings, the level they add up to, and the facts behind them."""

    level: str
    findings: list[Finding]
    facts: Facts

    @property
    def go(self) -> bool:
        return self.level in ("low", "medium")

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "go": self.go,
            "findings": [asdict(f) for f in self.findings],
            "facts": asdict(self.facts),
        }


# -- evaluate (pure) ----------------------------------------------------------------------------------
def _mb(n: int | float) -> str:
    return f"{n / MB:.1f} MB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def evaluate(f: Facts) -> Assessment:
    """Facts → findings and a risk level (pure)."""
    out = [
        *_size_findings(f),
        *_disk_findings(f),
        *(shared_disk_finding(m) for m in f.shared_disk_mirrors),
        *_fit_findings(f),
        *_schema_findings(f),
        *_merge_findings(f),
        *([js_integer_finding(f.big_integers)] if f.big_integers else []),
        *_pending_findings(f),
        *_liveness_findings(f.liveness),
        *_state_findings(f),
    ]
    level = max((SEVERITY_LEVEL[x.severity] for x in out), key=LEVELS.index, default="low")
    return Assessment(level, out, f)


def _size_findings(f: Facts) -> Iterator[Finding]:
    rows = sum(t.rows or 0 for t in f.tables.values())
    largest = sorted(((t.bytes, name) for name, t in f.tables.items() if t.bytes), reverse=True)[:3]
    yield Finding(
        "info",
        "size",
        f"source {_mb(f.source_bytes)} (+ {_mb(f.wal_bytes)} WAL), snapshot {_mb(f.snapshot_bytes)}, {rows} rows"
        + (f"; largest: {', '.join(f'{name} {_mb(n)}' for n, name in largest)}" if largest else ""),
    )
    if f.free_pages and f.free_pages * f.page_size > f.snapshot_bytes // 4:
        yield Finding("info", "free-pages", f"{_mb(f.free_pages * f.page_size)} of free pages are not copied")
    if f.estimates:
        steps = ", ".join(f"{step} {_duration(s)}" for step, s in f.estimates.items())
        yield Finding(
            "info",
            "estimate",
            f"estimated on this machine: {steps} (about {_duration(sum(f.estimates.values()))} in all)",
        )
    if f.skipped:
        yield Finding("info", "skipped", f"not gathered in {f.mode} mode: {', '.join(f.skipped)}")


def _disk_findings(f: Facts) -> Iterator[Finding]:
    for d in f.disk:
        where = ", ".join(d.folders)
        parts = "; ".join(f"{what} {_mb(n)}" for what, n in d.parts.items() if n)
        if d.free < d.needed:
            yield Finding(
                "critical",
                "disk",
                f"{where}: {_mb(d.free)} free, {_mb(d.needed)} needed ({parts})",
                "free disk space there, or point failback.toml (backup.dir, mirrors, state_dir) elsewhere",
            )
        elif d.needed and d.free < d.needed * (1 + HEADROOM) + 100 * MB:
            yield Finding(
                "warn",
                "disk",
                f"{where}: {_mb(d.free)} free for {_mb(d.needed)} needed ({parts}): little headroom",
                "free some disk space there first",
            )


def shared_disk_finding(mirror: str) -> Finding:
    """A backup mirror on the primary's file system: one disk failure loses both."""
    return Finding(
        "warn",
        "mirror-same-disk",
        f"mirror {mirror} shares the primary's disk: it protects against deletion, not against a disk failure",
        "put backup.mirrors on another disk or machine",
    )


def _fit_findings(f: Facts) -> Iterator[Finding]:
    if f.target_bytes >= f.memory_critical_bytes:
        yield Finding(
            "critical",
            "target-memory",
            f"the converted database (~{_mb(f.target_bytes)}) exceeds the sql.js memory budget "
            f"({_mb(f.memory_critical_bytes)}): the browser must hold it whole in memory",
            "shrink the data first (archive old rows), or raise assess.memory_critical_mb if the app's devices can",
        )
    elif f.target_bytes >= f.memory_warn_bytes:
        yield Finding(
            "warn",
            "target-memory",
            f"the converted database (~{_mb(f.target_bytes)}) is above {_mb(f.memory_warn_bytes)}: "
            "slow to load in a browser",
            "test loading it on the app's smallest device",
        )
    for c in f.limits:
        if c.value <= c.allowed:
            continue
        if c.limit == "max_page_size":
            yield Finding("info", "limit-max_page_size", f"page size {c.value} > {c.allowed}: the plan converts it")
            continue
        yield Finding(
            "high" if c.limit == "max_length" else "critical",  # a row's payload bounds its largest value
            f"limit-{c.limit}",
            f"{c.where}: {c.value} exceeds the target's {c.limit} ({c.allowed})",
            "change the schema or the data so it fits, or choose a target profile that allows it",
        )


PLAN_FIXES = {
    Action.REFUSE.value: "add it to convert.allow_drop to drop it, or convert it by hand first; otherwise the run "
    "stops at convert",
    Action.DROP.value: "check that the app works without it",
    Action.CONVERT.value: "",
}


def _schema_findings(f: Facts) -> Iterator[Finding]:
    if f.counts:
        yield Finding("info", "schema", ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in f.counts.items() if n))
    for d in f.plan_findings:
        refused = d["action"] == Action.REFUSE.value
        yield Finding(
            "critical" if refused else d["severity"],
            f"convert-{d['action']}",
            f"{d['kind']} {d['name']}: {d['reason']}",
            PLAN_FIXES.get(d["action"], ""),
        )


def _merge_findings(f: Facts) -> Iterator[Finding]:
    for m in f.collation_merges:
        yield Finding("critical", "collation-merge", m.message(), m.fix())


def js_integer_finding(columns: list[str]) -> Finding:
    """Columns whose integers sql.js rounds when the app reads them as JavaScript numbers (its default)."""
    return Finding(
        "warn",
        "js-integer-precision",
        f"{', '.join(columns)} hold(s) integers beyond ±(2^53−1): the converted file keeps them exactly, but sql.js "
        "reads them as JavaScript numbers by default, rounded (9223372036854775807 becomes 9223372036854776000)",
        "read these columns with BigInt in the app: stmt.get(params, {useBigInt: true}), "
        "stmt.getAsObject(params, {useBigInt: true}), db.exec(sql, params, {useBigInt: true}) (the third "
        "argument); bind them back as BigInt too (sql.js 1.16.0 binds a BigInt exactly)",
    )


def _pending_findings(f: Facts) -> Iterator[Finding]:
    for p in f.pending:
        if p.error:
            yield Finding(
                "high",
                "pending-probe",
                f"pending-changes probe failed ({p.where}): {p.error}; unsynced changes cannot be ruled out",
                "fix sync.pending_sql: one read-only SELECT returning a count (and optionally the oldest time)",
            )
        elif p.count:
            yield Finding(
                "high",
                "pending-changes",
                f"{p.count} change(s) not yet synced ({p.kind}: {p.where})"
                + (f", oldest {p.oldest}" if p.oldest else ""),
                "let the app finish syncing before rolling back: the rollback keeps these rows, but the sql.js "
                "app will not sync them",
            )


def _liveness_findings(live: Liveness) -> Iterator[Finding]:
    stop = "stop the app, or wait until it is idle: writes after the snapshot make the switch abort (exit 5)"
    if live.writes_seen:
        yield Finding(
            "high",
            "live-writes",
            f"the app is writing to the source: {', '.join(live.evidence)} during a {live.seconds:g} s watch"
            + (f" (-wal grew {_mb(live.wal_growth)})" if live.wal_growth else ""),
            stop,
        )
    elif live.writer_pids:
        pids = ", ".join(map(str, live.writer_pids))
        yield Finding("high", "live-writer", f"process {pids} holds the source's write lock", stop)
    elif live.open_pids:
        pids = ", ".join(map(str, live.open_pids))
        yield Finding(
            "warn",
            "live-open",
            f"the source is open in process {pids} (the app is running)",
            "quit the app before the switch, so that it stops writing to the native file",
        )
    if live.hot_journal:
        yield Finding(
            "critical",
            "hot-journal",
            f"a hot journal ({_mb(live.hot_journal)}) lies beside the source: a write transaction was interrupted "
            "and the file is inconsistent until SQLite rolls it back",
            "open the database once read-write (the app, or sqlite3) so SQLite rolls it back, then assess again",
        )
    if live.wal_without_shm:
        yield Finding(
            "warn",
            "wal-without-shm",
            f"the source has a -wal ({_mb(live.wal_without_shm)}) but no -shm: the app did not close cleanly or the "
            "files were copied without it; the commits in the -wal are read, not lost",
            "keep the -wal with the database; open it once in the app so it checkpoints",
        )
    if live.error:
        yield Finding("warn", "live-unknown", f"the source could not be watched: {live.error}", stop)


def _state_findings(f: Facts) -> Iterator[Finding]:
    if f.integrity:
        yield Finding(
            "critical",
            "integrity",
            f"the snapshot fails quick_check: {'; '.join(f.integrity[:3])}",
            "the source is damaged: restore it from a backup or recover it (sqlite3 .recover) first",
        )
    for e in f.errors:
        yield Finding("high", "unreadable", f"could not read {e}", "check the source with `PRAGMA integrity_check`")
    if f.migrations:
        yield Finding("info", "migrations", f"{len(f.migrations)} GRDB migration(s), last {f.migrations[-1]}")
    for table, n in f.old_only_rows.items():
        yield Finding(
            "high",
            "old-only-rows",
            f"{n} row(s) of {table} exist only in the old sql.js file: the migration never carried them, and the "
            "rollback replaces that file (it is backed up first)",
            "merge them into the native database first if they matter",
        )


def gate(
    a: Assessment,
    *,
    yes: bool = False,
    force: bool = False,
    reason: str = "",
    confirm: Callable[[Assessment], bool] | None = None,
) -> None:
    """Refuse (exit 3) unless the level allows going on: high needs ``yes``, ``force`` or ``confirm(a)``
    (a person saying yes); critical needs ``force`` and a ``reason``."""
    if a.level == "critical" and not (force and reason.strip()):
        worst = next(x for x in a.findings if x.severity == "critical")
        hint = "--force needs --reason '…' (written to the audit log)" if force else None
        raise RiskRefused(f"risk critical: {worst.message}", hint or "fix it, or pass --force --reason '…'")
    if a.level == "high" and not (yes or force or (confirm is not None and confirm(a))):
        worst = next(x for x in a.findings if x.severity == "high")
        raise RiskRefused(f"risk high: {worst.message}", "read `failback assess`, then re-run with --yes")


def estimate_steps(cal: Calibration, f: Facts, layers: int) -> dict[str, float]:
    """Seconds each step should take for the snapshot of ``f`` (pure). Verify counts its apsw side only: the
    sql.js side runs meanwhile and is not calibrated."""
    mb, r = f.snapshot_bytes / MB, cal.mb_per_s
    packed = mb / f.zstd_ratio
    return {
        "snapshot": mb / r["snapshot"],
        "backup": mb / r["digest"] + mb / f.zstd_mb_per_s + (2 * layers - 1) * packed / r["sha256"],
        "convert": mb / r["export"],
        "verify": mb / r["integrity"] + mb / r["digest"],
    }


def disk_parts(
    *,
    target_bytes: int,
    previous_target_bytes: int,
    snapshot_bytes: int,
    zstd_ratio: float,
    layers: list[Path],
    target_dir: Path,
    state_dir: Path,
    temp_dir: Path,
    sort_bytes: int,
    previous_linked: bool,
) -> list[tuple[Path, str, int]]:
    """(folder, what, bytes) the rest of the rollback writes (pure). The snapshot already exists; the backups
    are still to come (a rollback writes them while it assesses and converts)."""
    parts: list[tuple[Path, str, int]] = []
    for layer in layers:
        parts.append((layer, "backup", math.ceil(snapshot_bytes / zstd_ratio)))
        if previous_target_bytes:
            parts.append((layer, "backup of the current target", math.ceil(previous_target_bytes / zstd_ratio)))
    parts.append((target_dir, "converted target", target_bytes))
    parts.append((state_dir, "run journal and reports", MB))
    if previous_target_bytes and not previous_linked:
        parts.append((state_dir, "kept copy of the current target", previous_target_bytes))
    if sort_bytes:
        parts.append((temp_dir, "SQLite sort files", sort_bytes))
    return parts


def limit_checks(schema: Schema, profile: Profile, tables: dict[str, TableSize]) -> list[LimitCheck]:
    """The database's values that a profile limit bounds (pure)."""
    values: dict[str, tuple[int, str]] = {"max_page_size": (schema.page_size, "page size")}
    user = [t for t in schema.tables.values() if t.kind == "table"]
    if user:
        widest = max(user, key=lambda t: len(t.columns))
        values["max_column"] = (len(widest.columns), f"table {widest.name}")
    sqls = [(t.sql, t.name) for t in schema.tables.values()] + [(v.sql, v.name) for v in schema.views.values()]
    sqls += [(t.sql, t.name) for t in schema.triggers.values()] + [
        (i.sql or "", i.name) for i in schema.indexes.values()
    ]
    if sqls:
        sql, name = max(sqls, key=lambda s: len(s[0]))
        values["max_sql_length"] = (len(sql), f"the SQL of {name}")
    payloads = [(t.max_payload, name) for name, t in tables.items() if t.max_payload is not None]
    if payloads:
        n, name = max(payloads)
        values["max_length"] = (n, f"a row of {name}")
    return [
        LimitCheck(limit, profile.limits[limit], value, where)
        for limit, (value, where) in values.items()
        if limit in profile.limits
    ]


def timestamp_column(t: Table) -> str | None:
    """The column that best dates a row's last change, if any looks like a time (pure)."""
    times = [
        c.name
        for c in t.columns
        if c.hidden != 1
        and (
            TIME_NAME.search(c.name)
            or c.name.lower() in TIME_WORDS
            or any(w in c.type.upper() for w in ("DATE", "TIME"))
        )
    ]
    edits = [n for n in times if any(w in n.lower() for w in EDIT_WORDS)]
    return (edits or times)[0] if times else None


def describe_time(v: Any) -> str | None:
    """A timestamp as stored, plus UTC time when it is a Unix time in s, ms, µs or ns (pure)."""
    if v is None or isinstance(v, bytes):
        return None
    if isinstance(v, int | float) and v >= 1e9:
        seconds = float(v)
        while seconds >= 1e10:
            seconds /= 1000
        return f"{v} ({datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    return str(v)


# -- pending changes ----------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return name.lower().replace("_", "")


def pending_changes(conn: apsw.Connection, schema: Schema) -> list[Pending]:
    """Unsynced rows found by the presets: outbox tables, CloudKit metadata (SQLiteData's
    ``sqlitedata_icloud_metadata`` and GRDB apps' own) without a server record or with an unconfirmed
    deletion, and isSynced/needsSync-style flag columns."""
    found: list[Pending] = []
    for t in schema.user_tables():
        if t.kind != "table":
            continue
        cols = {_norm(c.name): c.name for c in t.columns if c.hidden != 1}
        probes: list[tuple[str, str, str]] = []  # (kind, condition, description)
        if any(n in _norm(t.name) for n in OUTBOX_NAMES):
            probes.append(("outbox", "1", f"rows of {t.name}"))
        if SERVER_RECORD in cols:
            record = quote(cols[SERVER_RECORD])
            cond = f"{record} IS NULL"
            if TOMBSTONE in cols:
                gone = f"coalesce({quote(cols[TOMBSTONE])}, 0)"
                cond = f"({cond} AND NOT {gone}) OR ({gone} AND {record} IS NOT NULL)"
            probes.append(("cloudkit", cond, f"{t.name} rows the server has not confirmed"))
        for key, col in cols.items():
            if key in SYNCED_FLAGS:
                probes.append(("flag", f"coalesce({quote(col)}, 0) = 0", f"{t.name}.{col} = 0"))
            elif key in DIRTY_FLAGS:
                probes.append(("flag", f"coalesce({quote(col)}, 0) <> 0", f"{t.name}.{col} <> 0"))
        when = timestamp_column(t)
        oldest = f"min({quote(when)})" if when else "NULL"
        for kind, cond, where in probes:
            n, first = conn.execute(f"SELECT count(*), {oldest} FROM {quote(t.name)} WHERE {cond}").get
            if n:
                found.append(Pending(kind, where, n, describe_time(first)))
    return found


def _read_only(action: int, *_: Any) -> int:
    return apsw.SQLITE_OK if action in READ_ONLY_ACTIONS else apsw.SQLITE_DENY


def run_probe(conn: apsw.Connection, sql: str) -> Pending:
    """Run one ``sync.pending_sql`` query as written (nothing interpolated), allowed to read and nothing
    else; its first row is (count[, oldest pending time])."""
    conn.authorizer = _read_only
    try:
        row = conn.execute(sql, can_cache=False).fetchone()
    except apsw.Error as err:
        return Pending("sql", sql, None, error=str(err))
    finally:
        conn.authorizer = None
    count = row[0] if row else 0
    if not isinstance(count, int):
        return Pending("sql", sql, None, error=f"returned {count!r}, not a count")
    return Pending("sql", sql, count, describe_time(row[1]) if row and len(row) > 1 else None)


# -- snapshot facts -----------------------------------------------------------------------------------
def collation_merges(conn: apsw.Connection, mapping: dict[str, str], shown: int = 5) -> list[CollationMerge]:
    """Unique keys (UNIQUE, PRIMARY KEY, unique indexes) using a collation the plan maps (``mapping``: source
    collation -> the target's) under which rows of the snapshot collide: grouped by the target's collations,
    NULL keys left out (they never collide), a partial index's condition kept. Up to ``shown`` colliding keys
    per index are named. Keys on expressions are not probed; a key mapped to BINARY only (which never makes
    distinct values equal) needs no probe."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    keys: dict[tuple[str, str, str | None], list[tuple[int, str, str]]] = {}
    for table, index, sql, cid, column, coll in conn.execute(
        "SELECT t.name, i.name, m.sql, x.cid, x.name, x.coll"
        " FROM pragma_table_list AS t, pragma_index_list(t.name) AS i, pragma_index_xinfo(i.name) AS x"
        " LEFT JOIN main.sqlite_schema AS m ON m.name = i.name"
        " WHERE t.schema = 'main' AND t.type = 'table' AND i.\"unique\" AND x.key ORDER BY t.name, i.name, x.seqno"
    ):
        keys.setdefault((table, index, sql), []).append((cid, column or "", coll or "BINARY"))
    found = []
    for (table, index, sql), cols in keys.items():
        mapped = tuple((c, lowered[c.lower()]) for _, _, c in cols if lowered.get(c.lower(), "BINARY") != "BINARY")
        if not mapped or any(cid < 0 for cid, _, _ in cols):
            continue
        names = [quote(n) for _, n, _ in cols]
        group = ", ".join(f"{quote(n)} COLLATE {lowered.get(c.lower(), quote(c))}" for _, n, c in cols)
        where = [f"{q} IS NOT NULL" for q in names]
        if sql and (partial := sqltext.index_where(sql)):
            where.append(f"({partial})")
        probe = (
            f"SELECT json_group_array(json_array({', '.join(names)})) FROM main.{quote(table)}"
            f" WHERE {' AND '.join(where)} GROUP BY {group} HAVING count(*) > 1 LIMIT {int(shown)}"
        )
        groups = tuple(tuple(_key_text(v) for v in json.loads(r[0])) for r in conn.execute(probe))
        if groups:
            found.append(CollationMerge(table, index, mapped, groups))
    return found


def _key_text(values: list[Any]) -> str:
    return repr(values[0]) if len(values) == 1 else repr(tuple(values))


def table_sizes(conn: apsw.Connection, schema: Schema, dbstat: bool) -> dict[str, TableSize]:
    """Rows of every table; with ``dbstat``, bytes and largest cell per table (indexes counted with it)."""
    sizes = {
        t.name: TableSize(rows=conn.execute(f"SELECT count(*) FROM {quote(t.name)}").get)
        for t in schema.user_tables()
        if t.kind == "table"
    }
    if dbstat:
        for name, size, payload in conn.execute(
            "SELECT coalesce(s.tbl_name, d.name), sum(d.pgsize), max(d.mx_payload) FROM dbstat('main', 1) AS d"
            " LEFT JOIN sqlite_schema AS s ON s.name = d.name GROUP BY 1"
        ):
            entry = sizes.setdefault(name, TableSize())
            entry.bytes, entry.max_payload = size, payload
    return sizes


def stores_integers(declared: str) -> bool:
    """Whether a column of this declared type keeps an integer as an integer: INTEGER, NUMERIC or BLOB affinity by
    SQLite's rules (TEXT affinity turns it into text, REAL into a float) (pure)."""
    t = declared.upper()
    if "INT" in t:
        return True
    return not any(word in t for word in ("CHAR", "CLOB", "TEXT", "REAL", "FLOA", "DOUB"))


def _leading_index_columns(conn: apsw.Connection, table: str) -> set[str]:
    """Columns that lead a full (not partial) index of ``table``: a range on them is a seek."""
    leading = set()
    for _seq, index, _unique, _origin, partial in conn.execute(f"PRAGMA index_list({quote(table)})").fetchall():
        first = conn.execute(f"PRAGMA index_info({quote(str(index))})").fetchone()
        if not partial and first is not None and first[2] is not None:
            leading.add(first[2])
    return leading


def _beyond_js(column: str, sign: str = "") -> str:
    """SQL true for a value of ``column`` that is an integer beyond ±JS_SAFE_INTEGER (one side with ``sign``)."""
    c = quote(column)
    side = {"+": f"{c} > {JS_SAFE_INTEGER}", "-": f"{c} < -{JS_SAFE_INTEGER}"}
    test = side[sign] if sign else f"({side['+']} OR {side['-']})"
    return f"{test} AND typeof({c}) = 'integer'"


def big_integer_columns(conn: apsw.Connection, schema: Schema) -> list[str]:
    """``table.column`` of each column holding an integer beyond ±(2^53−1), which a JavaScript number rounds.

    Cost: a rowid alias or a column leading an index is two seeks; the table's other integer-affinity columns
    share one scan of it (``max()`` of a test per column) that decodes no text column: 84 ms for a 158 MB notes
    database here, against 11 ms for the row counts."""
    found = []
    for t in schema.user_tables():
        cols = [c.name for c in t.visible_columns if t.kind == "table" and stores_integers(c.type)]
        if not cols:
            continue
        table = quote(t.name)
        seek = _leading_index_columns(conn, t.name) | ({t.rowid_alias} if t.rowid_alias else set())
        hits = {
            c
            for c in cols
            if c in seek
            and conn.execute(
                "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE {_beyond_js(c, sign)})" for sign in "+-")
            ).get
        }
        rest = [c for c in cols if c not in seek]
        if rest:
            [row] = conn.execute(f"SELECT {', '.join(f'max({_beyond_js(c)})' for c in rest)} FROM {table}")
            hits |= {c for c, hit in zip(rest, row, strict=True) if hit}
        found += [f"{t.name}.{c}" for c in cols if c in hits]
    return found


def file_big_integers(path: Path) -> list[str]:
    """``big_integer_columns`` of a database file, read without writing (``failback plan`` shows them)."""
    conn = open_source(path)
    try:
        return big_integer_columns(conn, read_schema(conn))
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(path, err) from err
    finally:
        conn.close()


def largest_index(conn: apsw.Connection) -> int:
    """Bytes of the largest index (what sorting it may spill to temporary files)."""
    return int(
        conn.execute(
            "SELECT coalesce(max(d.pgsize), 0) FROM dbstat('main', 1) AS d"
            " JOIN sqlite_schema AS s ON s.name = d.name AND s.type = 'index'"
        ).get
    )


def foreign_keys(conn: apsw.Connection, schema: Schema) -> int:
    """Foreign-key constraints declared by the tables."""
    return sum(
        len({r[0] for r in conn.execute(f"PRAGMA foreign_key_list({quote(t.name)})")})
        for t in schema.user_tables()
        if t.kind == "table"
    )


def quick_check(path: Path) -> list[str]:
    """quick_check of every B-tree (tables with their indexes, shadow tables, the schema), on a connection of
    its own so that it can run beside the other readers; problems only."""
    conn = connect(path, readonly=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0")]
        problems: list[str] = []
        for name in ["sqlite_schema", *names]:
            try:
                problems += [r[0] for r in conn.execute(f"PRAGMA quick_check({quote(name)})") if r[0] != "ok"]
            except apsw.CorruptError as err:
                problems.append(f"{name}: {err}")
        return problems
    finally:
        conn.close()


def old_only_rows(conn: apsw.Connection, schema: Schema, old: Path) -> dict[str, int]:
    """Rows of the old sql.js file whose primary key is not in the database of ``conn``; raises apsw.Error
    when the old file cannot be read."""
    if not old.exists():
        return {}
    conn.execute("ATTACH ? AS old", ("file:" + _uri_path(old) + "?mode=ro",))
    try:
        old_tables = {r[0] for r in conn.execute("SELECT name FROM old.sqlite_schema WHERE type = 'table'")}
        out: dict[str, int] = {}
        for t in schema.user_tables():
            keys = [c.name for c in sorted((c for c in t.columns if c.pk), key=lambda c: c.pk)]
            if t.kind != "table" or not keys or t.name not in old_tables:
                continue
            old_cols = {r[1] for r in conn.execute(f"PRAGMA old.table_info({quote(t.name)})")}
            if not set(keys) <= old_cols:
                continue
            same = " AND ".join(f"m.{quote(k)} = o.{quote(k)}" for k in keys)
            n = conn.execute(
                f"SELECT count(*) FROM old.{quote(t.name)} AS o "
                f"WHERE NOT EXISTS (SELECT 1 FROM main.{quote(t.name)} AS m WHERE {same})"
            ).get
            if n:
                out[t.name] = n
        return out
    finally:
        conn.execute("DETACH old")


def _uri_path(path: Path) -> str:
    from urllib.parse import quote as urlquote

    return urlquote(str(path.resolve()))


def grdb_migrations(conn: apsw.Connection, schema: Schema) -> list[str]:
    """Identifiers in ``grdb_migrations``, in the order they were applied."""
    if "grdb_migrations" not in schema.tables:
        return []
    return [r[0] for r in conn.execute("SELECT identifier FROM grdb_migrations ORDER BY rowid")]


# -- liveness of the live source ----------------------------------------------------------------------
def observe_sides(source: Path) -> SideFiles:
    """Stat the files beside ``source`` (nothing is opened)."""

    def size(suffix: str) -> int | None:
        try:
            return os.stat(f"{source}{suffix}").st_size
        except FileNotFoundError:
            return None

    return SideFiles(size("-wal"), size("-journal"), os.path.exists(f"{source}-shm"))


def read_header(path: Path) -> bytes:
    """The 100-byte database header, read through SQLite's VFS (which keeps this process's locks)."""
    f = apsw.VFSFile("", str(path), [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READONLY, 0])
    try:
        return bytes(f.xRead(100, 0))
    finally:
        f.xClose()


@dataclass(frozen=True)
class FileLock:
    """One POSIX lock from /proc/locks on a file of interest."""

    path: str
    pid: int
    write: bool
    start: int
    end: float

    def covers(self, byte: int) -> bool:
        return self.start <= byte <= self.end


def file_locks(paths: list[Path], text: str | None = None) -> list[FileLock] | None:
    """Locks other processes hold on ``paths``, from /proc/locks (``text``); None where it does not exist."""
    if text is None:
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return None
    ids: dict[tuple[int, int, int], str] = {}
    for p in paths:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = str(p)
    locks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[1] == "->":
            continue
        major, minor, inode = parts[5].split(":")
        path = ids.get((int(major, 16), int(minor, 16), int(inode)))
        pid = int(parts[4])
        if path is None or pid == os.getpid():
            continue
        end = math.inf if parts[7] == "EOF" else int(parts[7])
        locks.append(FileLock(path, pid, parts[3] == "WRITE", int(parts[6]), end))
    return locks


@dataclass(frozen=True)
class _Sample:
    stats: tuple[tuple[int, int] | None, tuple[int, int] | None]  # (size, mtime_ns) of the db and its -wal
    counter: bytes  # the header's file change counter (moves on each commit in rollback-journal mode)
    data_version: int | None


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _sample(source: Path, conn: apsw.Connection | None) -> _Sample:
    version, counter = None, b""
    if conn is not None:
        with contextlib.suppress(apsw.Error):
            version = pragma(conn, "data_version")
    with contextlib.suppress(apsw.Error):
        counter = read_header(source)[24:28]
    return _Sample((_stat(str(source)), _stat(f"{source}-wal")), counter, version)


def _changes(a: _Sample, b: _Sample) -> list[str]:
    return [
        what
        for what, moved in (
            ("data_version moved", a.data_version != b.data_version),
            ("the file change counter moved", a.counter != b.counter),
            ("the database file changed", a.stats[0] != b.stats[0]),
            ("the -wal changed", a.stats[1] != b.stats[1]),
        )
        if moved
    ]


def watch_source(source: Path, seconds: float, sides: SideFiles) -> Liveness:
    """Watch the live source for ``seconds`` without writing anything: file stats, header change counter,
    ``data_version`` on a read-only connection (only when opening one creates no -shm/-wal), and the
    locks other processes hold (Linux). ``sides`` is what lay beside it before anything opened it."""
    live = Liveness(seconds=seconds)
    with contextlib.suppress(apsw.Error):
        live.wal_mode = read_header(source)[18] == 2
    shm = Path(f"{source}-shm")
    locks = file_locks([source, shm])
    live.locks_known = locks is not None
    seen = set(locks or [])
    db_writer = any(x.write and x.path == str(source) for x in seen)
    now = observe_sides(source)
    if now.journal_bytes and not live.wal_mode and not db_writer:
        live.hot_journal = now.journal_bytes
    if sides.wal_bytes and not sides.shm:
        live.wal_without_shm = sides.wal_bytes
    conn = None
    if not live.hot_journal and (not live.wal_mode or (now.shm and now.wal_bytes is not None)):
        try:
            conn = connect(source, readonly=True)
            conn.set_busy_timeout(100)
        except FailbackError as err:
            live.error = err.message
    try:
        first = prev = _sample(source, conn)
        evidence: set[str] = set()
        for _ in range(math.ceil(seconds / WATCH_INTERVAL)):
            time.sleep(WATCH_INTERVAL)
            cur = _sample(source, conn)
            moved = _changes(prev, cur)
            live.writes_seen += bool(moved)
            evidence.update(moved)
            prev = cur
            seen.update(file_locks([source, shm]) or [])
    finally:
        if conn is not None:
            conn.close()
    live.evidence = sorted(evidence)
    live.wal_growth = max(0, (prev.stats[1] or (0, 0))[0] - (first.stats[1] or (0, 0))[0])
    # a write lock on the database file, or on the -shm's WAL write byte
    live.writer_pids = sorted({x.pid for x in seen if x.write and (x.path == str(source) or x.covers(WAL_WRITE_LOCK))})
    live.open_pids = sorted({x.pid for x in seen})
    return live


# -- calibration --------------------------------------------------------------------------------------
def calibration_key(profile: str) -> dict[str, Any]:
    """What a cached calibration is valid for: this machine, these versions, this target profile."""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "sqlite": apsw.sqlite_lib_version(),
        "failback": __version__,
        "profile": profile,
    }


def _best(fn: Callable[[int], object]) -> float:
    """Seconds of the fastest of ``CALIBRATION_RUNS`` calls ``fn(run)``: the one least disturbed by other work."""
    times = []
    for run in range(CALIBRATION_RUNS):
        t0 = time.perf_counter()
        fn(run)
        times.append(time.perf_counter() - t0)
    return max(min(times), 1e-6)


def measure_throughput(folder: Path, profile: str) -> Calibration:
    """Run each step's real work on a small generated database in ``folder`` and time it."""
    from .backup import take_snapshot
    from .digest import table_digest
    from .export import build_target
    from .sample import build_native

    t0 = time.perf_counter()
    remove_stale_folders(ensure_dir(folder), CALIBRATING)  # a calibration killed midway left its sample
    with temp_folder(folder, CALIBRATING) as d:
        build_native(d / "sample.sqlite", notes=CALIBRATION_NOTES)
        crash_point("calibrate.sample")

        def snapshot(run: int) -> None:
            take_snapshot(d / "sample.sqlite", d / f"snapshot-{run}.sqlite").guard.close()

        seconds = {"snapshot": _best(snapshot)}
        snap = d / "snapshot-0.sqlite"
        data = snap.read_bytes()
        seconds["sha256"] = _best(lambda _: hashlib.sha256(data).digest())
        conn = connect(snap, readonly=True)
        try:
            schema = read_schema(conn)
            seconds["digest"] = _best(lambda _: [table_digest(conn, spec) for spec in digest_specs(schema)])
        finally:
            conn.close()
        plan = plan_conversion(schema, load_profile(profile))
        seconds["export"] = _best(lambda run: build_target(snap, d / f"target-{run}.sqlite", plan))
        target = connect(d / "target-0.sqlite", readonly=True)
        try:
            seconds["integrity"] = _best(lambda _: target.execute("PRAGMA integrity_check").fetchall())
        finally:
            target.close()
    mb = len(data) / MB
    return Calibration(
        key=calibration_key(profile),
        mb_per_s={step: round(mb / s, 1) for step, s in seconds.items()},
        seconds=round(time.perf_counter() - t0, 3),
    )


def calibration(cfg: Config, *, measure: bool) -> Calibration | None:
    """The cached calibration for this machine and config; measured (and cached) when missing and ``measure``."""
    path = cfg.state_path / CALIBRATION_FILE
    key = calibration_key(cfg.target.profile)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        cached = Calibration(**json.loads(path.read_text(encoding="utf-8")))
        if cached.key == key:
            return cached
    if not measure:
        return None
    try:
        cal = measure_throughput(cfg.state_path, cfg.target.profile)
    except FailbackError as err:
        raise _calibration_failed(err, cfg.state_path) from None
    write_text(path, json.dumps(asdict(cal), indent=2) + "\n")
    return cal


def _calibration_failed(err: FailbackError, folder: Path) -> FailbackError:
    """``err`` from measuring throughput, told without the sample's temporary paths (removed by now)."""
    sample = re.compile(re.escape(str(folder / CALIBRATING)) + r"[^\s:()]*")
    reason = sample.sub("the sample", err.message)
    what = f"calibration (timing each step on a ~4 MB sample database in {folder}) failed: {reason}"
    return type(err)(what, f"{err.hint}; --mode emergency skips the calibration")


def measure_compression(
    path: Path, level: int, threads: int, samples: int = 16, chunk: int = MB
) -> tuple[float, float]:
    """zstd ratio and MB/s on ``samples`` chunks spread over ``path``: the data decides both. Each chunk is
    compressed alone, so the ratio is a little pessimistic."""
    size = path.stat().st_size
    samples = min(samples, max(1, size // chunk))
    raw = packed = 0
    cctx = zstandard.ZstdCompressor(level=level, threads=threads)
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        for i in range(samples):
            fh.seek(max(0, size - chunk) * i // max(1, samples - 1))
            data = fh.read(chunk)
            raw, packed = raw + len(data), packed + len(cctx.compress(data))
    seconds = max(time.perf_counter() - t0, 1e-6)
    return (round(raw / packed, 3) if packed else 1.0), round(raw / MB / seconds, 1)


# -- gather -------------------------------------------------------------------------------------------
def sqlite_temp_dir() -> Path:
    """Where SQLite writes its temporary (sort) files on Unix."""
    for candidate in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path.cwd()


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (where it will be created)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def folder_space(folders: list[Path]) -> dict[Path, tuple[int, int]]:
    """(file system id, free bytes) of each folder (of its nearest existing parent)."""
    space = {}
    for folder in folders:
        p = _nearest_existing(folder)
        space[folder] = (p.stat().st_dev, free_bytes(p))
    return space


def shared_disk_mirrors(layers: list[Path]) -> list[str]:
    """The mirrors (``layers[1:]``) on the primary's file system: their nearest existing folders share its device."""
    devices = [_nearest_existing(layer).stat().st_dev for layer in layers]
    return [str(mirror) for mirror, dev in zip(layers[1:], devices[1:], strict=True) if dev == devices[0]]


def disk_needs(parts: list[tuple[Path, str, int]], space: dict[Path, tuple[int, int]]) -> list[DiskNeed]:
    """Group what is written by file system: folders on one share its free space (pure)."""
    needs: dict[int, DiskNeed] = {}
    for folder, what, n in parts:
        dev, free = space[folder]
        need = needs.setdefault(dev, DiskNeed([], free, {}))
        if str(folder) not in need.folders:
            need.folders.append(str(folder))
        need.parts[what] = need.parts.get(what, 0) + n
    return list(needs.values())


class _Reader:
    """Runs fact readers on the snapshot; a reader that fails leaves its default and an error."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.errors: list[str] = []

    def read(self, what: str, fn: Callable[[apsw.Connection], Any], default: Any) -> Any:
        try:
            return fn(self.conn)
        except (apsw.Error, UnicodeDecodeError) as err:
            self.errors.append(f"{what}: {err}")
            return default


def gather(
    cfg: Config,
    snapshot: Path,
    schema: Schema,
    plan: Plan,
    *,
    emergency: bool = False,
    sides: SideFiles | None = None,
) -> Facts:
    """Read every fact: the snapshot (quick_check in a second thread), the live source (watched in a third
    one meanwhile), the machine."""
    source = cfg.source_path
    sides = sides or observe_sides(source)
    layers = cfg.backup_layers[:1] if emergency else cfg.backup_layers
    temp = sqlite_temp_dir()
    space = folder_space([*layers, cfg.target_path.parent, cfg.state_path, temp])  # before the backup grows
    with ThreadPoolExecutor(2) as pool:
        watching = pool.submit(watch_source, source, cfg.assess.liveness_seconds, sides)
        checking = None if emergency else pool.submit(quick_check, snapshot)
        conn = connect(snapshot, readonly=True)
        r = _Reader(conn)
        try:
            tables = r.read("table sizes", lambda c: table_sizes(c, schema, dbstat=not emergency), {})
            sort_bytes = 0 if emergency else r.read("index sizes", largest_index, 0)
            fks = r.read("foreign keys", lambda c: foreign_keys(c, schema), 0)
            pending = r.read("sync presets", lambda c: pending_changes(c, schema), []) if cfg.sync.presets else []
            pending += [run_probe(conn, sql) for sql in cfg.sync.pending_sql]
            migrations = r.read("grdb_migrations", lambda c: grdb_migrations(c, schema), [])
            old = r.read(f"old file {cfg.target_path}", lambda c: old_only_rows(c, schema, cfg.target_path), {})
            merges = r.read("unique keys", lambda c: collation_merges(c, plan.collation_map), [])
            big = r.read("integers beyond 2^53", lambda c: big_integer_columns(c, schema), [])
            integrity = r.read("quick_check", lambda _: checking.result(), None) if checking else None
        finally:
            conn.close()
        cal = calibration(cfg, measure=not emergency)
        liveness = watching.result()
    snapshot_bytes = snapshot.stat().st_size
    ratio, zstd_rate = measure_compression(snapshot, cfg.backup.zstd_level, cfg.backup.threads)
    target_bytes = max(0, snapshot_bytes - schema.freelist_count * schema.page_size)
    previous = cfg.target_path.stat().st_size if cfg.target_path.exists() else 0
    parts = disk_parts(
        target_bytes=target_bytes,
        previous_target_bytes=previous,
        snapshot_bytes=snapshot_bytes,
        zstd_ratio=ratio,
        layers=layers,
        target_dir=cfg.target_path.parent,
        state_dir=cfg.state_path,
        temp_dir=temp,
        sort_bytes=sort_bytes,
        previous_linked=space[cfg.target_path.parent][0] == space[cfg.state_path][0],
    )
    facts = Facts(
        mode="emergency" if emergency else "standard",
        source_bytes=source.stat().st_size,
        wal_bytes=sides.wal_bytes or 0,
        snapshot_bytes=snapshot_bytes,
        target_bytes=target_bytes,
        zstd_ratio=ratio,
        zstd_mb_per_s=zstd_rate,
        page_size=schema.page_size,
        free_pages=schema.freelist_count,
        tables=tables,
        counts={**schema.counts(), "foreign_keys": fks},
        plan_findings=[d.to_json() for d in plan.findings()],
        memory_warn_bytes=cfg.assess.memory_warn_mb * MB,
        memory_critical_bytes=cfg.assess.memory_critical_mb * MB,
        limits=limit_checks(schema, load_profile(cfg.target.profile), tables),
        disk=disk_needs(parts, space),
        calibration=cal,
        pending=pending,
        liveness=liveness,
        integrity=integrity,
        migrations=migrations,
        old_only_rows=old,
        collation_merges=merges,
        shared_disk_mirrors=shared_disk_mirrors(cfg.backup_layers),
        big_integers=big,
        errors=r.errors,
        skipped=(["calibration"] if cal is None else []) + (["dbstat", "quick_check"] if emergency else []),
    )
    if cal is not None:
        facts.estimates = estimate_steps(cal, facts, len(layers))
    return facts
