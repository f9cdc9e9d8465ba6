"""How failback judges a database's integrity.

**Source integrity**: the snapshot's ``quick_check``, and whether the conversion may repair what it finds.

SQLite 3.54 (apsw and sql.js alike) also checks every FTS3/4/5 inverted index against its text in
``quick_check``. A damaged source is refused (exit 3). The one exception is damage confined to the indexes of
FTS tables the target builds anew from their text (which quick_check found intact): the conversion then
repairs them — but only when the user asks with ``--repair-fts``, and the run records it as a repair.

Cost (apsw, 2 cores, file cached): the whole-file check takes 0.32 s on the 100 MB notes database, 0.25 s of it
the FTS5 index; checking table by table (``quick_check(t)`` for every table and virtual table) costs the
same in sum and skips the page accounting (pages used twice or never), so the whole file is checked at once.

**Indexes on approximated collations**: checks that never judge an index by a collation failback only
approximates.

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

import re
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import apsw

from ..errors import SourceDamaged
from ..plan.model import Action, Plan
from . import sqltext
from .collations import is_approximated
from .connect import connect, quote
from .digest import digest_rows
from .schema import Schema

FTS_MODULES = ("fts3", "fts4", "fts5")
_FTS_INDEX_DAMAGE = (
    re.compile(r"malformed inverted index for FTS[345] table main\.(?P<table>.+)"),
    re.compile(r'fts5: corruption .* table "(?P<table>.+)"'),
)
_TREE = re.compile(r"\bTree (\d+)\b")
_IN_MAIN = re.compile(r"^\*\*\* in database main \*\*\*\s*")


@dataclass(frozen=True)
class IntegrityVerdict:
    """quick_check's problems, sorted: FTS indexes the target rebuilds from their text, and everything else."""

    problems: tuple[str, ...]
    fts_indexes: tuple[str, ...]  # FTS tables whose damaged index the target builds anew
    other: tuple[str, ...]  # problems the conversion cannot repair

    @property
    def repairable(self) -> bool:
        """Damaged, and only in FTS indexes the target rebuilds."""
        return bool(self.problems) and not self.other


def fts_index_table(problem: str) -> str | None:
    """The FTS table whose inverted index a check's ``problem`` reports damaged, or None (another problem)."""
    return next((str(m["table"]) for rx in _FTS_INDEX_DAMAGE if (m := rx.fullmatch(problem))), None)


def judge_integrity(problems: Sequence[str], rebuilt: Collection[str]) -> IntegrityVerdict:
    """Sort quick_check's problems (``ok`` rows excluded): damage to the index of an FTS table in ``rebuilt``
    is repairable; anything else (a b-tree, the page accounting, an index the target keeps or drops) is not."""
    fts: list[str] = []
    other: list[str] = []
    for problem in problems:
        table = fts_index_table(problem) or ""
        if table not in rebuilt:
            other.append(problem)
        elif table not in fts:
            fts.append(table)
    return IntegrityVerdict(tuple(problems), tuple(fts), tuple(other))


def rebuilt_fts(schema: Schema, plan: Plan) -> set[str]:
    """FTS tables whose index the target builds anew from their text: those the plan keeps or converts, unless
    contentless (``content=''``: no text to build from)."""
    kept = {d.name for d in plan.decisions if d.kind == "virtual table" and d.action in (Action.KEEP, Action.CONVERT)}
    return {
        t.name for t in schema.tables.values() if t.module in FTS_MODULES and t.name in kept and t.fts_content != ""
    }


def refusal(verdict: IntegrityVerdict, source: Path) -> SourceDamaged:
    """The one-line error for a damaged source: what is damaged, and what the user can do."""
    if verdict.repairable:
        tables, first = ", ".join(verdict.fts_indexes), quote(verdict.fts_indexes[0])
        return SourceDamaged(
            f"{source}: the FTS index of {tables} is malformed (quick_check); its text is intact and the target "
            "would rebuild the index from it: a repair",
            "pass --repair-fts to let the conversion repair it (recorded in the report and the audit log), or "
            f"rebuild the index in the source first (INSERT INTO {first}({first}) VALUES('rebuild'))",
        )
    more = f" (and {len(verdict.problems) - 1} more problem(s))" if len(verdict.problems) > 1 else ""
    return SourceDamaged(
        f"{source} is damaged (quick_check): {verdict.other[0]}{more}",
        "restore the source from a backup or recover it (sqlite3 .recover) first; nothing was converted",
    )


@dataclass(frozen=True)
class SourceIntegrity:
    """The snapshot's quick_check and what was done about it: FTS indexes repaired by the conversion."""

    problems: tuple[str, ...]
    repaired: tuple[str, ...]
    seconds: float

    @property
    def note(self) -> str:
        """What the repair did, in one line (empty when nothing was repaired)."""
        return repair_note(self.to_json()) if self.repaired else ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def repair_note(data: dict[str, Any]) -> str:
    """What a repair did, in one line (``data``: SourceIntegrity JSON with ``repaired`` tables)."""
    return (
        f"FTS index of {', '.join(data['repaired'])} rebuilt from its intact text (--repair-fts); "
        f"the source failed quick_check: {'; '.join(data['problems'][:3])}"
    )


def quick_check_file(path: Path) -> list[str]:
    """``PRAGMA quick_check`` of a whole database file (every b-tree, the page accounting and, on SQLite 3.54,
    every FTS index): its problems, one line each, b-trees named by their table; a check that stops on an
    error (a page too damaged to read) ends the list with it."""
    conn = connect(path, readonly=True)
    rows: list[str] = []
    roots: dict[int, str] = {}
    try:
        roots.update(conn.execute("SELECT rootpage, name FROM sqlite_schema WHERE rootpage > 0"))
        rows += (str(r[0]) for r in conn.execute("PRAGMA quick_check"))
    except (apsw.Error, UnicodeDecodeError) as err:
        rows.append(f"quick_check stops: {err}")
    finally:
        conn.close()
    return [
        _TREE.sub(lambda m: f"{m[0]} ({roots.get(int(m[1]), 'unknown')})", " ".join(_IN_MAIN.sub("", r).split()))
        for r in rows
        if r != "ok"
    ]


def check_source(snapshot: Path, source: Path, schema: Schema, plan: Plan, repair_fts: bool) -> SourceIntegrity:
    """quick_check the snapshot of ``source``; raise SourceDamaged (exit 3) unless it is intact, or its damage is
    confined to FTS indexes the target rebuilds and ``repair_fts`` allows the repair."""
    t0 = time.perf_counter()
    verdict = judge_integrity(quick_check_file(snapshot), rebuilt_fts(schema, plan))
    if verdict.problems and not (verdict.repairable and repair_fts):
        raise refusal(verdict, source)
    return SourceIntegrity(verdict.problems, verdict.fts_indexes, time.perf_counter() - t0)


# -- integrity checks that never judge an index by an approximated collation ----------------------------
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


def known_fts_damage(problems: Sequence[str], recorded: Sequence[str]) -> tuple[str, ...]:
    """The FTS tables whose damaged index explains all of ``problems`` (``check_integrity``'s, on a copy) when
    every one of them is such damage and was found in the original when the copy was made (``recorded``: its
    quick_check findings); () when anything else is wrong, or the list was cut at ``MAX_PROBLEMS``."""
    tables = [fts_index_table(p) for p in problems]
    if not problems or len(problems) >= MAX_PROBLEMS or None in tables or not set(problems) <= set(recorded):
        return ()
    return tuple(dict.fromkeys(t for t in tables if t is not None))
