"""Read a database's schema into a plain model (the planner's input): tables with their columns, indexes,
views, triggers, virtual tables and their shadow tables, counters and header pragmas."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import apsw

from . import sqltext
from .connect import database_error, pragma, quote, read_transaction
from .digest import DigestSpec, rowid_name

INTERNAL_TABLES = ("sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4")
GENERATED_VIRTUAL, GENERATED_STORED = 2, 3


@dataclass(frozen=True)
class Column:
    """One column as ``PRAGMA table_xinfo`` reports it; ``hidden`` 1 = hidden virtual-table column,
    2 = generated VIRTUAL, 3 = generated STORED."""

    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int
    hidden: int = 0

    @property
    def generated(self) -> bool:
        return self.hidden in (GENERATED_VIRTUAL, GENERATED_STORED)


@dataclass(frozen=True)
class Table:
    """A table (``kind`` table, virtual or shadow) and what the planner needs to know about it."""

    name: str
    sql: str
    kind: str
    columns: tuple[Column, ...]
    without_rowid: bool = False
    strict: bool = False
    autoincrement: bool = False
    module: str | None = None
    module_args: tuple[str, ...] = ()
    pk_index: bool = False  # SQLite built an index for the PRIMARY KEY: the key is not the rowid

    @property
    def visible_columns(self) -> tuple[Column, ...]:
        """Columns ``SELECT *`` returns (generated included, hidden virtual-table columns not)."""
        return tuple(c for c in self.columns if c.hidden != 1)

    @property
    def stored_columns(self) -> tuple[Column, ...]:
        """Columns an INSERT may name (not generated)."""
        return tuple(c for c in self.visible_columns if not c.generated)

    @property
    def rowid_alias(self) -> str | None:
        """The column that aliases the rowid, if any: the sole PRIMARY KEY column of a rowid table, declared
        exactly ``INTEGER``, for which SQLite built no index (``x INTEGER PRIMARY KEY DESC`` in a column
        definition is not an alias, ``PRIMARY KEY(x DESC)`` as a table constraint is: lang_createtable.html#rowid).
        """
        pks = [c for c in self.columns if c.pk]
        if self.without_rowid or self.kind != "table" or len(pks) != 1 or self.pk_index:
            return None
        return pks[0].name if pks[0].type.upper() == "INTEGER" else None

    @property
    def has_rowid(self) -> bool:
        return not self.without_rowid

    @property
    def rowid_name(self) -> str | None:
        """The name that reads this table's rowid (a column named ``_rowid_`` hides it under that name), None
        when it has none or when ``_rowid_``, ``rowid`` and ``oid`` are all columns."""
        return rowid_name(c.name for c in self.columns) if self.has_rowid else None

    @property
    def fts_content(self) -> str | None:
        """An FTS4/FTS5 table's ``content=`` option ('' when contentless), None when it keeps its own text. FTS3
        has no such option: ``USING fts3(a, content="x")`` declares a column named ``content``."""
        return self.option("content") if self.module in ("fts4", "fts5") else None

    def option(self, key: str) -> str | None:
        """A ``key=value`` argument of a virtual table (e.g. fts5 ``content``), unquoted."""
        for arg in self.module_args:
            kv = sqltext.split_option(arg)
            if kv and kv[0] == key:
                return kv[1]
        return None


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    sql: str | None
    unique: bool
    partial: bool


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    sql: str


@dataclass(frozen=True)
class View:
    name: str
    sql: str


@dataclass
class Schema:
    """Everything the planner and the reports need about one database."""

    tables: dict[str, Table] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    view_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sequence: dict[str, int] = field(default_factory=dict)
    has_stat1: bool = False
    user_version: int = 0
    application_id: int = 0
    page_size: int = 4096
    page_count: int = 0
    freelist_count: int = 0
    encoding: str = "UTF-8"
    auto_vacuum: int = 0
    journal_mode: str = "delete"

    def user_tables(self) -> list[Table]:
        """Tables and virtual tables the app owns (no shadow or sqlite_ tables)."""
        return [t for t in self.tables.values() if t.kind in ("table", "virtual")]

    def collations(self) -> set[str]:
        """Every collation name the schema's SQL uses."""
        sqls = [t.sql for t in self.tables.values()]
        sqls += [i.sql for i in self.indexes.values() if i.sql]
        sqls += [v.sql for v in self.views.values()] + [t.sql for t in self.triggers.values()]
        return set().union(*(sqltext.collations(s) for s in sqls)) if sqls else set()

    def counts(self) -> dict[str, int]:
        """Object counts for reports and the risk assessment."""
        tables = [t for t in self.tables.values() if t.kind == "table"]
        return {
            "tables": len(tables),
            "virtual_tables": sum(t.kind == "virtual" for t in self.tables.values()),
            "shadow_tables": sum(t.kind == "shadow" for t in self.tables.values()),
            "indexes": len(self.indexes),
            "views": len(self.views),
            "triggers": len(self.triggers),
        }


def digest_spec(t: Table) -> DigestSpec | None:
    """What a table's content digest covers: its visible columns (and rowid when it has one). FTS tables
    with their own content are digested; external-content and contentless ones hold no data of their own."""
    cols = tuple(c.name for c in t.visible_columns)
    if t.kind == "table":  # a rowid no name reads is invisible to every reader: not part of the content
        return DigestSpec(t.name, cols, rowid=t.rowid_name is not None)
    if t.module in ("fts3", "fts4", "fts5") and t.fts_content is None:
        return DigestSpec(t.name, cols, rowid=True)
    if t.module in ("rtree", "rtree_i32"):
        return DigestSpec(t.name, cols, rowid=False)  # the first column is the key
    if t.module == "geopoly":
        return DigestSpec(t.name, cols, rowid=True)
    return None


def digest_specs(s: Schema) -> list[DigestSpec]:
    """Digest specs of every table holding data, plus the AUTOINCREMENT counters."""
    specs = [spec for t in s.user_tables() if (spec := digest_spec(t)) is not None]
    if s.sequence:
        specs.append(DigestSpec("sqlite_sequence", ("name", "seq"), rowid=False))
    return specs


def read_schema(conn: apsw.Connection, schema: str = "main") -> Schema:
    """Read the schema of ``schema`` on ``conn`` (a read-only connection is enough).

    A database that cannot be read (corrupt pages, schema text that is not UTF-8, …) raises
    NotADatabaseError naming its file, never a raw apsw or decoding error."""
    try:
        with read_transaction(conn):
            return _read_schema(conn, schema)
    except (apsw.Error, UnicodeDecodeError) as err:
        try:
            name = conn.db_filename(schema) or schema
        except apsw.Error:
            name = schema
        raise database_error(Path(name), err) from err


def _read_schema(conn: apsw.Connection, schema: str) -> Schema:
    s = Schema(
        user_version=pragma(conn, "user_version", schema),
        application_id=pragma(conn, "application_id", schema),
        page_size=pragma(conn, "page_size", schema),
        page_count=pragma(conn, "page_count", schema),
        freelist_count=pragma(conn, "freelist_count", schema),
        encoding=conn.execute("PRAGMA encoding").get,
        auto_vacuum=pragma(conn, "auto_vacuum", schema),
        journal_mode=pragma(conn, "journal_mode", schema),
    )
    q = quote(schema)
    listing = list(conn.execute(f"PRAGMA {q}.table_list"))
    master = {
        name: (typ, tbl, sql)
        for typ, name, tbl, sql in conn.execute(f"SELECT type, name, tbl_name, sql FROM {q}.sqlite_schema")
    }
    for _, name, kind, _ncol, wr, strict in listing:
        if name.startswith("sqlite_") and name not in ("sqlite_sequence", "sqlite_stat1"):
            continue
        if name in INTERNAL_TABLES:
            s.has_stat1 = s.has_stat1 or name == "sqlite_stat1"
            continue
        if kind == "view":
            continue
        sql = master.get(name, ("", "", ""))[2] or ""
        try:
            cols = tuple(
                Column(n, t or "", bool(nn), d, pk, hid)
                for _, n, t, nn, d, pk, hid in conn.execute(f"PRAGMA {q}.table_xinfo({quote(name)})")
            )
        except apsw.SQLError:
            cols = ()  # a virtual table whose module this engine lacks: the planner refuses or drops it
        module: str | None = None
        args: tuple[str, ...] = ()
        if kind == "virtual":
            parsed = sqltext.parse_virtual_table(sql)
            module, args = parsed.module.lower(), parsed.args
        s.tables[name] = Table(
            name=name,
            sql=sql,
            kind=kind,
            columns=cols,
            without_rowid=bool(wr),
            strict=bool(strict),
            autoincrement=_autoincrement(sql),
            module=module,
            module_args=args,
            pk_index=kind == "table" and _has_pk_index(conn, q, name),
        )
    for name, (typ, tbl, sql) in master.items():
        if typ == "index":
            unique, partial = _index_flags(conn, q, tbl, name)
            s.indexes[name] = Index(name, tbl, sql, unique, partial)
        elif typ == "view":
            s.views[name] = View(name, sql)
            try:
                s.view_columns[name] = tuple(r[1] for r in conn.execute(f"PRAGMA {q}.table_info({quote(name)})"))
            except apsw.Error:
                s.view_columns[name] = ()  # a view this engine cannot prepare: proved (and refused) later
        elif typ == "trigger":
            s.triggers[name] = Trigger(name, tbl, sql)
    if "sqlite_sequence" in master:
        s.sequence = dict(conn.execute(f"SELECT name, seq FROM {q}.sqlite_sequence"))
    return s


def _autoincrement(sql: str) -> bool:
    return any(t.kind == "word" and t.text.upper() == "AUTOINCREMENT" for t in sqltext.tokenize(sql))


def _has_pk_index(conn: apsw.Connection, q: str, table: str) -> bool:
    """Did SQLite build an index for the table's PRIMARY KEY (so that the key is not the rowid)?"""
    return any(origin == "pk" for *_, origin, _ in conn.execute(f"PRAGMA {q}.index_list({quote(table)})"))


def _index_flags(conn: apsw.Connection, q: str, table: str, name: str) -> tuple[bool, bool]:
    for _, iname, unique, _origin, partial in conn.execute(f"PRAGMA {q}.index_list({quote(table)})"):
        if iname == name:
            return bool(unique), bool(partial)
    return False, False


# -- the schema as sqlite_schema stores it ----------------------------------------------------------------------
# Every object of a database's main schema (type, name, tbl_name, sql, is-a-shadow-table), then its user_version
# and application_id as ('pragma', name, '', value, 0); one query, so apsw and sql.js read it alike.
STORED_SCHEMA_SQL = (
    "SELECT type, name, tbl_name, sql, name IN (SELECT name FROM pragma_table_list WHERE schema = 'main' AND "
    "type = 'shadow') FROM main.sqlite_schema "
    "UNION ALL SELECT 'pragma', 'user_version', '', user_version, 0 FROM pragma_user_version "
    "UNION ALL SELECT 'pragma', 'application_id', '', application_id, 0 FROM pragma_application_id"
)
# The same rows on SQLite < 3.37 (no pragma_table_list; e.g. npm's sql.js-fts5 1.4.0 ships 3.33): a table is
# taken as a shadow table when its name is a virtual table's name + "_" + a shadow suffix of FTS3/4/5 or rtree.
STORED_SCHEMA_SQL_BEFORE_3_37 = (
    "WITH fb_shadow(s) AS (VALUES ('data'), ('idx'), ('content'), ('docsize'), ('config'), ('segments'), "
    "('segdir'), ('stat'), ('node'), ('parent'), ('rowid')) "
    "SELECT type, name, tbl_name, sql, type = 'table' AND name IN (SELECT v.name || '_' || fb_shadow.s FROM "
    "main.sqlite_schema v, fb_shadow WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE%') "
    "FROM main.sqlite_schema "
    "UNION ALL SELECT 'pragma', 'user_version', '', user_version, 0 FROM pragma_user_version "
    "UNION ALL SELECT 'pragma', 'application_id', '', application_id, 0 FROM pragma_application_id"
)
_CREATE_NOISE = {"TEMP", "TEMPORARY", "IF", "NOT", "EXISTS"}


@dataclass(frozen=True)
class CreatedObject:
    """What a CREATE statement makes: sqlite_schema's ``type`` and name, and the statement as SQLite stores it
    up to whitespace and comments (``key``): SQLite keeps the text as written, from the object's name on, after a
    ``CREATE [UNIQUE|VIRTUAL] kind`` it writes itself (dropping TEMP, IF NOT EXISTS and the schema name)."""

    type: str
    name: str
    key: tuple[str, ...]
    sql: str


def created_object(sql: str) -> CreatedObject:
    """Parse ``CREATE [UNIQUE|VIRTUAL] TABLE|INDEX|VIEW|TRIGGER [IF NOT EXISTS] [schema.]name …``."""
    sig = [t for _, t in sqltext.significant(sqltext.tokenize(sql))]
    while sig and sig[-1].text == ";":
        sig.pop()
    k = next(
        i for i, t in enumerate(sig) if t.kind == "word" and t.text.upper() in ("TABLE", "INDEX", "VIEW", "TRIGGER")
    )
    head = tuple(w for t in sig[: k + 1] if (w := t.text.upper()) not in _CREATE_NOISE)
    k += 1
    while sig[k].kind == "word" and sig[k].text.upper() in _CREATE_NOISE:
        k += 1
    if k + 2 < len(sig) and sig[k + 1].text == ".":
        k += 2
    rest = tuple(t.text for t in sig[k + 1 :])
    return CreatedObject(head[-1].lower(), sig[k].name, (*head, sig[k].name.lower(), *rest), sql)
