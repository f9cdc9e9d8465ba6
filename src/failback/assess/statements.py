"""The old app's own statements, run on the result in the target engine.

Each statement of ``[app] statements`` (reads and writes, with ``?``, ``?N``, ``:name``, ``@name`` or ``$name``
placeholders) is prepared and run in the target engine on the converted database, inside a transaction that is
rolled back (the engine works on an in-memory copy: the file is never written). Parameters are drawn from the
data: a placeholder compared with, assigned to or inserted into a column takes a value of that column (a fresh
one for a column a unique key covers, so that an INSERT does not collide). A statement that fails is named with
the engine's error and the schema drift that explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from ..config import Config
from ..db import sqltext
from ..db.connect import database_error, open_source, quote, read_transaction
from ..db.schema import Schema, read_schema
from ..engines import Engine, TypedValue, encode_typed
from ..errors import ConfigError
from .drift import Drift

_COMPARE = {"=", "==", "<", ">", "<=", ">=", "!=", "<>", "LIKE", "GLOB", "IS", "IN", "MATCH"}
_PARAM_PREFIX = {":", "@", "$"}


@dataclass(frozen=True)
class StatementCheck:
    """One old statement run on the result: ok, or the engine's error and the drift that explains it."""

    sql: str
    params: list[TypedValue]
    ok: bool
    error: str = ""
    rows: int = 0
    cause: str = ""  # the schema change that broke it, when one explains the error

    def message(self) -> str:
        """One line for a finding or a failed verification."""
        why = f" (since {self.cause})" if self.cause else ""
        return f"the old app's statement {self.sql!r} fails on the result: {self.error}{why}"


def load_statements(cfg: Config) -> list[str]:
    """The statements of ``[app] statements``: the list itself, or the statements of the file it names (split
    by SQLite's own notion of a complete statement)."""
    value = cfg.app.statements
    if isinstance(value, list):
        return [s.strip() for s in value if s.strip()]
    value = cfg.resolve(value)
    try:
        text = value.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{value}: cannot read the old app's statements ({err})", "fix [app] statements") from None
    out, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line
        if apsw.complete(current):
            out.append(current.strip().rstrip(";").strip())
            current = ""
    return [s for s in [*out, current.strip()] if s]


# -- parameters -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Param:
    index: int
    column: str | None
    fresh: bool  # the value goes into a new row (INSERT)


def _params(sql: str) -> list[_Param]:
    """Each parameter of ``sql`` (by SQLite's numbering) and the column it is compared with or written to."""
    sig = [t for _, t in sqltext.significant(sqltext.tokenize(sql))]
    words = [t.text.upper() if t.kind == "word" else t.text for t in sig]
    insert_cols = _insert_columns(sig, words)
    found: dict[int, _Param] = {}
    names: dict[str, int] = {}
    values_seen = 0
    in_values = False
    k = 0
    while k < len(sig):
        w = words[k]
        if w == "VALUES":
            in_values = True
        if w == "?" or (w in _PARAM_PREFIX and k + 1 < len(sig) and sig[k + 1].kind in ("word", "number")):
            explicit = k + 1 < len(sig) and sig[k + 1].kind == "number" and w == "?"
            name = sig[k + 1].text if w != "?" else None
            if explicit:
                index = int(sig[k + 1].text)
            elif name is not None and name in names:
                index = names[name]
            else:
                index = max([0, *found]) + 1
            if name is not None:
                names.setdefault(name, index)
            column = _compared_column(sig, words, k)
            fresh = False
            if in_values and insert_cols and column is None:
                column = insert_cols[values_seen] if values_seen < len(insert_cols) else None
                fresh = True
            values_seen += in_values
            column = column or name
            found.setdefault(index, _Param(index, column, fresh))
            k += 2 if (explicit or name is not None) else 1
            continue
        k += 1
    return [found[i] if i in found else _Param(i, None, False) for i in range(1, max([0, *found]) + 1)]


def _compared_column(sig: list[sqltext.Token], words: list[str], k: int) -> str | None:
    """The column a placeholder at ``k`` is compared with or assigned to (``col = ?``, ``col IN (?, ?)``)."""
    j = k - 1
    while j >= 0 and words[j] in ("(", ","):
        j -= 1
        while j >= 0 and words[j] not in ("(", ",", "IN"):  # earlier members of an IN list
            j -= 1
    if j >= 1 and words[j] in _COMPARE | {"NOT"}:
        if words[j] == "NOT":
            j -= 1
        if j >= 1 and sig[j - 1].kind in ("word", "quoted") and words[j - 1] not in _COMPARE:
            return sig[j - 1].name
    return None


def _insert_columns(sig: list[sqltext.Token], words: list[str]) -> list[str]:
    """The column list of an ``INSERT INTO t (a, b) VALUES …``, [] otherwise."""
    if not words or words[0] not in ("INSERT", "REPLACE"):
        return []
    try:
        start = words.index("(")
        end = words.index(")", start)
    except ValueError:
        return []
    if "VALUES" not in words[end:] or "SELECT" in words[:start]:
        return []
    return [t.name for t in sig[start + 1 : end] if t.kind in ("word", "quoted")]


