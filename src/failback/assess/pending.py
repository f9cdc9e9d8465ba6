"""Pending changes: ``sync.pending_sql`` probes and presets for known sync layouts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apsw

from ..db.connect import quote
from ..db.schema import Schema, Table
from .facts import Pending

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


@dataclass(frozen=True)
class SyncProbe:
    """One known sync layout found in a table: its kind, the table, the condition selecting unsynced rows and
    how to name them."""

    kind: str  # outbox | cloudkit | flag
    table: str
    condition: str
    where: str


def sync_probes(schema: Schema) -> list[SyncProbe]:
    """The presets' probes for ``schema`` (pure): outbox tables, CloudKit metadata (SQLiteData's
    ``sqlitedata_icloud_metadata`` and GRDB apps' own) without a server record or with an unconfirmed deletion,
    and isSynced/needsSync-style flag columns."""
    found: list[SyncProbe] = []
    for t in schema.user_tables():
        if t.kind != "table":
            continue
        cols = {_norm(c.name): c.name for c in t.columns if c.hidden != 1}
        if any(n in _norm(t.name) for n in OUTBOX_NAMES):
            found.append(SyncProbe("outbox", t.name, "1", f"rows of {t.name}"))
        if SERVER_RECORD in cols:
            record = quote(cols[SERVER_RECORD])
            cond = f"{record} IS NULL"
            if TOMBSTONE in cols:
                gone = f"coalesce({quote(cols[TOMBSTONE])}, 0)"
                cond = f"({cond} AND NOT {gone}) OR ({gone} AND {record} IS NOT NULL)"
            found.append(SyncProbe("cloudkit", t.name, cond, f"{t.name} rows the server has not confirmed"))
        for key, col in cols.items():
            if key in SYNCED_FLAGS:
                found.append(SyncProbe("flag", t.name, f"coalesce({quote(col)}, 0) = 0", f"{t.name}.{col} = 0"))
            elif key in DIRTY_FLAGS:
                found.append(SyncProbe("flag", t.name, f"coalesce({quote(col)}, 0) <> 0", f"{t.name}.{col} <> 0"))
    return found


def count_pending(conn: apsw.Connection, schema: Schema, probe: SyncProbe) -> Pending:
    """How many rows ``probe`` finds unsynced, and the oldest one's time when the table has a time column."""
    when = timestamp_column(schema.tables[probe.table])
    oldest = f"min({quote(when)})" if when else "NULL"
    n, first = conn.execute(f"SELECT count(*), {oldest} FROM {quote(probe.table)} WHERE {probe.condition}").get
    return Pending(probe.kind, probe.where, n, describe_time(first))


def pending_changes(conn: apsw.Connection, schema: Schema) -> list[Pending]:
    """Unsynced rows found by the presets (``sync_probes``); probes that find none are left out."""
    return [p for probe in sync_probes(schema) if (p := count_pending(conn, schema, probe)).count]


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
