"""Schema drift: what changed between the schema the old sql.js app knows and the database it will get back.

The old schema is the web app's own (``[app] schema``: a .sql file, or a folder of migration files run in name
order) or, failing that, the previous target file (the old sql.js database). ``compare_schemas`` (pure) lists
each table, column, index, trigger and view added, dropped, renamed (detected by shape), or changed in type,
nullability, default or constraints, plus ``user_version`` and ``application_id``, each with what it breaks
in the old app and a severity (info, warn, high).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import apsw

from ..db import sqltext
from ..db.connect import database_error, open_source, quote, register_stand_ins
from ..db.schema import STORED_SCHEMA_SQL, Column, Schema, Table, created_object, read_schema
from ..errors import ConfigError
from ..plan.model import Plan


@dataclass(frozen=True)
class AppSchema:
    """A schema and each table's constraints, normalized: ``CHECK (…)``, ``UNIQUE (a, b)``, ``FOREIGN KEY (a)
    REFERENCES t (b)``."""

    schema: Schema
    constraints: dict[str, frozenset[str]] = field(default_factory=dict)
    collations: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> collation (not BINARY)


@dataclass(frozen=True)
class Drift:
    """One difference between the old app's schema and the result, and what it breaks in the old app."""

    kind: str  # table, column, index, trigger, view, pragma
    name: str
    change: str  # added, dropped, renamed, type, nullability, default, constraint, changed
    detail: str
    breaks: str
    severity: str  # info, warn, high
    table: str = ""  # the table it belongs to (a table's own name), "" for views and pragmas


def _constraints(conn: apsw.Connection, t: Table) -> frozenset[str]:
    q = quote(t.name)
    out = {f"CHECK ({' '.join(c.expr.split())})" for c in sqltext.table_clauses(t.sql) if c.kind == "check"}
    for _, index, unique, origin, _partial in conn.execute(f"PRAGMA index_list({q})").fetchall():
        if unique and origin in ("u", "pk"):
            cols = [str(r[2]) for r in conn.execute(f"PRAGMA index_info({quote(str(index))})")]
            out.add(f"{'PRIMARY KEY' if origin == 'pk' else 'UNIQUE'} ({', '.join(cols)})")
    keys: dict[int, list[tuple[str, str, str]]] = {}
    for fid, _seq, parent, child, ref, *_ in conn.execute(f"PRAGMA foreign_key_list({q})"):
        keys.setdefault(fid, []).append((parent, child, ref or ""))
    for parts in keys.values():
        child = ", ".join(c for _, c, _ in parts)
        ref = ", ".join(r for _, _, r in parts)
        out.add(f"FOREIGN KEY ({child}) REFERENCES {parts[0][0]} ({ref})")
    return frozenset(out)


def read_app_schema(conn: apsw.Connection) -> AppSchema:
    """The schema of ``conn``'s main database with its tables' constraints."""
    s = read_schema(conn)
    tables = [t for t in s.user_tables() if t.kind == "table"]
    collations = {
        t.name: {
            c.name: coll.upper()
            for c in t.visible_columns
            if (coll := conn.column_metadata("main", t.name, c.name)[1]).upper() != "BINARY"
        }
        for t in tables
    }
    return AppSchema(s, {t.name: _constraints(conn, t) for t in tables}, collations)


def schema_from_sql(text: str, where: str) -> AppSchema:
    """The schema a SQL script (the web app's schema or its migrations) creates in an empty database."""
    conn = apsw.Connection(":memory:")
    try:
        conn.execute(text)
        return read_app_schema(conn)
    except apsw.Error as err:
        raise ConfigError(f"{where}: the old app's schema does not run: {err}", "fix [app] schema") from None
    finally:
        conn.close()


def planned_app_schema(plan: Plan) -> AppSchema:
    """The schema the database built from ``plan`` will have (created without data, in memory). It depends on the
    plan's statements, stand-ins and header values only: plans that agree on them (a fleet's tenants of one app)
    share one result, which nobody changes."""
    return _planned(*_planned_key(plan))


def _planned_key(plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, int]]:
    """What ``planned_app_schema`` depends on: the plan's stand-ins, CREATE statements and header values."""
    creates = [sql for sql in plan.virtual_tables if sql.lstrip().upper().startswith("CREATE")]
    statements = (*plan.create_tables, *plan.early_indexes, *plan.late_indexes, *creates, *plan.views, *plan.triggers)
    header = (int(plan.pragmas.get("user_version", 0)), int(plan.pragmas.get("application_id", 0)))
    return tuple(plan.stand_ins), statements, header