def _unique_columns(conn: apsw.Connection, table: str) -> set[str]:
    cols: set[str] = set()
    for _, index, unique, *_ in conn.execute(f"PRAGMA index_list({quote(table)})").fetchall():
        if unique:
            cols |= {str(r[2]) for r in conn.execute(f"PRAGMA index_info({quote(str(index))})")}
    return cols


def _sample(conn: apsw.Connection, schema: Schema, sql: str, p: _Param) -> Any:
    """A value of ``p``'s column from the tables the statement names first (fresh for a unique column of a new
    row); 1 when no column is known."""
    mentioned = _mentions(sql)
    tables = sorted(
        (t for t in schema.user_tables() if t.kind == "table" and any(c.name == p.column for c in t.columns)),
        key=lambda t: t.name.lower() not in mentioned,
    )
    for t in tables:
        col, table = quote(p.column or ""), quote(t.name)
        if p.fresh and (p.column in _unique_columns(conn, t.name) or p.column == t.rowid_alias):
            fresh = conn.execute(
                f"SELECT CASE WHEN typeof(max({col})) = 'integer' THEN max({col}) + 1"
                f" ELSE max({col}) || ' (failback sample)' END FROM {table}"
            ).get
            return 1 if fresh is None else fresh
        value = conn.execute(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL LIMIT 1").get
        if value is not None:
            return value
    return 1


def sample_parameters(target: Path, statements: list[str]) -> list[list[TypedValue]]:
    """Parameters for each statement, drawn from ``target``'s data (read-only)."""
    conn = open_source(target)
    try:
        with read_transaction(conn):
            schema = read_schema(conn)
            return [[encode_typed(_sample(conn, schema, sql, p)) for p in _params(sql)] for sql in statements]
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(target, err) from err
    finally:
        conn.close()


# -- running -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatementRun:
    """The old app's statements with parameters drawn from the target, as engine actions (one transaction, each
    statement in a savepoint, all rolled back) and the checks their results give (a failure names the drift from
    ``drift`` that explains it). The actions can run inside a larger job: they leave the data as they found it."""

    statements: list[str]
    params: list[list[TypedValue]]
    drift: list[Drift]

    def actions(self) -> list[dict[str, Any]]:
        """The engine actions: BEGIN, then per statement a savepoint, the statement and its rollback, then ROLLBACK
        (none without statements)."""
        if not self.statements:
            return []
        actions: list[dict[str, Any]] = [{"op": "exec", "sql": "BEGIN"}]
        for sql, values in zip(self.statements, self.params, strict=True):
            actions += [
                {"op": "exec", "sql": "SAVEPOINT failback_statement"},
                {"op": "query", "sql": sql, "params": values, "limit": 0},
                {"op": "exec", "sql": "ROLLBACK TO failback_statement; RELEASE failback_statement"},
            ]
        actions.append({"op": "exec", "sql": "ROLLBACK"})
        return actions

    def checks(self, results: list[dict[str, Any]]) -> list[StatementCheck]:
        """Each statement's check from the results of :meth:`actions`."""
        out = []
        for i, (sql, values) in enumerate(zip(self.statements, self.params, strict=True)):
            r = results[2 + 3 * i]
            if r.get("ok"):
                out.append(StatementCheck(sql, values, True, rows=int(r.get("count", 0))))
            else:
                error = str(r.get("error", "failed"))
                out.append(StatementCheck(sql, values, False, error, cause=blame(error, sql, self.drift)))
        return out


def prepare_statements(target: Path, statements: list[str], drift: list[Drift]) -> StatementRun:
    """The statements' run on ``target``, their parameters drawn from its data (read-only)."""
    return StatementRun(statements, sample_parameters(target, statements) if statements else [], drift)


def check_statements(engine: Engine, target: Path, statements: list[str], drift: list[Drift]) -> list[StatementCheck]:
    """Run each statement on ``target`` in ``engine``, each in a savepoint of one transaction rolled back at the
    end; a failure names the drift (from ``drift``) that explains it."""
    if not statements:
        return []
    run = prepare_statements(target, statements, drift)
    return run.checks(engine.run(target, run.actions()).results)


def _mentions(sql: str) -> set[str]:
    return {t.name.lower() for t in sqltext.tokenize(sql) if t.kind in ("word", "quoted")}


def blame(error: str, sql: str, drift: list[Drift]) -> str:
    """The drift that explains a statement's ``error``: the object the error names (no such table or column, a
    constraint failed on t.c, a function an added trigger calls), else a blocking change to a table the statement
    names; "" when none does (pure)."""
    named = error.rsplit(":", 1)[-1].strip().lower()
    words = _mentions(sql)

    def rank(d: Drift) -> int | None:
        name, table = d.name.lower(), d.table.lower()
        if named and name == named:
            return 0
        if named and name.endswith("." + named):
            return 1
        if named and f"{named}/" in d.breaks.lower():  # no such function: an added trigger calls it
            return 2
        if d.severity != "info" and table and named.split(".")[0] == table:  # … constraint failed: t.c
            return 3
        if d.severity != "info" and (table in words or name in words):
            return 4 + ["high", "warn"].index(d.severity)
        return None

    ranked = sorted((r, i) for i, d in enumerate(drift) if (r := rank(d)) is not None)
    if not ranked:
        return ""
    d = drift[ranked[0][1]]
    return f"{d.kind} {d.name} {d.change}" + (f" ({d.detail})" if d.detail else "")
