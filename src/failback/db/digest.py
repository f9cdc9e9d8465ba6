"""Canonical, order-independent per-table content digests (algorithm ``fbd1``).

The same algorithm runs in Python (here) and in the sql.js runner (engines/sqljs/runner.js), so a table read
through apsw and through sql.js must give the same digest. Specification (docs/digest.md):

* A row is its key followed by its values: ``rowid`` first for tables that have one (rowid tables and FTS
  tables), then every column of the digest spec, in the spec's order.
* Each value is a type tag and a payload:
  ``0x00`` NULL · ``0x01`` INTEGER + 8-byte big-endian two's complement ·
  ``0x02`` REAL + 8-byte big-endian IEEE-754 binary64 ·
  ``0x03`` TEXT + 4-byte big-endian length + the UTF-8 bytes (read raw, as ``CAST(x AS BLOB)`` gives them
  in a UTF-8 database, so invalid UTF-8 and NUL characters are hashed as stored) ·
  ``0x04`` BLOB + 4-byte big-endian length + the bytes.
* A row's hash is XXH3-128 of its encoding, read as a big-endian unsigned integer; the table digest is the
  sum of the row hashes modulo 2**128 (order-independent; a duplicated row counts twice), written as 32
  lowercase hex digits, together with the row count.

So 1, 1.0 and '1' differ, and nothing depends on how a SQLite version prints a REAL.

How it reads SQLite: the rowid under the first of ``_rowid_``, ``rowid``, ``oid`` that no column takes (a
declared column of such a name hides the rowid under it); and a table so wide that its values and their is-text
flags exceed the 2,000 columns a SELECT may return is read by several SELECTs of column groups, in the same row
order, whose rows are joined before encoding (the digest is the same).

How it is fast in Python: TEXT is read as raw bytes (never decoded and re-encoded); rows are encoded in
batches of about :data:`BATCH_BYTES`, column by column, so a run of same-typed fixed-size values costs one
``struct`` call per row; and :func:`database_digests` spreads large tables over worker processes by rowid
range, since sums of row hashes add up.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import apsw
import xxhash

from .connect import connect, quote, read_transaction

ALGORITHM = "fbd1"
MOD = 1 << 128
BATCH_BYTES = 256 * 1024  # rows are encoded and hashed in batches of about this many bytes
_MAX_BATCH_ROWS = 512
CHUNK_ROWS = 65536  # rowids per range when a table is digested by several processes
MAX_RANGES = 16  # ranges per table at most
MAX_COLUMNS = 2000  # SQLITE_MAX_COLUMN: the most columns a table has and a SELECT returns
ROWID_NAMES = ("_rowid_", "rowid", "oid")
_NULL, _INTEGER, _REAL, _TEXT, _BLOB = range(5)
_TAG = {type(None): _NULL, int: _INTEGER, float: _REAL, str: _TEXT}
_FORMAT = {_NULL: "x", _INTEGER: "Bq", _REAL: "Bd", _TEXT: "BI", _BLOB: "BI"}  # "x" writes the NULL tag, 0x00
_pack_q = struct.Struct(">Bq").pack
_pack_d = struct.Struct(">Bd").pack
_pack_len = struct.Struct(">BI").pack
_utf8 = partial(str.encode, encoding="utf-8", errors="surrogatepass")
_hash = xxhash.xxh3_128_intdigest
Column = Sequence[Any]


@dataclass(frozen=True)
class DigestSpec:
    """What to digest for one table: its name, whether its rowid is part of the key, and its columns."""

    table: str
    columns: tuple[str, ...]
    rowid: bool

    def to_json(self) -> dict[str, object]:
        """The spec as engine actions carry it (``{"table", "columns", "rowid"}``)."""
        return {"table": self.table, "columns": list(self.columns), "rowid": self.rowid}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DigestSpec:
        return cls(str(data["table"]), tuple(data["columns"]), bool(data["rowid"]))

    @property
    def rowid_name(self) -> str:
        """The name that reads the rowid (``rowid`` must be set and some name free: see ``digest_spec``)."""
        return rowid_name(self.columns) or ROWID_NAMES[0]

    def select_sqls(
        self, schema: str = "main", where: str = "", keys: Sequence[str] = (), ordered: bool = False
    ) -> list[str]:
        """The SELECTs that read rows for :func:`table_digest`: every value (the rowid first) with an is-text flag
        after it; TEXT comes as the bytes ``CAST(x AS BLOB)`` gives, so it is never decoded and re-encoded.
        ``keys`` are columns read the same way before all that (to label rows); ``ordered``: by ``keys``, else
        by rowid. One SELECT, or one per group of columns when a table is too wide for one: the groups then
        read the rows in the same order (by key or rowid; a table without one by a scan of its own b-tree)."""
        parts = [_raw_column(quote(k)) for k in keys]
        parts += [f"{self.rowid_name}, 0"] if self.rowid else []
        parts += [_raw_column(quote(c)) for c in self.columns] or ([] if self.rowid else ["NULL, 0"])
        per = MAX_COLUMNS // 2
        groups = [parts[i : i + per] for i in range(0, len(parts), per)]
        order = [quote(k) for k in keys] or ([self.rowid_name] if self.rowid else [])
        source = f"{quote(schema)}.{quote(self.table)}"
        if len(groups) > 1 and not order:
            source += " NOT INDEXED"
        if order and (ordered or len(groups) > 1):
            where += f" ORDER BY {', '.join(order)}"
        return [f"SELECT {', '.join(g)} FROM {source}{where}" for g in groups]

    def read(
        self,
        conn: apsw.Connection,
        schema: str = "main",
        where: str = "",
        params: Sequence[Any] | None = None,
        keys: Sequence[str] = (),
        ordered: bool = False,
    ) -> Iterable[Sequence[Any]]:
        """The rows of :meth:`select_sqls`, a column group's rows joined into one."""
        cursors = [conn.execute(sql, params) for sql in self.select_sqls(schema, where, keys, ordered)]
        if len(cursors) == 1:
            return cursors[0]
        return (tuple(chain.from_iterable(row)) for row in zip(*cursors, strict=True))