@functools.lru_cache(maxsize=16)
def _planned(stand_ins: tuple[str, ...], statements: tuple[str, ...], header: tuple[int, int]) -> AppSchema:
    conn = apsw.Connection(":memory:")
    try:
        register_stand_ins(conn, stand_ins, lambda *_: None)
        for sql in statements:
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {header[0]}")
        conn.execute(f"PRAGMA application_id = {header[1]}")
        return read_app_schema(conn)
    finally:
        conn.close()


OldSchemaKey = tuple[object, ...]
T = TypeVar("T")


def _old_schema(
    app_schema: Path | None, previous: Path, use: Callable[[Callable[[], OldSchemaKey], Callable[[], AppSchema]], T]
) -> tuple[T, str] | None:
    """``use(key, load)`` on the schema the old app knows, and where it came from (None: unknown). ``load`` reads
    it: ``app_schema`` (a .sql file, or a folder whose .sql files run in name order), else the previous target
    file. ``key`` reads only what decides it: ``app_schema``'s text, or the previous file's stored schema (each
    object's SQL, user_version and application_id; see ``STORED_SCHEMA_SQL``)."""
    if app_schema is not None:
        files = sorted(app_schema.glob("*.sql")) if app_schema.is_dir() else [app_schema]
        try:
            text = "\n".join(f.read_text(encoding="utf-8") for f in files)
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{app_schema}: cannot read the old app's schema ({err})", "fix [app] schema") from None
        return use(lambda: ("sql", text), lambda: schema_from_sql(text, str(app_schema))), str(app_schema)
    if not previous.exists():
        return None
    conn = open_source(previous)
    try:

        def stored() -> OldSchemaKey:
            return ("file", *map(tuple, conn.execute(STORED_SCHEMA_SQL)))

        return use(stored, lambda: read_app_schema(conn)), str(previous)
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(previous, err) from err
    finally:
        conn.close()


def load_old_schema(app_schema: Path | None, previous: Path) -> tuple[AppSchema, str] | None:
    """The schema the old app knows and where it came from: ``app_schema`` (a .sql file, or a folder whose
    .sql files run in name order), else the previous target file, else None (nothing to compare with)."""
    return _old_schema(app_schema, previous, lambda _key, load: load())


_drifts: dict[tuple[object, ...], tuple[Drift, ...]] = {}  # old_app_drift's comparisons, by what decides them
DRIFTS_KEPT = 16


def old_app_drift(
    app_schema: Path | None,
    previous: Path,
    plan: Plan,
    missing: Callable[[str], list[str]],
    missing_from: tuple[object, ...],
) -> tuple[list[Drift], str] | None:
    """``compare_schemas`` of the schema the old app knows (``load_old_schema``'s) and the database ``plan``
    builds, and where the old one came from; None when it is unknown. A comparison is kept by what decides it —
    the old schema's text (see ``_old_schema``), the plan's statements (``planned_app_schema``) and
    ``missing_from`` (what ``missing`` answers from) —, so a fleet's tenants of one app compare once per process;
    an old schema whose text cannot be read alone is read in full (its error is the full read's)."""

    def use(key: Callable[[], OldSchemaKey], load: Callable[[], AppSchema]) -> list[Drift]:
        try:
            memo = (key(), _planned_key(plan), missing_from)
        except (apsw.Error, UnicodeDecodeError):
            return compare_schemas(load(), planned_app_schema(plan), missing)
        found = _drifts.get(memo)  # read once: a fleet worker's other thread may clear the memo meanwhile
        if found is None:
            found = tuple(compare_schemas(load(), planned_app_schema(plan), missing))
            if len(_drifts) >= DRIFTS_KEPT:
                _drifts.clear()
            _drifts[memo] = found
        return list(found)

    return _old_schema(app_schema, previous, use)


# -- compare (pure) -----------------------------------------------------------------------------------
def _tables(s: Schema) -> dict[str, Table]:
    return {t.name: t for t in s.user_tables()}


def _shape(t: Table) -> tuple[tuple[str, str], ...]:
    return tuple((c.name.lower(), c.type.upper()) for c in t.visible_columns)


def _body(sql: str) -> tuple[str, ...]:
    """An object's CREATE statement without its name, identifiers unquoted and words in lower case: equal for an
    object renamed and otherwise unchanged."""
    obj = created_object(sql)
    at = obj.key.index(obj.name.lower())
    words = (*obj.key[:at], *obj.key[at + 1 :])
    return tuple(t.name.lower() if t.kind in ("word", "quoted") else t.text for w in words for t in sqltext.tokenize(w))


