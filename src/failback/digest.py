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
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import apsw
import xxhash

from .sqlite import quote

ALGORITHM = "fbd1"
MOD = 1 << 128
_pack_q = struct.Struct(">Bq").pack
_pack_d = struct.Struct(">Bd").pack
_pack_len = struct.Struct(">BI").pack
_NULL = b"\x00"


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

    def select_sql(self, schema: str = "main", raw_text: bool = False) -> str:
        """The SELECT both engines run; ``raw_text`` reads TEXT as bytes (CAST) with a type flag."""
        if raw_text:
            parts = [
                f"CASE WHEN typeof({q}) = 'text' THEN CAST({q} AS BLOB) ELSE {q} END, typeof({q}) = 'text'"
                for q in map(quote, self.columns)
            ]
        else:
            parts = [quote(c) for c in self.columns]
        if self.rowid:
            parts.insert(0, "_rowid_")
        return f"SELECT {', '.join(parts) or 'NULL'} FROM {quote(schema)}.{quote(self.table)}"


@dataclass(frozen=True)
class TableDigest:
    """Row count and digest of one table."""

    table: str
    rows: int
    digest: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def encode_row(row: Iterable[object]) -> bytes:
    """The canonical encoding of a row of values as apsw returns them (int, float, str, bytes, None).

    This is the hot loop of every digest: one pass, no call per value."""
    parts: list[bytes] = []
    add = parts.append
    for v in row:
        t = type(v)
        if t is str:
            raw = v.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
            add(_pack_len(3, len(raw)))
            add(raw)
        elif t is int:
            add(_pack_q(1, v))
        elif t is float:
            add(_pack_d(2, v))
        elif v is None:
            add(_NULL)
        else:
            raw = bytes(v)  # type: ignore[call-overload]
            add(_pack_len(4, len(raw)))
            add(raw)
    return b"".join(parts)


def encode_value(v: object) -> bytes:
    """The canonical encoding of one value."""
    return encode_row((v,))


def row_hash(values: Iterable[object]) -> int:
    """XXH3-128 of a row's canonical encoding, as an integer."""
    return xxhash.xxh3_128_intdigest(encode_row(values))


def _raw_row(row: Sequence[object], rowid: bool, utf16: str | None = None) -> bytes:
    """Encode a row selected with ``raw_text``: (value, is_text) pairs after the rowid; text comes as the bytes
    ``CAST(x AS BLOB)`` gives, transcoded to UTF-8 when the database is UTF-16 (``utf16`` = its codec)."""
    out = [_pack_q(1, row[0])] if rowid else []
    for i in range(1 if rowid else 0, len(row), 2):
        value = row[i]
        if row[i + 1]:
            raw = bytes(value)  # type: ignore[call-overload]
            if utf16:
                raw = raw.decode(utf16, "surrogatepass").encode("utf-8", "surrogatepass")
            out.append(_pack_len(3, len(raw)) + raw)
        else:
            out.append(encode_value(value))
    return b"".join(out)


def digest_rows(rows: Iterable[Sequence[object]]) -> tuple[int, int]:
    """(row count, sum of row hashes mod 2**128) over rows of plain values."""
    total = count = 0
    h, enc = xxhash.xxh3_128_intdigest, encode_row
    for row in rows:
        total += h(enc(row))
        count += 1
    return count, total % MOD


def table_digest(conn: apsw.Connection, spec: DigestSpec, schema: str = "main") -> TableDigest:
    """Digest one table; text that is not valid UTF-8 falls back to reading raw bytes."""
    try:
        count, total = digest_rows(conn.execute(spec.select_sql(schema)))
    except UnicodeDecodeError:
        count, total = 0, 0
        encoding = str(conn.execute(f"PRAGMA {quote(schema)}.encoding").get).lower()
        utf16 = {"utf-16le": "utf-16-le", "utf-16be": "utf-16-be"}.get(encoding)
        for row in conn.execute(spec.select_sql(schema, raw_text=True)):
            total += xxhash.xxh3_128_intdigest(_raw_row(row, spec.rowid, utf16))
            count += 1
        total %= MOD
    return TableDigest(spec.table, count, f"{total:032x}")