def rowid_name(columns: Iterable[str]) -> str | None:
    """The first of ``_rowid_``, ``rowid``, ``oid`` no column takes (SQLite: a declared column of such a name
    hides the rowid under that name; names compare case-insensitively in ASCII), None when all are taken."""
    taken = {c.lower() for c in columns if c.isascii()}
    return next((n for n in ROWID_NAMES if n not in taken), None)


def _raw_column(q: str) -> str:
    """A value read raw (TEXT as bytes) followed by its is-text flag."""
    return f"iif(typeof({q}) = 'text', CAST({q} AS BLOB), {q}), typeof({q}) = 'text'"


@dataclass(frozen=True)
class TableDigest:
    """Row count and digest of one table."""

    table: str
    rows: int
    digest: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def encode_value(v: object, is_text: bool = False) -> bytes:
    """The canonical encoding of one value as apsw returns it; ``is_text`` marks bytes that are TEXT read raw."""
    t = type(v)
    if t is int:
        return _pack_q(_INTEGER, v)
    if v is None:
        return b"\x00"
    if t is float:
        return _pack_d(_REAL, v)
    if isinstance(v, str):
        raw, tag = _utf8(v), _TEXT
    else:
        raw, tag = bytes(v), _TEXT if is_text else _BLOB  # type: ignore[call-overload]
    return _pack_len(tag, len(raw)) + raw


def _column_tag(values: Column, is_text: Column | None) -> int | None:
    """The storage class all of a batch's values in one column share, or None when they differ."""
    types = set(map(type, values))
    if len(types) != 1:
        return None
    t = types.pop()
    if t is not bytes:
        return _TAG.get(t)
    flags = set(is_text or (False,))
    return (_TEXT if flags.pop() else _BLOB) if len(flags) == 1 else None


def _mixed(values: Column, is_text: Iterable[Any]) -> list[bytes]:
    """Value-by-value encodings of a column that mixes storage classes (NULLs among integers or bytes, mostly)."""
    return [
        b"\x00"
        if v is None
        else _pack_q(_INTEGER, v)
        if type(v) is int
        else _pack_len(_TEXT if t else _BLOB, len(v)) + v
        if type(v) is bytes
        else encode_value(v)
        for v, t in zip(values, is_text, strict=False)
    ]


def encode_columns(columns: Sequence[Column], flags: Sequence[Column] | None = None) -> Iterator[bytes]:
    """The canonical encodings of a batch of rows given column by column (values as apsw returns them).

    ``flags[j]`` marks which bytes of column j are TEXT read raw; without flags, bytes are BLOBs. A run of
    columns whose batch values share one fixed-size storage class is packed by one struct per row; TEXT and
    BLOB bytes are joined in as they are; only columns that mix storage classes are encoded value by value.
    """
    n = len(columns[0]) if columns else 0
    pieces: list[Iterable[bytes]] = []
    fmt, args = ">", list[Iterable[Any]]()

    def packed() -> None:  # close the run of fixed-size values (and TEXT/BLOB headers) collected so far
        nonlocal fmt, args
        if fmt != ">":
            pieces.append(map(struct.Struct(fmt).pack, *args) if args else repeat(struct.pack(fmt), n))
        fmt, args = ">", []

    for j, values in enumerate(columns):
        is_text = flags[j] if flags else None
        tag = _column_tag(values, is_text)
        if tag is None:
            packed()
            pieces.append(_mixed(values, is_text or repeat(False)))
            continue
        fmt += _FORMAT[tag]
        if tag in (_INTEGER, _REAL):
            args += [repeat(tag), values]
        elif tag in (_TEXT, _BLOB):
            if type(values[0]) is str:
                values = list(map(_utf8, values))
            args += [repeat(tag), map(len, values)]
            packed()
            pieces.append(values)
    packed()
    return map(b"".join, zip(*pieces, strict=True))


