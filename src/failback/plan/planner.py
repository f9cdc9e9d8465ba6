"""The conversion planner (pure): schema model + capability profile + options → a plan.

One decision per schema object, each with its reason, and the exact statements that build the target.
Nothing here touches a file; ``export.py`` carries a plan out and ``verify.py`` proves it.

App functions (SQL functions the target lacks, e.g. ones the app registers itself) are found by tokens in
every object that can call one. The rule, per kind, for a function declared in ``[app] functions``:

* view, trigger, column DEFAULT, CHECK: kept as they are, with a warning (the sql.js app must register the
  function). They are proved in the target engine with a stand-in returning NULL: preparing (EXPLAIN)
  resolves a function by name and arity only, so the proof is sound for "compiles", not for values. The
  build never calls one: a DEFAULT is not evaluated (every column is copied), views and triggers are created
  after the data, CHECKs are not evaluated during the copy (the rows passed them with the app's function
  when they were written); the build's stand-in raises if it is ever called, so no stand-in value can
  reach the target.
* expression or partial index, generated column: refused even when declared. Building them needs the
  function's real values (failback only has a stand-in), and sql.js's ``create_function`` registers
  non-deterministic functions, which SQLite forbids there: with the app's function registered, sql.js
  reports the whole schema malformed.

A function not declared is refused with the object and the function named. ``[convert] allow_drop`` names
the object to drop instead: an index, view or trigger by its name; a DEFAULT (removed: the column keeps its
other constraints), a column CHECK or a STORED generated column (materialized: a plain column holding the
values copied from the source's records) as ``table.column``; a table-level CHECK as ``table.check``
(every table CHECK calling the function). A VIRTUAL generated column cannot be dropped: its values exist
only as the app's function computes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import ConvertConfig
from ..db import sqltext
from ..db.collations import target_for
from ..db.connect import quote
from ..db.digest import MAX_COLUMNS, DigestSpec
from ..db.schema import Schema, Table, digest_spec
from ..db.sqltext import string_literal
from ..profiles import Profile, function_declared
from .fts import FTS5_COMMANDS, Fts5, fts4_tokenizer, parse_fts5
from .model import Action, Copy, Decision, Plan, Proof, SearchPair

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KIND_ORDER = (
    "pragma",
    "collation",
    "table",
    "default",
    "check",
    "generated column",
    "virtual table",
    "shadow table",
    "index",
    "view",
    "trigger",
)


def collation_choice(name: str, profile: Profile, options: ConvertConfig) -> tuple[str, str] | None:
    """(collation the target uses for ``name``, why); None when the target has it. ``[convert] collations``
    overrides the choice made by what the collation does (``collations.target_for``)."""
    if profile.has_collation(name):
        return None
    for key, value in options.collations.items():
        if key.lower() == name.lower():  # a name from the config: it reaches SQL only as an identifier
            return (value if _PLAIN_NAME.fullmatch(value) else quote(value)), "as [convert] collations says"
    return target_for(name)


def target_collation(name: str, profile: Profile, options: ConvertConfig) -> str | None:
    """The collation to use in the target for ``name``; None when the target has it."""
    choice = collation_choice(name, profile, options)
    return choice[0] if choice else None


def plan_conversion(
    schema: Schema,
    profile: Profile,
    options: ConvertConfig | None = None,
    functions: list[str] | None = None,
    user_version: UserVersion | None = None,
) -> Plan:
    """Decide, for every object of ``schema``, what the target built for ``profile`` holds. ``functions``:
    the app functions the target's app registers (``[app] functions``, "name/arity"); ``user_version``: the
    one the result carries and why (default: the source's)."""
    return _Planner(schema, profile, options or ConvertConfig(), functions or [], user_version).plan()


@dataclass(frozen=True)
class UserVersion:
    """The ``user_version`` chosen for the result and where it comes from (``target.user_version``)."""

    value: int
    origin: str  # "source", "previous" or "configured"


class _Planner:
    def __init__(
        self,
        schema: Schema,
        profile: Profile,
        options: ConvertConfig,
        functions: list[str],
        user_version: UserVersion | None = None,
    ) -> None:
        self.s, self.p, self.o = schema, profile, options
        self.functions = functions
        self.user_version = user_version or UserVersion(schema.user_version, "source")
        self.plan_ = Plan(profile.name)
        self.allowed = {n.lower() for n in options.allow_drop}
        self.fts_converted: dict[str, Table] = {}  # FTS5 tables converted (by name)
        self.dropped: set[str] = set()
        self.changed_tables: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------
    def decide(self, kind: str, name: str, action: Action, reason: str, severity: str = "info") -> None:
        self.plan_.decisions.append(Decision(kind, name, action, reason, severity))

    def refuse_or_drop(self, kind: str, name: str, reason: str, severity: str = "high") -> None:
        """An object the target cannot hold: dropped when allowed, else the run stops."""
        self.dropped.add(name)
        if name.lower() in self.allowed:
            self.decide(kind, name, Action.DROP, f"{reason}; dropped (allowed by convert.allow_drop)", severity)
        else:
            self.decide(kind, name, Action.REFUSE, f"{reason}; add it to convert.allow_drop to drop it", severity)

    def missing_functions(self, sql: str) -> list[str]:
        """The functions ``sql`` calls that the target lacks, as "name/arity" (first use first)."""
        calls = sqltext.function_calls(sql)
        return list(dict.fromkeys(f"{n}/{a}" for n, a in calls if not self.p.has_function(n, a)))

    def undeclared(self, missing: list[str]) -> list[str]:
        """Of ``missing``, the functions ``[app] functions`` does not declare."""
        return [f for f in missing if not function_declared(*_name_arity(f), self.functions)]

    def app_functions(self, kind: str, name: str, sql: str, *, values: bool = False) -> str | None:
        """Decide the app functions an object calls (see the module docstring). None: the object is refused or
        dropped (decided here); "": it calls none; else the note for the caller's KEEP decision (every function
        declared and ``values`` False: the object is never computed into the target)."""
        missing = self.missing_functions(sql)
        if not missing:
            return ""
        calls = ", ".join(missing)
        if undeclared := self.undeclared(missing):
            why = (
                f"calls {', '.join(undeclared)}, which {self.p.name} lacks: declare it in [app] functions if the "
                "app registers it"
            )
        elif values:
            why = (
                f"calls {calls}: building it needs the app function's values (failback has only a stand-in), and "
                "sql.js registers app functions as non-deterministic, which SQLite forbids here"
            )
        else:
            for f in missing:
                entry = next(d for d in self.functions if function_declared(*_name_arity(f), [d]))
                if entry not in self.plan_.stand_ins:
                    self.plan_.stand_ins.append(entry)
            return f"calls {calls}: the sql.js app must register it (declared in [app] functions)"
        self.refuse_or_drop(kind, name, why)
        return None

    def digest(self, t: Table) -> None:
        """Compare this table's content in snapshot and target (same spec on both sides)."""
        if (spec := digest_spec(t)) is not None:
            self.plan_.digests.append(spec)

    def rewrite(self, sql: str) -> str:
        return sqltext.replace_collations(sql, lambda n: target_collation(n, self.p, self.o))

    # -- the plan ---------------------------------------------------------------------------------
    def plan(self) -> Plan:
        self.pragmas()
        self.collations()
        for table in self.s.tables.values():
            if table.kind == "shadow":
                self.decide("shadow table", table.name, Action.SKIP, "internal to its virtual table; rebuilt with it")
            elif table.kind == "virtual":
                self.virtual_table(table)
            else:
                self.table(table)
        self.indexes()
        self.counters()
        self.views()
        self.triggers()
        self.plan_.decisions.sort(key=lambda d: KIND_ORDER.index(d.kind))
        return self.plan_

    def pragmas(self) -> None:
        max_page = self.p.limits.get("max_page_size", 65536)
        page = self.o.page_size or self.s.page_size
        if page > max_page:
            self.decide("pragma", "page_size", Action.CONVERT, f"{page} exceeds the target's {max_page}", "warn")
            page = max_page
        self.plan_.pragmas = {
            "page_size": page,
            "encoding": self.s.encoding,
            "auto_vacuum": self.s.auto_vacuum,
            "user_version": self.user_version.value,
            "application_id": self.s.application_id,
        }
        uv = self.user_version
        self.decide(
            "pragma",
            "user_version/application_id",
            Action.KEEP,
            f"user_version {uv.value}, application_id {self.s.application_id}, page size {page}, "
            f"{self.s.encoding}; written in journal_mode DELETE (one file for the browser)",
        )
        if uv.value != self.s.user_version:
            self.decide(
                "pragma",
                "user_version",
                Action.CONVERT,
                f"{self.s.user_version} -> {uv.value} ({uv.origin}, target.user_version): the old app's migration "
                "runner sees the version it knows",
                "warn",
            )

    def collations(self) -> None:
        for name in sorted(self.s.collations()):
            choice = collation_choice(name, self.p, self.o)
            if choice is not None:
                self.plan_.collation_map[name] = choice[0]
                self.decide(
                    "collation", name, Action.CONVERT, f"not in the target; uses {choice[0]}: {choice[1]}", "warn"
                )

    def table(self, t: Table) -> None:
        if t.without_rowid and not self.p.has("without_rowid"):
            self.refuse_or_drop("table", t.name, "the target lacks WITHOUT ROWID")
            return
        source_sql, materialized = self.table_functions(t)
        sql = self.rewrite(source_sql)
        notes = ["collations mapped"] if sql != source_sql else []
        if source_sql != t.sql:
            notes.append("clauses calling app functions dropped (allowed by convert.allow_drop)")
        if t.strict and not self.p.has("strict"):
            sql = sqltext.strip_table_options(sql, {"STRICT"})
            notes.append("STRICT dropped (the target lacks it; STRICT already guaranteed every value's type)")
        if any(c.generated for c in t.columns) and not self.p.has("generated_columns"):
            sql = sqltext.strip_generated(sql)
            materialized = {c.name for c in t.columns if c.generated}
            notes.append("generated columns materialized: their values are copied, no longer computed")
        if notes:
            self.changed_tables.add(t.name)
            self.decide("table", t.name, Action.CONVERT, "; ".join(notes), "warn")
        else:
            self.decide("table", t.name, Action.KEEP, "supported as is")
        self.plan_.create_tables.append(sql)
        self.plan_.copies.append(self.copy_for(t, xfer=not notes, materialized=materialized))
        self.digest(t)

    def table_functions(self, t: Table) -> tuple[str, set[str]]:
        """Decide each DEFAULT, CHECK and generated column of ``t`` that calls app functions: the table's SQL
        without the clauses ``allow_drop`` drops, and the STORED generated columns so materialized."""
        spans: list[tuple[int, int]] = []
        materialized: set[str] = set()
        for c in sqltext.table_clauses(t.sql):
            kind = {"generated": "generated column"}.get(c.kind, c.kind)
            name = f"{t.name}.{c.column if c.column is not None else 'check'}"
            if c.kind == "generated" and not c.stored and (missing := self.missing_functions(c.expr)):
                self.dropped.add(name)
                self.decide(
                    kind,
                    name,
                    Action.REFUSE,
                    f"calls {', '.join(missing)}: a VIRTUAL generated column's values exist only as the app's "
                    "function computes them, so failback can neither build, verify nor materialize it; make it "
                    "STORED or a plain column first",
                    "high",
                )
                continue
            note = self.app_functions(kind, name, c.expr, values=c.kind == "generated")
            if note:
                self.decide(kind, name, Action.KEEP, f"{note}; to be proved in the target", "warn")
                self.plan_.proofs.append(Proof(kind, name, f"EXPLAIN INSERT INTO {quote(t.name)} DEFAULT VALUES"))
            elif note is None and name.lower() in self.allowed:
                spans.append(c.span)
                if c.kind == "generated" and c.column is not None:
                    materialized.add(c.column)
        return sqltext.remove_spans(t.sql, spans), materialized

    def copy_for(self, t: Table, xfer: bool, materialized: set[str] | None = None) -> Copy:
        """Rows keep their rowids: ``SELECT *`` (transfer optimisation) when the key is explicit, else
        explicit column lists with the rowid (generated columns included when they are materialized). A rowid
        table whose columns fill SQLite's limit has no room for the rowid in one column list: one nullable
        column is copied by a second statement, row by row through the rowid."""
        no_generated = not any(c.generated for c in t.columns)
        if xfer and no_generated and (t.rowid_alias or t.without_rowid):
            return Copy(t.name, f"INSERT INTO main.{quote(t.name)} SELECT * FROM src.{quote(t.name)}", True)
        kept = materialized or set()
        columns = [c for c in t.visible_columns if not c.generated or c.name in kept]
        rowid = t.rowid_name if t.rowid_name and not t.rowid_alias else None
        later = None
        if rowid and len(columns) >= MAX_COLUMNS:
            later = next((c for c in reversed(columns) if not c.notnull), None)
            if later is None:
                why = f"{len(columns)} NOT NULL columns and a rowid exceed SQLite's {MAX_COLUMNS} in one copy statement"
                self.refuse_or_drop("table", t.name, why)
            else:
                columns.remove(later)
        collist = ", ".join(([rowid] if rowid else []) + [quote(c.name) for c in columns])
        table = quote(t.name)
        sql = f"INSERT INTO main.{table}({collist}) SELECT {collist} FROM src.{table}"
        if later is not None and rowid is not None:
            col, match = quote(later.name), f"s.{rowid} = {table}.{rowid}"
            sql += f"; UPDATE main.{table} SET {col} = (SELECT {col} FROM src.{table} AS s WHERE {match})"
        return Copy(t.name, sql, False)

    # -- virtual tables ---------------------------------------------------------------------------
    def virtual_table(self, t: Table) -> None:
        module = t.module or ""
        if module == "fts5vocab":
            self.dropped.add(t.name)
            self.decide("virtual table", t.name, Action.DROP, "fts5vocab is derived from its FTS5 table")
        elif module in self.p.modules:
            self.keep_virtual(t)
        elif module == "fts5":
            self.fts5(t)
        elif module in ("rtree", "rtree_i32", "geopoly"):
            self.spatial_to_plain(t)
        else:
            self.refuse_or_drop("virtual table", t.name, f"module {module!r} is not available in the target")

    def keep_virtual(self, t: Table) -> None:
        self.decide("virtual table", t.name, Action.KEEP, f"module {t.module} is available in the target")
        self.plan_.virtual_tables.append(t.sql)
        content = t.fts_content
        cols = [quote(c.name) for c in t.visible_columns]
        if t.module in ("fts3", "fts4", "fts5") and content is not None:
            if content:
                self.plan_.virtual_tables.append(f"INSERT INTO main.{quote(t.name)}({quote(t.name)}) VALUES('rebuild')")
            return
        collist = ", ".join(["_rowid_", *cols] if t.has_rowid else cols)
        self.plan_.virtual_tables.append(
            f"INSERT INTO main.{quote(t.name)}({collist}) SELECT {collist} FROM src.{quote(t.name)}"
        )
        if t.module in ("fts3", "fts4", "fts5"):
            self.digest(t)
            self.plan_.search.append(SearchPair(t.name, t.name, tuple(c.name for c in t.visible_columns)))

    def spatial_to_plain(self, t: Table) -> None:
        coltype = "INTEGER" if t.module == "rtree_i32" else "REAL"
        cols = list(t.visible_columns)
        defs = [f"{quote(cols[0].name)} INTEGER PRIMARY KEY"] if t.module != "geopoly" else []
        rest = cols[1:] if t.module != "geopoly" else cols
        defs += [f"{quote(c.name)} {coltype if c.type else ''}".rstrip() for c in rest]
        self.decide(
            "virtual table",
            t.name,
            Action.CONVERT,
            f"module {t.module} is not in the target: plain table with the same columns and rows "
            "(spatial queries must scan it)",
            "warn",
        )
        self.plan_.create_tables.append(f"CREATE TABLE {quote(t.name)}({', '.join(defs)})")
        names = [quote(c.name) for c in cols]
        if t.module == "geopoly":  # its rows are keyed by rowid (rtree's by its first column)
            names.insert(0, "_rowid_")
        collist = ", ".join(names)
        self.plan_.copies.append(
            Copy(
                t.name,
                f"INSERT INTO main.{quote(t.name)}({collist}) SELECT {collist} FROM src.{quote(t.name)}",
                False,
            )
        )
        self.digest(t)

    def fts5(self, t: Table) -> None:
        fts = parse_fts5(t)
        choice = self.o.fts.get(t.name, "fts4")
        if not self.p.has("fts4"):
            choice = "plain"
        if fts.content == "":
            self.refuse_or_drop(
                "virtual table",
                t.name,
                "contentless FTS5 table (content=''): its text is not stored and cannot be recovered; "
                "DATA LOSS: the search index is lost",
                "critical",
            )
            return
        self.fts_converted[t.name] = t
        external = fts.content is not None
        content_table = self.s.tables.get(fts.content or "")
        if external and content_table is None:
            self.refuse_or_drop("virtual table", t.name, f"its content table {fts.content!r} does not exist")
            return
        tokenizer, notes = fts4_tokenizer(fts.tokenize)
        notes += [f"FTS5 option {k}={v} has no FTS4 equivalent" for k, v in fts.other_options.items()]
        if tokenizer is None and choice == "fts4":
            choice = "plain"
            notes.append(f"tokenizer {' '.join(fts.tokenize)!r} has no FTS4 equivalent: plain table, no index")
        if choice == "plain":
            self.fts_plain(t, fts, external, notes)
        else:
            self.fts_to_fts4(t, fts, content_table, tokenizer or "", notes)

    def fts_plain(self, t: Table, fts: Fts5, external: bool, notes: list[str]) -> None:
        reason = "; ".join([*notes, "search index not kept: the app must search without it (e.g. LIKE)"])
        if external:
            self.decide("virtual table", t.name, Action.DROP, reason + f"; text stays in {fts.content!r}", "warn")
            self.dropped.add(t.name)
            return
        self.decide("virtual table", t.name, Action.CONVERT, reason + "; text kept in a plain table", "warn")
        cols = ", ".join(quote(c) for c in fts.columns)
        self.plan_.create_tables.append(f"CREATE TABLE {quote(t.name)}({cols})")
        self.plan_.copies.append(
            Copy(
                t.name,
                f"INSERT INTO main.{quote(t.name)}(_rowid_, {cols}) SELECT _rowid_, {cols} FROM src.{quote(t.name)}",
                False,
            )
        )
        self.digest(t)

    def fts_to_fts4(self, t: Table, fts: Fts5, content: Table | None, tokenizer: str, notes: list[str]) -> None:
        args = [quote(c) for c in fts.columns]
        key = "rowid"
        own_content = content is None
        if content is not None and fts.content_rowid not in (None, content.rowid_alias, "rowid", "_rowid_"):
            own_content = True  # FTS4 external content is keyed by the content table's rowid only
            key = quote(fts.content_rowid or "rowid")
            notes.append(f"content_rowid {fts.content_rowid!r} is not the rowid: FTS4 keeps its own copy of the text")
        if not own_content and fts.content:
            args.append(f"content={quote(fts.content)}")
        args.append(f"tokenize={tokenizer}")
        if fts.prefix:
            args.append(f"prefix={quote(','.join(fts.prefix))}")
        args += [f"notindexed={quote(c)}" for c in fts.unindexed]
        self.plan_.virtual_tables.append(f"CREATE VIRTUAL TABLE {quote(t.name)} USING fts4({', '.join(args)})")
        cols = ", ".join(quote(c) for c in fts.columns)
        if own_content and content is not None:
            src_sql = f"SELECT {key}, {cols} FROM main.{quote(content.name)}"
        elif own_content:
            src_sql = f"SELECT _rowid_, {cols} FROM src.{quote(t.name)}"
        else:
            src_sql = ""
        self.plan_.virtual_tables.append(
            f"INSERT INTO main.{quote(t.name)}(docid, {cols}) {src_sql}"
            if src_sql
            else f"INSERT INTO main.{quote(t.name)}({quote(t.name)}) VALUES('rebuild')"
        )
        if content is None:
            self.digest(t)
        indexed = tuple(c for c in fts.columns if c not in fts.unindexed)
        synced = content is not None and self.has_sync_triggers(t.name, content.name)
        self.plan_.search.append(
            SearchPair(
                t.name,
                t.name,
                indexed,
                content.name if synced and content else None,
                tuple(c.name for c in content.stored_columns) if synced and content else (),
            )
        )
        where = f"external content {fts.content!r}" if not own_content else "own content"
        self.decide(
            "virtual table",
            t.name,
            Action.CONVERT,
            "; ".join([f"FTS5 → FTS4 ({where}, tokenize={tokenizer})", *notes]),
            "warn" if notes else "info",
        )
        if synced and content is not None:
            self.sync_triggers(t.name, content.name, fts.columns, key if own_content else "rowid")

    def has_sync_triggers(self, fts: str, content: str) -> bool:
        """Did the source keep ``fts`` in sync with triggers on ``content``?"""
        return any(tr.table == content and sqltext.mentions(tr.sql, fts) for tr in self.s.triggers.values())

    def sync_triggers(self, fts: str, content: str, columns: tuple[str, ...], key: str) -> None:
        """FTS4 sync triggers in GRDB's own FTS4 form (``__<fts>_bu/_bd/_au/_ai``)."""
        cols = ", ".join(quote(c) for c in columns)
        new_vals = ", ".join(f"new.{quote(c)}" for c in columns)
        old_key = "old.rowid" if key == "rowid" else f"old.{key}"
        new_key = "new.rowid" if key == "rowid" else f"new.{key}"
        f, c = quote(fts), quote(content)
        delete = f"DELETE FROM {f} WHERE docid = {old_key};"
        insert = f"INSERT INTO {f}(docid, {cols}) VALUES({new_key}, {new_vals});"
        self.prove_trigger(f"__{fts}_*", content, ("INSERT", "UPDATE", "DELETE"))
        for suffix, when, body in (
            ("bu", "BEFORE UPDATE", delete),
            ("bd", "BEFORE DELETE", delete),
            ("au", "AFTER UPDATE", insert),
            ("ai", "AFTER INSERT", insert),
        ):
            self.plan_.triggers.append(f"CREATE TRIGGER {quote(f'__{fts}_{suffix}')} {when} ON {c} BEGIN {body} END")

    def prove_trigger(self, name: str, table: str, events: tuple[str, ...]) -> None:
        """EXPLAIN of the statements that fire the trigger (an UPDATE sets every column, so ``UPDATE OF``
        triggers compile too) makes the engine compile its body."""
        q = quote(table)
        cols = [quote(c) for c in self.columns_of(table)]
        statements = {
            "INSERT": f"EXPLAIN INSERT INTO {q} DEFAULT VALUES",
            "DELETE": f"EXPLAIN DELETE FROM {q}",
            "UPDATE": f"EXPLAIN UPDATE {q} SET {', '.join(f'{c} = {c}' for c in cols)}" if cols else "",
        }
        sql = "; ".join(s for e in events if (s := statements[e]))
        self.plan_.proofs.append(Proof("trigger", name, sql or "SELECT 1"))

    def columns_of(self, name: str) -> list[str]:
        """Insertable columns of a table, or the columns of a view (for INSTEAD OF triggers)."""
        if (t := self.s.tables.get(name)) is not None:
            return [c.name for c in t.stored_columns]
        return list(self.s.view_columns.get(name, ()))

    # -- indexes, counters, views, triggers ------------------------------------------------------
    def indexes(self) -> None:
        xfer_tables = {c.table for c in self.plan_.copies if c.xfer}
        for ix in self.s.indexes.values():
            if ix.sql is None:
                continue  # automatic index of a UNIQUE/PRIMARY KEY constraint: comes with its table
            if ix.table in self.dropped or ix.table not in self.s.tables:
                self.decide("index", ix.name, Action.DROP, f"its table {ix.table!r} is not in the target")
                continue
            if self.app_functions("index", ix.name, sqltext.index_parts(ix.sql), values=True) is None:
                xfer_tables.discard(ix.table)  # the target's indexes of that table differ from the source's
                continue
            sql = self.rewrite(ix.sql)
            if sql != ix.sql:
                self.decide("index", ix.name, Action.CONVERT, "collation mapped; rebuilt after the data", "warn")
                self.plan_.late_indexes.append(sql)
                xfer_tables.discard(ix.table)
            else:
                self.decide("index", ix.name, Action.KEEP, "supported as is")
        # A table keeps the transfer optimisation only if every one of its indexes is unchanged; its
        # indexes are then created before the copy (B-trees copied without sorting), the rest after.
        for ix in self.s.indexes.values():
            if ix.sql is None or {ix.table, ix.name} & self.dropped or ix.table not in self.s.tables:
                continue
            sql = self.rewrite(ix.sql)
            if sql == ix.sql:
                (self.plan_.early_indexes if ix.table in xfer_tables else self.plan_.late_indexes).append(sql)
        self.plan_.copies = [
            c if c.xfer is False or c.table in xfer_tables else self.copy_for(self.s.tables[c.table], xfer=False)
            for c in self.plan_.copies
        ]

    def counters(self) -> None:
        """AUTOINCREMENT counters and planner statistics, for the tables the target keeps."""
        kept = [n for n in self.s.sequence if n in self.s.tables and n not in self.dropped]
        if kept:
            names = ", ".join(string_literal(n) for n in kept)
            self.plan_.after_data.append(
                "DELETE FROM main.sqlite_sequence; INSERT INTO main.sqlite_sequence(name, seq) "
                f"SELECT name, seq FROM src.sqlite_sequence WHERE name IN ({names})"
            )
            self.decide(
                "table", "sqlite_sequence", Action.KEEP, f"AUTOINCREMENT counters kept for {len(kept)} table(s)"
            )
            if len(kept) == len(self.s.sequence):
                self.plan_.digests.append(DigestSpec("sqlite_sequence", ("name", "seq"), rowid=False))
        tables = [t.name for t in self.s.tables.values() if t.kind == "table" and t.name not in self.dropped]
        if self.s.has_stat1 and tables:
            self.plan_.after_data.append(
                "ANALYZE main.sqlite_schema; DROP TABLE IF EXISTS main.sqlite_stat4; INSERT INTO main.sqlite_stat1 "
                f"SELECT tbl, idx, stat FROM src.sqlite_stat1 WHERE tbl IN ({', '.join(map(string_literal, tables))})"
            )
            self.decide("table", "sqlite_stat1", Action.KEEP, "query planner statistics copied")

    def views(self) -> None:
        for v in self.s.views.values():
            sql = self.rewrite(v.sql)
            gone = sorted(n for n in self.dropped if sqltext.mentions(v.sql, n))
            if gone:
                self.refuse_or_drop("view", v.name, f"uses {', '.join(gone)}, which the target will not have")
                continue
            if (note := self.app_functions("view", v.name, v.sql)) is None:
                continue
            self.plan_.views.append(sql)
            self.plan_.proofs.append(Proof("view", v.name, f"EXPLAIN SELECT * FROM {quote(v.name)}"))
            self.decide(
                "view",
                v.name,
                Action.CONVERT if sql != v.sql else Action.KEEP,
                "; ".join([*filter(None, [note]), "to be proved in the target"]),
                "warn" if note else "info",
            )

    def triggers(self) -> None:
        for tr in self.s.triggers.values():
            if (note := self.app_functions("trigger", tr.name, tr.sql)) is None:
                continue
            fts_refs = [n for n in self.fts_converted if sqltext.mentions(tr.sql, n)]
            gone = sorted(n for n in self.dropped if sqltext.mentions(tr.sql, n) and n not in fts_refs)
            if fts_refs:
                self.fts_trigger(tr.name, tr.table, tr.sql, fts_refs)
            elif gone or tr.table in self.dropped:
                self.refuse_or_drop("trigger", tr.name, f"uses {', '.join(gone or [tr.table])}, which the target lacks")
            else:
                sql = self.rewrite(tr.sql)
                self.plan_.triggers.append(sql)
                self.prove_trigger(tr.name, tr.table, (sqltext.trigger_event(tr.sql),))
                self.decide(
                    "trigger",
                    tr.name,
                    Action.KEEP if sql == tr.sql else Action.CONVERT,
                    "; ".join([*filter(None, [note]), "to be proved in the target"]),
                    "warn" if note else "info",
                )

    def fts_trigger(self, name: str, table: str, sql: str, fts_refs: list[str]) -> None:
        for fts_name in fts_refs:
            fts = parse_fts5(self.fts_converted[fts_name])
            if fts.content == table:
                if fts_name in self.dropped:
                    self.decide("trigger", name, Action.DROP, f"synced {fts_name}, which is not kept")
                else:
                    self.decide(
                        "trigger",
                        name,
                        Action.CONVERT,
                        f"FTS5 sync trigger replaced by FTS4 sync triggers __{fts_name}_*",
                    )
                return
        uses_commands = any(t.kind == "string" and t.name.lower() in FTS5_COMMANDS for t in sqltext.tokenize(sql))
        if uses_commands or any(n in self.dropped for n in fts_refs):
            self.refuse_or_drop("trigger", name, f"writes to {', '.join(fts_refs)} with FTS5-only commands")
        else:
            self.plan_.triggers.append(self.rewrite(sql))
            self.prove_trigger(name, table, (sqltext.trigger_event(sql),))
            self.decide("trigger", name, Action.KEEP, "writes to a converted FTS table; to be proved in the target")


def _name_arity(entry: str) -> tuple[str, int]:
    """``"name/arity"`` → (name, arity)."""
    name, _, arity = entry.rpartition("/")
    return name, int(arity)