def _renames(dropped: list[str], added: list[str], same: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """Pairs (old, new) of a dropped and an added object of the same shape, each used once."""
    pairs, free = [], list(added)
    for old in dropped:
        new = next((n for n in free if same(old, n)), None)
        if new is not None:
            pairs.append((old, new))
            free.remove(new)
    return pairs


def compare_schemas(
    old: AppSchema, new: AppSchema, missing_functions: Callable[[str], list[str]] = lambda _sql: []
) -> list[Drift]:
    """Every difference the old app meets in ``new`` (the database it gets back) against ``old`` (the schema it
    knows); ``missing_functions``: the functions an SQL text calls that the old app's engine lacks (pure)."""
    out = list(_table_drift(old, new))
    out += _object_drift("index", _indexes(old.schema), _indexes(new.schema), _index_breaks)
    out += _object_drift("view", _views(old.schema), _views(new.schema), _view_breaks)
    out += _object_drift(
        "trigger",
        {n: t.sql for n, t in old.schema.triggers.items()},
        {n: t.sql for n, t in new.schema.triggers.items()},
        lambda change, sql: _trigger_breaks(change, sql, missing_functions),
    )
    out += _header_drift(old.schema, new.schema)
    return [replace(d, table=_owner(d, old.schema, new.schema)) for d in out]


def _owner(d: Drift, old: Schema, new: Schema) -> str:
    if d.kind in ("table", "column"):
        return d.name if d.kind == "table" else d.name.rsplit(".", 1)[0]
    owners = {**{n: i.table for n, i in old.indexes.items()}, **{n: t.table for n, t in old.triggers.items()}}
    owners |= {n: i.table for n, i in new.indexes.items()} | {n: t.table for n, t in new.triggers.items()}
    return owners.get(d.name, "") if d.kind in ("index", "trigger") else ""


def _table_drift(old: AppSchema, new: AppSchema) -> Iterator[Drift]:
    ot, nt = _tables(old.schema), _tables(new.schema)
    dropped = [n for n in ot if n not in nt]
    added = [n for n in nt if n not in ot]
    renamed = _renames(dropped, added, lambda a, b: _shape(ot[a]) == _shape(nt[b]))
    for a, b in renamed:
        yield Drift("table", a, "renamed", f"now {b}", f"old queries naming {a} fail (no such table: {a})", "high")
    gone = {a for a, _ in renamed} | {b for _, b in renamed}
    for name in dropped:
        if name not in gone:
            yield Drift("table", name, "dropped", "", f"old queries on {name} fail (no such table: {name})", "high")
    for name in added:
        if name not in gone:
            yield Drift(
                "table", name, "added", "", "the old app does not know it: its rows are kept but unused", "info"
            )
    for name in ot.keys() & nt.keys():
        yield from _column_drift(ot[name], nt[name])
        oc, nc = old.collations.get(name, {}), new.collations.get(name, {})
        common = {c.name for c in ot[name].visible_columns} & {c.name for c in nt[name].visible_columns}
        for col in sorted(common):
            was, now = oc.get(col, "BINARY"), nc.get(col, "BINARY")
            if was != now:
                yield Drift(
                    "column", f"{name}.{col}", "collation", f"{was} -> {now}",
                    "old comparisons, sorting and unique keys on it follow the new collation", "warn",
                )  # fmt: skip
        for c in sorted(new.constraints.get(name, frozenset()) - old.constraints.get(name, frozenset())):
            yield Drift(
                "table", name, "constraint", f"adds {c}", f"old writes to {name} that break it are rejected", "warn"
            )
        for c in sorted(old.constraints.get(name, frozenset()) - new.constraints.get(name, frozenset())):
            yield Drift("table", name, "constraint", f"drops {c}", "the old app can no longer rely on it", "info")


def _column_drift(o: Table, n: Table) -> Iterator[Drift]:
    oc = {c.name: c for c in o.visible_columns}
    nc = {c.name: c for c in n.visible_columns}
    dropped = [c for c in oc if c not in nc]
    added = [c for c in nc if c not in oc]
    renamed = _renames(dropped, added, lambda a, b: oc[a].type.upper() == nc[b].type.upper())
    gone = {a for a, _ in renamed} | {b for _, b in renamed}
    t = o.name
    for a, b in renamed:
        yield Drift(
            "column", f"{t}.{a}", "renamed", f"now {b}", f"old queries naming {a} fail (no such column)", "high"
        )
    for name in dropped:
        if name not in gone:
            yield Drift(
                "column", f"{t}.{name}", "dropped", "", f"old queries naming {name} fail (no such column)", "high"
            )
    for name in added:
        if name in gone:
            continue
        c = nc[name]
        if c.notnull and c.default is None and not c.generated and c.pk == 0:
            yield Drift(
                "column",
                f"{t}.{name}",
                "added",
                f"{c.type} NOT NULL without a default",
                f"every old INSERT into {t} fails (NOT NULL constraint failed: {t}.{name})",
                "high",
            )
        else:
            yield Drift(
                "column", f"{t}.{name}", "added", c.type, "old INSERTs leave it at its default; SELECT * widens", "info"
            )
    for name in oc.keys() & nc.keys():
        yield from _changed_column(t, oc[name], nc[name])


def _changed_column(t: str, o: Column, n: Column) -> Iterator[Drift]:
    where = f"{t}.{o.name}"
    if o.type.upper() != n.type.upper():
        yield Drift(
            "column", where, "type", f"{o.type or '(none)'} -> {n.type or '(none)'}",
            "values may be stored and read back with another type (affinity)", "warn",
        )  # fmt: skip
    if n.notnull and not o.notnull:
        severe = n.default is None
        yield Drift(
            "column", where, "nullability", "now NOT NULL" + ("" if severe else f" DEFAULT {n.default}"),
            f"old writes of NULL to {o.name} fail" + (", and INSERTs that leave it out" if severe else ""),
            "high" if severe else "warn",
        )  # fmt: skip
    elif o.notnull and not n.notnull:
        yield Drift(
            "column", where, "nullability", "now nullable", "the old app may read a NULL it never wrote", "info"
        )
    if (o.default or None) != (n.default or None):
        severe = n.default is None and n.notnull
        yield Drift(
            "column", where, "default", f"{o.default} -> {n.default}",
            f"old INSERTs that leave {o.name} out fail (NOT NULL constraint failed: {where})" if severe
            else f"old INSERTs that leave {o.name} out store {n.default} instead of {o.default}",
            "high" if severe else "info",
        )  # fmt: skip


def _indexes(s: Schema) -> dict[str, str]:
    return {i.name: i.sql for i in s.indexes.values() if i.sql}


def _views(s: Schema) -> dict[str, str]:
    return {v.name: v.sql for v in s.views.values()}


def _index_breaks(change: str, sql: str) -> tuple[str, str]:
    if change == "renamed":
        return "none: the same index under another name", "info"
    unique = "UNIQUE" in created_object(sql).key[:2]
    if change == "dropped":
        return (
            ("old writes are no longer kept unique by it", "warn") if unique else ("old queries may be slower", "info")
        )
    if unique:
        return "old writes that duplicate its key are rejected", "warn"
    return "none: the old app's writes maintain it", "info"


def _view_breaks(change: str, _sql: str) -> tuple[str, str]:
    if change == "added":
        return "none: the old app does not query it", "info"
    if change == "changed":
        return "old queries on it may get other columns or rows", "warn"
    return "old queries on it fail (no such table)", "high"


def _trigger_breaks(change: str, sql: str, missing: Callable[[str], list[str]]) -> tuple[str, str]:
    if change == "dropped":
        return "what it did on old writes no longer happens (e.g. keeping a search index in sync)", "warn"
    if change != "renamed" and (lacks := missing(sql)):
        return f"calls {', '.join(lacks)}, which the old app's engine lacks: every old write it fires on fails", "high"
    return "runs on the old app's writes", "info" if change == "renamed" else "warn"


def _object_drift(
    kind: str, old: dict[str, str], new: dict[str, str], breaks: Callable[[str, str], tuple[str, str]]
) -> Iterator[Drift]:
    dropped = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    renamed = _renames(dropped, added, lambda a, b: _body(old[a]) == _body(new[b]))
    gone = {a for a, _ in renamed} | {b for _, b in renamed}
    for a, b in renamed:
        yield Drift(kind, a, "renamed", f"now {b}", *breaks("renamed", new[b]))
    for name in dropped:
        if name not in gone:
            yield Drift(kind, name, "dropped", "", *breaks("dropped", old[name]))
    for name in added:
        if name not in gone:
            yield Drift(kind, name, "added", "", *breaks("added", new[name]))
    for name in old.keys() & new.keys():
        if _body(old[name]) != _body(new[name]):
            yield Drift(kind, name, "changed", "its SQL differs", *breaks("changed", new[name]))


def _header_drift(old: Schema, new: Schema) -> Iterator[Drift]:
    if new.user_version != old.user_version:
        newer = new.user_version > old.user_version
        yield Drift(
            "pragma",
            "user_version",
            "changed",
            f"{old.user_version} -> {new.user_version}",
            "an old migration runner may refuse a version newer than it knows"
            if newer
            else "an old migration runner may run its migrations again",
            "high",
        )
    if new.application_id != old.application_id:  # an app whose files carried none does not check it
        yield Drift(
            "pragma",
            "application_id",
            "changed",
            f"{old.application_id} -> {new.application_id}",
            "an app that checks it refuses the file" if old.application_id else "none: the old app set none",
            "high" if old.application_id else "info",
        )
