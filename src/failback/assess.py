"""Risk assessment: gather facts (effects), then a pure function turns facts into findings and a level.

Levels: low and medium proceed; high needs --yes; critical needs --force --reason. ``evaluate`` is pure and
unit-tested on hand-made facts; ``gather`` reads the real files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .config import Config
from .convert import Plan
from .errors import RiskRefused
from .files import free_bytes
from .schema import Schema
from .sqlite import connect, quote

LEVELS = ("low", "medium", "high", "critical")
SEVERITY_LEVEL = {"info": "low", "warn": "medium", "high": "high", "critical": "critical"}
SYNC_FLAG_COLUMNS = {"issynced": 0, "synced": 0, "needssync": 1, "isdirty": 1, "dirty": 1, "pendingsync": 1}
OUTBOX_TABLES = (
    "outbox",
    "pending_changes",
    "pendingchanges",
    "sync_queue",
    "syncqueue",
    "pending_mutations",
)


@dataclass(frozen=True)
class Finding:
    severity: str  # info, warn, high, critical
    code: str
    message: str
    fix: str = ""


@dataclass
class Facts:
    """What is true about the source, the target and the machine, before anything changes."""

    source_bytes: int
    wal_bytes: int
    snapshot_bytes: int
    free_pages: int
    page_size: int
    counts: dict[str, int]
    rows: dict[str, int]
    plan_findings: list[dict[str, str]]
    disk: list[dict[str, Any]]  # {folder, free, needed}
    memory_warn_bytes: int
    memory_critical_bytes: int
    pending: list[dict[str, Any]] = field(default_factory=list)  # {where, count}
    old_only_rows: dict[str, int] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)


@dataclass
class Assessment:
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


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def evaluate(f: Facts) -> Assessment:
    """Facts → findings and a risk level (pure)."""
    out: list[Finding] = []
    total_rows = sum(f.rows.values())
    out.append(
        Finding(
            "info",
            "size",
            f"source {_mb(f.source_bytes)} (+ {_mb(f.wal_bytes)} WAL), {total_rows} rows; "
            + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in f.counts.items()),
        )
    )
    if f.snapshot_bytes >= f.memory_critical_bytes:
        out.append(
            Finding(
                "critical",
                "target-memory",
                f"the database ({_mb(f.snapshot_bytes)}) exceeds the sql.js memory budget "
                f"({_mb(f.memory_critical_bytes)}): the browser must hold it whole in memory",
                "shrink the data first (archive old rows), or raise assess.memory_critical_mb if the app's devices can",
            )
        )
    elif f.snapshot_bytes >= f.memory_warn_bytes:
        out.append(
            Finding(
                "warn",
                "target-memory",
                f"the database ({_mb(f.snapshot_bytes)}) is above {_mb(f.memory_warn_bytes)}: "
                "slow to load in a browser",
                "test loading it on the app's smallest device",
            )
        )
    for d in f.disk:
        if d["free"] < d["needed"]:
            out.append(
                Finding(
                    "critical",
                    "disk",
                    f"{d['folder']}: {_mb(d['free'])} free, {_mb(d['needed'])} needed",
                    "free disk space there or point failback.toml elsewhere",
                )
            )
    for p in f.pending:
        out.append(
            Finding(
                "high",
                "pending-changes",
                f"{p['count']} change(s) not yet synced in {p['where']}"
                + (f" (oldest {p['oldest']})" if p.get("oldest") else ""),
                "let the app finish syncing before rolling back; the rollback keeps them, but sync stops",
            )
        )
    for table, n in f.old_only_rows.items():
        out.append(
            Finding(
                "warn",
                "old-only-rows",
                f"{n} row(s) of {table} exist only in the old sql.js file (never migrated); the file is backed up"
                " before it is replaced",
                "merge them into the native database first if they matter",
            )
        )
    for d in f.plan_findings:
        out.append(Finding(d["severity"], f"convert-{d['action']}", f"{d['kind']} {d['name']}: {d['reason']}"))
    if f.free_pages and f.free_pages * f.page_size > f.source_bytes // 4:
        out.append(Finding("info", "free-pages", f"{_mb(f.free_pages * f.page_size)} of free pages are not copied"))
    level = max((SEVERITY_LEVEL[x.severity] for x in out), key=LEVELS.index, default="low")
    return Assessment(level, out, f)


def gate(a: Assessment, *, yes: bool = False, force: bool = False, reason: str = "") -> None:
    """Refuse (exit 3) unless the level allows going on with the flags given."""
    if a.level == "critical" and not (force and reason.strip()):
        worst = next(x for x in a.findings if x.severity == "critical")
        raise RiskRefused(f"risk critical: {worst.message}", "fix it, or pass --force --reason '…' to override")
    if a.level == "high" and not (yes or force):
        worst = next(x for x in a.findings if x.severity == "high")
        raise RiskRefused(f"risk high: {worst.message}", "read `failback assess`, then re-run with --yes")


def pending_changes(conn: apsw.Connection, schema: Schema) -> list[dict[str, Any]]:
    """Unsynced rows found by the built-in presets: outbox tables, CloudKit metadata without a server
    record, and GRDB-style isSynced/needsSync flag columns."""
    found: list[dict[str, Any]] = []
    for t in schema.user_tables():
        if t.kind != "table":
            continue
        cols = {c.name.lower(): c.name for c in t.columns}
        q = quote(t.name)
        if t.name.lower() in OUTBOX_TABLES:
            n = conn.execute(f"SELECT count(*) FROM {q}").get
            if n:
                found.append({"where": f"table {t.name}", "count": n})
        if "lastknownserverrecord" in cols and ("metadata" in t.name.lower() or "sync" in t.name.lower()):
            n = conn.execute(f"SELECT count(*) FROM {q} WHERE {quote(cols['lastknownserverrecord'])} IS NULL").get
            if n:
                found.append({"where": f"{t.name}.{cols['lastknownserverrecord']} IS NULL", "count": n})
        for low, pending_value in SYNC_FLAG_COLUMNS.items():
            if low in cols:
                col = quote(cols[low])
                n = conn.execute(f"SELECT count(*) FROM {q} WHERE {col} = ?", (pending_value,)).get
                if n:
                    found.append({"where": f"{t.name}.{cols[low]} = {pending_value}", "count": n})
    return found


def old_only_rows(conn: apsw.Connection, schema: Schema, old: Path) -> dict[str, int]:
    """Rows of the old sql.js file whose INTEGER PRIMARY KEY is not in the native database."""
    if not old.exists():
        return {}
    try:
        old_conn = connect(old, readonly=True)
        old_tables = {r[0] for r in old_conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    except apsw.Error:
        return {}
    out: dict[str, int] = {}
    try:
        for t in schema.user_tables():
            key = t.rowid_alias
            if key is None or t.name not in old_tables:
                continue
            ids = {r[0] for r in conn.execute(f"SELECT {quote(key)} FROM {quote(t.name)}")}
            try:
                n = sum(1 for (i,) in old_conn.execute(f"SELECT {quote(key)} FROM {quote(t.name)}") if i not in ids)
            except apsw.Error:
                continue
            if n:
                out[t.name] = n
    finally:
        old_conn.close()
    return out


def run_assessment(
    cfg: Config, snapshot: Path, schema: Schema, plan: Plan, *, emergency: bool = False, dry_run: bool = False
) -> Assessment:
    """The assess step of a rollback: gather the facts for ``cfg`` and evaluate them."""
    size = snapshot.stat().st_size
    written = {cfg.target_path.parent: size * 2}
    if not dry_run:
        written.update({layer: 0 for layer in cfg.backup_layers})
    facts = gather(
        snapshot,
        schema,
        plan,
        source=cfg.source_path,
        old_target=cfg.target_path,
        written=written,
        memory_warn_mb=cfg.assess.memory_warn_mb,
        memory_critical_mb=cfg.assess.memory_critical_mb,
        emergency=emergency,
    )
    return evaluate(facts)


def gather(
    snapshot: Path,
    schema: Schema,
    plan: Plan,
    *,
    source: Path,
    old_target: Path,
    written: dict[Path, int],
    memory_warn_mb: int,
    memory_critical_mb: int,
    emergency: bool = False,
) -> Facts:
    """Read the facts from the snapshot, the source's files and the folders that will be written."""
    conn = connect(snapshot, readonly=True)
    try:
        rows = {
            t.name: conn.execute(f"SELECT count(*) FROM {quote(t.name)}").get
            for t in schema.user_tables()
            if t.kind == "table"
        }
        pending = pending_changes(conn, schema)
        old = old_only_rows(conn, schema, old_target) if not emergency else {}
        migrations = (
            [r[0] for r in conn.execute("SELECT identifier FROM grdb_migrations")]
            if "grdb_migrations" in schema.tables
            else []
        )
    finally:
        conn.close()
    wal = Path(str(source) + "-wal")
    return Facts(
        source_bytes=source.stat().st_size,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        snapshot_bytes=snapshot.stat().st_size,
        free_pages=schema.freelist_count,
        page_size=schema.page_size,
        counts=schema.counts(),
        rows=rows,
        plan_findings=[d.to_json() for d in plan.findings()],
        disk=[{"folder": str(k), "free": free_bytes(k), "needed": v} for k, v in written.items()],
        memory_warn_bytes=memory_warn_mb * 1_000_000,
        memory_critical_bytes=memory_critical_mb * 1_000_000,
        pending=pending,
        old_only_rows=old,
        migrations=migrations,
    )
