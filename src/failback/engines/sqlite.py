"""The native engine: apsw (SQLite 3.54 with FTS5, rtree, …) in-process, on an in-memory copy of the file."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import xxhash

from ..db.connect import connect, database_error, register_stand_ins
from ..db.digest import DigestSpec, digest_rows, encoded_batches, raw_encoder, table_digest, text_codec
from ..errors import InputError
from . import Action, EngineRun, Result, check_engine_input, decode_typed, encode_typed

SINGLE_STATEMENT = "query takes a single SQL statement; use exec for scripts"


def null_stand_in(*_args: Any) -> None:
    """A stand-in app function: NULL, whatever its arguments (enough to prepare what calls it)."""
    return None


def load(database: Path | None) -> apsw.Connection:
    """An in-memory connection holding a copy of ``database``, with fallback collations registered.

    A WAL-mode file is read as sql.js reads it: the main file only (the header is patched in the copy, as
    SQLite's in-memory database cannot open a WAL-mode image).
    Raises InputError/NotADatabaseError for anything that is not a readable database.
    """
    conn = connect(":memory:", create=True)
    if database is None:
        return conn
    database = Path(database)
    try:
        wal = check_engine_input(database)
        data = bytearray(database.read_bytes())
    except OSError as err:
        conn.close()
        raise InputError(f"{database}: cannot read ({err.strerror})") from None
    except InputError:
        conn.close()
        raise
    if wal:
        data[18:20] = b"\x01\x01"
    try:
        conn.deserialize("main", data)
        del data
        conn.execute("SELECT count(*) FROM sqlite_schema").get  # noqa: B018 - the first read parses the schema
    except (apsw.Error, UnicodeDecodeError) as err:
        conn.close()
        raise database_error(database, err) from None
    return conn


class SqliteEngine:
    """Runs engine actions with apsw on an in-memory copy of the database (see :mod:`failback.engines`)."""

    name: str = "sqlite"

    def __init__(self, stand_ins: Sequence[str] = ()) -> None:
        """``stand_ins``: app functions ("name/arity") registered on each run, each returning NULL."""
        self.stand_ins = tuple(stand_ins)

    def with_stand_ins(self, functions: Sequence[str]) -> SqliteEngine:
        """A copy of this engine (a subclass stays one) with ``functions`` registered as stand-ins too."""
        clone = copy.copy(self)
        clone.stand_ins += tuple(f for f in functions if f not in self.stand_ins)
        return clone

    def identity(self) -> tuple[str, str]:
        """("sqlite-3.54", "3.54.1"): apsw's SQLite, its profile named by major.minor."""
        version = apsw.sqlite_lib_version()
        return f"{self.name}-{version.rsplit('.', 1)[0]}", version

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        """Load ``database`` (``None``: empty) into memory and run ``actions``; the file is never written."""
        start = time.perf_counter()
        conn = load(database)
        register_stand_ins(conn, self.stand_ins, null_stand_in)
        try:
            results = [run_action(conn, action) for action in actions]
            version = str(conn.execute("SELECT sqlite_version()").get)
        finally:
            conn.close()
        return EngineRun(results, version, None, time.perf_counter() - start)


def run_action(conn: apsw.Connection, action: Action) -> Result:
    """Run one action; any failure becomes ``{"ok": False, "error": ...}``."""
    try:
        op = action.get("op")
        if op == "exec":
            for _ in conn.execute(action["sql"]):
                pass
            return {"ok": True}
        if op == "query":
            return {"ok": True, **_query(conn, action)}
        if op == "digest":
            return {
                "ok": True,
                "tables": [table_digest(conn, DigestSpec.from_json(t)).to_json() for t in action["tables"]],
            }
        if op == "time":
            return {"ok": True, **_time(conn, action["sql"], int(action.get("runs", 1)))}
        if op == "row_hashes":
            return {
                "ok": True,
                "rows": _row_hashes(conn, DigestSpec.from_json(action["table"]), action.get("order_by")),
            }
        raise ValueError(f"unknown op: {op}")
    except apsw.ExecTraceAbort:
        return {"ok": False, "error": SINGLE_STATEMENT}
    except UnicodeDecodeError:
        return {"ok": False, "error": "a TEXT value is not valid UTF-8"}
    except Exception as err:  # an action's failure is its result, as in the JS runner
        return {"ok": False, "error": str(err) or type(err).__name__}


def _time(conn: apsw.Connection, sql: str, runs: int) -> dict[str, Any]:
    """Run one query ``runs`` times; per-run wall milliseconds (rows fetched and dropped)."""
    ms: list[float] = []
    rows = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        rows = sum(1 for _ in conn.execute(sql))
        ms.append((time.perf_counter() - t0) * 1000)
    return {"ms": ms, "rows": rows}


def _query(conn: apsw.Connection, action: Action) -> dict[str, Any]:
    limit = action.get("limit")
    columns: list[str] = []
    statements = 0

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        nonlocal statements
        statements += 1
        if statements == 1:
            columns.extend(d[0] for d in cursor.get_description())
        return statements == 1

    cursor = conn.cursor()
    cursor.exec_trace = trace
    params = [decode_typed(p) for p in action.get("params") or []]
    kept: list[list[Any]] = []
    keep = action.get("keep")

    def rows() -> Iterator[Sequence[Any]]:
        for row in cursor.execute(action["sql"], params or None):
            if keep and not _kept(row, keep["column"], keep["prefix"]):
                continue
            if limit is None or len(kept) < limit:
                kept.append([encode_typed(v) for v in row])
            yield row

    count, total = digest_rows(rows())
    return {"columns": columns, "rows": kept, "count": count, "digest": f"{total:032x}"}


def _kept(row: Sequence[Any], column: int, prefix: str) -> bool:
    """A query's ``keep`` filter: the row's value in ``column`` is TEXT starting with ``prefix``."""
    return column < len(row) and isinstance(row[column], str) and row[column].startswith(prefix)


def _row_hashes(conn: apsw.Connection, spec: DigestSpec, order_by: list[str] | None) -> list[list[Any]]:
    """(key, row hash) per row, ordered by rowid or ``order_by``; row hashes are those of table_digest."""
    keys = [] if spec.rowid else list(order_by or [])
    if not spec.rowid and not keys:
        raise ValueError("row_hashes needs a rowid table or order_by columns")
    codec = text_codec(conn)
    rows = spec.read(conn, keys=keys, ordered=True)
    out: list[list[Any]] = []
    for batch, encoded in encoded_batches(rows, raw_encoder(codec, skip=2 * len(keys))):
        for row, data in zip(batch, encoded, strict=True):
            label = (
                encode_typed(row[0])
                if spec.rowid
                else [_label(row[i], row[i + 1], codec) for i in range(0, 2 * len(keys), 2)]
            )
            out.append([label, xxhash.xxh3_128_hexdigest(data)])
    return out


def _label(value: Any, is_text: int, codec: str | None) -> Any:
    """A key value read raw, typed for the report (TEXT decoded, undecodable bytes replaced)."""
    return encode_typed(value.decode(codec or "utf-8", "replace") if is_text else value)
