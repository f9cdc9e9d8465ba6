"""Integrity checks that never judge an index by a collation failback only approximates.

``PRAGMA integrity_check`` looks every row up in every index, comparing keys with the index's collation. For
an app collation (``swiftLocalizedStandardCompare``…) that comparison runs failback's stand-in, whose order
differs from the app's: a sound index then reads as "row 2 missing from index". So, when a database has such
indexes, ``check_integrity`` splits the check:

* ``PRAGMA quick_check`` of the whole file: every b-tree's structure (those indexes' pages included), page
  accounting, NOT NULL and CHECK constraints, the FTS indexes — no key comparisons;
* ``PRAGMA integrity_check(table)`` for every other table with indexes: the full check, per table;
* for a table holding an index on an approximated collation, every one of its indexes is compared with the
  table instead: its entries are read by a covering scan of the index (``INDEXED BY``: the b-tree walked in
  stored order, values read from the index itself, no key compared) and the same columns by a scan of the
  table (``NOT INDEXED``); the two multisets must be equal (count and an order-free digest). That proves the
  index holds exactly one entry per row with the row's values; the order and uniqueness the app's collation
  gives them cannot be judged without that collation, and the note says so. An index whose entries cannot be
  read apart from the table (no covering scan, e.g. some expression indexes) is reported "not checked".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import apsw

from . import sqltext
from .collations import is_approximated
from .digest import digest_rows
from .sqlite import connect, quote

MAX_PROBLEMS = 5


@dataclass(frozen=True)
class IndexCheck:
    """How one index is checked when its table cannot be given to ``integrity_check``."""

    index: str
    table: str
    collation: str | None  # the approximated collation it uses; None when a sibling index forces the comparison
    columns: tuple[str, ...] = ()  # what its entries hold, as SELECT expressions; () = cannot be read apart
    where: str | None = None  # a partial index's condition

    @property
    def readable(self) -> bool:
        return bool(self.columns)

    def note(self) -> str:
        """One line for the result: why this index is not judged by integrity_check and what was done."""
        if self.collation:
            why, order = (
                f"uses collation {self.collation}, which failback only approximates",
                f" under {self.collation}",
            )
        else:
            why, order = f"shares table {self.table} with an index on an approximated collation", ""
        if not self.readable:
            return f"index {self.index} {why}: not checked (its entries cannot be read apart from table {self.table})"
        return (
            f"index {self.index} {why}: checked by comparing its entries with table {self.table}; "
            f"their order and uniqueness{order} are not judged"
        )


@dataclass
class IntegrityResult:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _KeyPart(NamedTuple):
    """One column of an index entry, as ``pragma_index_xinfo`` reports it with its table and index."""

    table: str
    without_rowid: int
    index_name: str
    sql: str | None
    origin: str
    cid: int
    column: str | None
    collation: str | None
    key: int


def index_checks(conn: apsw.Connection) -> list[IndexCheck]:
    """Every index of a table that holds an index on an approximated collation (empty: none do)."""
    parts = [
        _KeyPart(*r)
        for r in conn.execute(
            "SELECT t.name, t.wr, i.name, m.sql, i.origin, x.cid, x.name, x.coll, x.key"
            " FROM pragma_table_list AS t, pragma_index_list(t.name) AS i, pragma_index_xinfo(i.name) AS x"
            " LEFT JOIN main.sqlite_schema AS m ON m.name = i.name"
            " WHERE t.schema = 'main' AND t.type IN ('table', 'shadow') ORDER BY t.name, i.name, x.seqno"
        )
    ]
    approximated = {p.index_name: p.collation for p in parts if p.key and p.collation and is_approximated(p.collation)}
    held = {p.table for p in parts if p.index_name in approximated}
    indexes: dict[str, list[_KeyPart]] = {}
    for p in parts:
        if p.table in held:
            indexes.setdefault(p.index_name, []).append(p)
    return [_index_check(conn, entry, approximated.get(name)) for name, entry in indexes.items()]


def _index_check(conn: apsw.Connection, entry: list[_KeyPart], collation: str | None) -> IndexCheck:
    first = entry[0]
    check = IndexCheck(first.index_name, first.table, collation)
    if (first.without_rowid and first.origin == "pk") or any(p.cid == -2 for p in entry):
        return check  # the table's own key, or an expression: nothing to read apart from the table
    columns = tuple("_rowid_" if p.cid == -1 else quote(str(p.column)) for p in entry)
    where = sqltext.index_where(first.sql) if first.sql else None
    full = IndexCheck(first.index_name, first.table, collation, columns, where)
    plan = " ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + _entries_sql(full, by_index=True)))
    return full if f"COVERING INDEX {first.index_name}" in plan else check


def _entries_sql(c: IndexCheck, *, by_index: bool) -> str:
    how = f"INDEXED BY {quote(c.index)}" if by_index else "NOT INDEXED"
    where = f" WHERE {c.where}" if c.where else ""
    return f"SELECT {', '.join(c.columns)} FROM main.{quote(c.table)} {how}{where}"


def _verdict(conn: apsw.Connection, pragma: str) -> list[str]:
    return [r[0] for r in conn.execute(f"PRAGMA {pragma}") if r[0] != "ok"]


def check_integrity(conn: apsw.Connection) -> IntegrityResult:
    """``integrity_check`` of the main database, except that no index is judged by a stand-in collation."""
    checks = index_checks(conn)
    if not checks:
        return IntegrityResult(_verdict(conn, "integrity_check")[:MAX_PROBLEMS])
    held = {c.table for c in checks}
    result = IntegrityResult(_verdict(conn, "quick_check"), [c.note() for c in checks])
    indexed = conn.execute(
        "SELECT DISTINCT m.name FROM main.sqlite_schema AS m, pragma_index_list(m.name) AS il"
        " WHERE m.type = 'table' ORDER BY m.name"
    ).fetchall()
    for table in (str(r[0]) for r in indexed):
        if table not in held:
            result.problems += _verdict(conn, f"integrity_check({quote(table)})")
    for c in checks:
        if c.readable:
            stored = digest_rows(conn.execute(_entries_sql(c, by_index=True)))
            expected = digest_rows(conn.execute(_entries_sql(c, by_index=False)))
            if stored != expected:
                result.problems.append(
                    f"index {c.index} does not hold the entries of table {c.table} ({stored[0]} entries, "
                    f"{expected[0]} rows)"
                )
    result.problems = result.problems[:MAX_PROBLEMS]
    return result


def integrity_notes(path: Path) -> list[str]:
    """What ``check_integrity`` says about the indexes of the database file ``path`` (without checking)."""
    conn = connect(path, readonly=True)
    try:
        return [c.note() for c in index_checks(conn)]
    finally:
        conn.close()