def raw_encoder(codec: str | None, skip: int = 0) -> Callable[[list[Sequence[Any]]], list[bytes]]:
    """Encode a batch of rows read by :meth:`DigestSpec.select_sql` (after ``skip`` leading columns); TEXT of a
    UTF-16 database (``codec`` is then its Python codec) is transcoded to UTF-8."""

    def encode(batch: list[Sequence[Any]]) -> list[bytes]:
        columns = list(zip(*batch, strict=True))[skip:]
        values: Sequence[Column] = columns[0::2]
        flags = columns[1::2]
        if codec:
            values = [_transcoded(v, f, codec) for v, f in zip(values, flags, strict=True)]
        return list(encode_columns(values, flags))

    return encode


def _transcoded(values: Column, is_text: Column, codec: str) -> list[Any]:
    return [
        v.decode(codec, "surrogatepass").encode("utf-8", "surrogatepass") if t else v
        for v, t in zip(values, is_text, strict=True)
    ]


def plain_encoder(batch: list[Sequence[Any]]) -> list[bytes]:
    """Encode a batch of rows of plain values (str is TEXT, bytes BLOB), as any query returns them."""
    return list(encode_columns(list(zip(*batch, strict=True))))


def encoded_batches(
    rows: Iterable[Sequence[Any]], encode: Callable[[list[Sequence[Any]]], list[bytes]]
) -> Iterator[tuple[list[Sequence[Any]], list[bytes]]]:
    """(rows, their encodings) in batches of about :data:`BATCH_BYTES` (sized from the previous batch)."""
    size, it = 16, iter(rows)
    while batch := list(islice(it, size)):
        encoded = encode(batch)
        yield batch, encoded
        size = min(_MAX_BATCH_ROWS, max(1, BATCH_BYTES * len(batch) // max(1, sum(map(len, encoded)))))


def _summed(batches: Iterable[tuple[list[Sequence[Any]], list[bytes]]]) -> tuple[int, int]:
    count = total = 0
    for _, encoded in batches:
        count += len(encoded)
        total += sum(map(_hash, encoded))
    return count, total % MOD


def digest_rows(rows: Iterable[Sequence[Any]]) -> tuple[int, int]:
    """(row count, sum of row hashes mod 2**128) over rows of plain values."""
    return _summed(encoded_batches(rows, plain_encoder))


def text_codec(conn: apsw.Connection, schema: str = "main") -> str | None:
    """The Python codec of a UTF-16 database's text, None for UTF-8."""
    encoding = str(conn.execute(f"PRAGMA {quote(schema)}.encoding").get).lower()
    return {"utf-16le": "utf-16-le", "utf-16be": "utf-16-be"}.get(encoding)


def table_digest(
    conn: apsw.Connection, spec: DigestSpec, schema: str = "main", rowids: tuple[int, int] | None = None
) -> TableDigest:
    """Digest one table (or, for a rowid table, the rows with ``lo <= rowid <= hi``), streaming."""
    where = f" WHERE {spec.rowid_name} BETWEEN ? AND ?" if rowids else ""
    rows = spec.read(conn, schema, where, rowids)
    count, total = _summed(encoded_batches(rows, raw_encoder(text_codec(conn, schema))))
    return TableDigest(spec.table, count, f"{total:032x}")


def database_digests(
    path: Path, specs: Sequence[DigestSpec], workers: int = 0, chunk_rows: int = CHUNK_ROWS
) -> dict[str, TableDigest]:
    """Digest the tables of a database file that nothing writes to meanwhile (a snapshot, a built target).

    Rowid tables spanning more than ``chunk_rows`` rowids are cut into rowid ranges, digested side by side by
    up to ``workers`` processes (this one included; 0: one per CPU this process may use); a table's digest is
    the sum of its ranges' (mod 2**128). Should anyone commit to the file meanwhile (``PRAGMA data_version``
    moves) or a worker fail, the digests are taken again here in one read transaction (which raises any
    error of the file itself).
    """
    conn = connect(path, readonly=True)
    try:
        with read_transaction(conn):
            tasks = [task for spec in specs for task in _chunks(conn, spec, chunk_rows)]
        workers = min(workers or usable_cpus(), len(tasks))
        if workers > 1 and len(tasks) > len(specs):
            version = conn.execute("PRAGMA data_version").get  # moves when anyone commits to the file
            parts = _digest_in_parallel(conn, path, tasks, workers - 1)
            if parts is not None and conn.execute("PRAGMA data_version").get == version:
                return _combined(specs, parts)
        with conn:  # one read transaction
            digests = {spec.table: table_digest(conn, spec) for spec in specs}
    finally:
        conn.close()
    return digests


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _chunks(
    conn: apsw.Connection, spec: DigestSpec, chunk_rows: int
) -> list[tuple[DigestSpec, tuple[int, int] | None]]:
    """Rowid ranges (inclusive, at most :data:`MAX_RANGES`) of about ``chunk_rows`` rowids covering a rowid table;
    the whole table otherwise."""
    low, high = (
        conn.execute(f"SELECT min({spec.rowid_name}), max({spec.rowid_name}) FROM {quote(spec.table)}").get
        if spec.rowid
        else (0, 0)
    )
    span = high - low + 1 if spec.rowid and low is not None else 0
    n = min(-(-span // chunk_rows), MAX_RANGES)
    if n < 2:
        return [(spec, None)]
    bounds = [low + span * k // n for k in range(n + 1)]
    return [(spec, (bounds[k], bounds[k + 1] - 1)) for k in range(n)]


def _digest_in_parallel(
    conn: apsw.Connection, path: Path, tasks: list[tuple[DigestSpec, tuple[int, int] | None]], helpers: int
) -> list[tuple[DigestSpec, int, int]] | None:
    """Digest the tasks here and in ``helpers`` worker processes (``python -m failback.db.digest PATH``, each fed
    by a thread): the workers take whole tables first, this process the last ranges. None if a worker fails
    (cannot start, stops, or cannot read the file)."""
    pending = deque(sorted(range(len(tasks)), key=lambda i: tasks[i][1] is not None))
    results: dict[int, tuple[int, int]] = {}
    failed = threading.Event()

    def take(pop: Callable[[], int]) -> int | None:
        try:
            return None if failed.is_set() else pop()
        except IndexError:
            return None

    def helper() -> None:
        command = [sys.executable, "-m", "failback.db.digest", str(path)]
        try:
            with subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            ) as proc:
                assert proc.stdin is not None and proc.stdout is not None
                while (i := take(pending.popleft)) is not None:
                    spec, rowids = tasks[i]
                    proc.stdin.write(json.dumps({"spec": spec.to_json(), "rowids": rowids}) + "\n")
                    proc.stdin.flush()
                    reply = json.loads(proc.stdout.readline() or "{}")
                    results[i] = (reply["rows"], int(reply["sum"], 16))  # KeyError: the worker failed
        except (OSError, ValueError, KeyError):
            failed.set()

    threads = [threading.Thread(target=helper, name="failback-digest", daemon=True) for _ in range(helpers)]
    for thread in threads:
        thread.start()
    try:
        while (i := take(pending.pop)) is not None:
            spec, rowids = tasks[i]
            d = table_digest(conn, spec, rowids=rowids)
            results[i] = (d.rows, int(d.digest, 16))
    except BaseException:
        pending.clear()  # the workers stop after their current task
        raise
    finally:
        for thread in threads:
            thread.join()
    return None if failed.is_set() else [(tasks[i][0], *results[i]) for i in range(len(tasks))]


def _worker(path: str) -> None:
    """Digest the tasks read from stdin, one JSON line each, replying with one JSON line each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    conn = connect(path, readonly=True)
    for line in sys.stdin:
        task = json.loads(line)
        try:
            rowids = tuple(task["rowids"]) if task["rowids"] else None
            d = table_digest(conn, DigestSpec.from_json(task["spec"]), rowids=rowids)
            reply: dict[str, Any] = {"rows": d.rows, "sum": d.digest}
        except apsw.Error as err:
            reply = {"error": str(err)}
        try:
            print(json.dumps(reply), flush=True)
        except BrokenPipeError:  # the parent is gone
            return


def _combined(specs: Sequence[DigestSpec], parts: list[tuple[DigestSpec, int, int]]) -> dict[str, TableDigest]:
    sums = {s.table: [0, 0] for s in specs}
    for spec, count, total in parts:
        sums[spec.table][0] += count
        sums[spec.table][1] += total
    return {t: TableDigest(t, count, f"{total % MOD:032x}") for t, (count, total) in sums.items()}


if __name__ == "__main__":
    _worker(sys.argv[1])
