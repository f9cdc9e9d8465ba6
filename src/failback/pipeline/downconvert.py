"""Down-conversion's effects: write the target at the old app's schema and the carry-over database, then prove
that the two together hold all of the source (see :mod:`failback.plan.down` for what goes where).

Both files are built under a temp name beside their final one (rows move by ATTACH + INSERT…SELECT, inside one
transaction), fsynced and renamed into place. The carry-over database holds one table ``carry_<n>`` per source
table with something carried (a rowid key is the table's own rowid), the table ``failback_carry`` naming each
one's source table, key and columns (JSON), and ``failback_sequence``: the source's AUTOINCREMENT counters.

Proof, per source table: the digest of the source equals the digest of the target's columns joined to the
carry-over's by key (apsw); and the target's part, digested by sql.js in the target, equals the same columns'
digest in the source.
"""

from __future__ import annotations

import json
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import apsw

from ..db.connect import connect, quote, readonly_uri, run_script
from ..db.digest import DigestSpec, rowid_name, table_digest
from ..db.schema import read_schema
from ..engines import Engine
from ..files import publish, remove_quietly, sha256_file, tmp_name
from ..plan.down import DownPlan, TableSplit
from ..verify import TableCheck, VerifyReport, target_side

CARRY_OVER = "carry-over.sqlite"  # its name in the run folder, beside the run's backup
CARRY_MANIFEST = "failback_carry"
CARRY_SEQUENCE = "failback_sequence"
Statement = tuple[str, tuple[Any, ...]]


def carry_table(i: int) -> str:
    """The carry-over table of the ``i``-th carried split."""
    return f"carry_{i}"


def _write(snapshot: Path, dest: Path, statements: list[Statement]) -> None:
    """Create ``dest`` from ``snapshot`` (attached as ``src``) with ``statements`` in one transaction, at the
    snapshot's page size and encoding (ATTACH needs the same), under a temp name, then fsync and rename."""
    reader = connect(snapshot, readonly=True)
    try:
        source = read_schema(reader)
    finally:
        reader.close()
    tmp = tmp_name(dest, "build")
    remove_quietly(tmp, Path(f"{tmp}-journal"))
    conn = connect(tmp, create=True)
    try:
        run_script(
            conn,
            f"PRAGMA page_size = {int(source.page_size)}; PRAGMA encoding = '{source.encoding}';"
            " PRAGMA journal_mode = DELETE; PRAGMA foreign_keys = OFF;",
        )
        conn.execute("ATTACH DATABASE ? AS src", (readonly_uri(snapshot),))
        with conn:
            for sql, params in statements:
                run_script(conn, sql, params)
        conn.execute("DETACH DATABASE src")
        conn.close()
        publish(tmp, dest)
    except BaseException:
        conn.close()
        remove_quietly(tmp, Path(f"{tmp}-journal"))
        raise


def _sequence(dest_table: str, where: str = "") -> Statement:
    """Copy the source's AUTOINCREMENT counters (``where``: which) into ``dest_table``."""
    return f"INSERT INTO main.{dest_table}(name, seq) SELECT name, seq FROM src.sqlite_sequence{where}", ()


def target_statements(plan: DownPlan, has_sequence: bool) -> list[Statement]:
    """The old schema's tables, each kept split's rows (with their rowids and fill values), the source's
    AUTOINCREMENT counters of the kept tables, then the old indexes, views and triggers and the old pragmas."""
    n_tables = len(plan.old_tables)
    out: list[Statement] = [(sql, ()) for sql in plan.old_sql[:n_tables]]
    for s in plan.splits:
        if not s.in_target:
            continue
        names = [*([s.target_rowid or "_rowid_"] if s.copy_rowid else []), *map(quote, s.kept)]
        values = [*([rowid_name(s.columns) or "_rowid_"] if s.copy_rowid else []), *map(quote, s.kept)]
        names += map(quote, s.fill)
        values += ["?"] * len(s.fill)
        out.append(
            (
                f"INSERT INTO main.{quote(s.table)}({', '.join(names)}) SELECT {', '.join(values)} "
                f"FROM src.{quote(s.table)}",
                tuple(s.fill.values()),
            )
        )
    if has_sequence and any("AUTOINCREMENT" in sql.upper() for sql in plan.old_sql[:n_tables]):
        kept = "SELECT name FROM main.sqlite_schema WHERE type = 'table'"
        out.append(("DELETE FROM main.sqlite_sequence WHERE name IN (SELECT name FROM src.sqlite_sequence)", ()))
        out.append(_sequence("sqlite_sequence", f" WHERE name IN ({kept})"))
    out += [(sql, ()) for sql in plan.old_sql[n_tables:]]
    out.append((f"PRAGMA user_version = {int(plan.user_version)}", ()))
    out.append((f"PRAGMA application_id = {int(plan.application_id)}", ()))
    return out


def carry_statements(plan: DownPlan, has_sequence: bool) -> list[Statement]:
    """The carry-over's tables and rows, its manifest and the source's AUTOINCREMENT counters."""
    out: list[Statement] = [
        (
            f"CREATE TABLE {CARRY_MANIFEST}(name TEXT PRIMARY KEY, source TEXT, in_target, key TEXT, columns TEXT)",
            (),
        ),
        (f"CREATE TABLE {CARRY_SEQUENCE}(name TEXT, seq INTEGER)", ()),
    ]
    for i, s in enumerate(plan.carried):
        name, cols = carry_table(i), s.carry_columns
        out.append((f"CREATE TABLE {name}({', '.join(map(quote, cols))})", ()))
        rowid = [] if s.key else [rowid_name(s.columns) or "_rowid_"]
        collist = ", ".join([*rowid, *map(quote, cols)])
        out.append((f"INSERT INTO main.{name}({collist}) SELECT {collist} FROM src.{quote(s.table)}", ()))
        key = json.dumps(list(s.key) or ["rowid"])
        out.append(
            (
                f"INSERT INTO {CARRY_MANIFEST} VALUES (?, ?, ?, ?, ?)",
                (name, s.table, s.in_target, key, json.dumps(cols)),
            )
        )
    return out + ([_sequence(CARRY_SEQUENCE)] if has_sequence else [])


@dataclass(frozen=True)
class DownResult:
    """The target and carry-over written (with the carry-over's SHA-256), and each source table's proof."""

    target: Path
    carry_over: Path
    carry_sha256: str
    tables: list[TableCheck]

    @property
    def problems(self) -> list[str]:
        return table_problems(self.tables)

    @property
    def ok(self) -> bool:
        return not self.problems


def table_problems(tables: list[TableCheck]) -> list[str]:
    """One line per table whose proof failed."""
    return [f"table {t.table}: {t.detail}" for t in tables if not t.ok]


def write_down(snapshot: Path, target: Path, carry_over: Path, plan: DownPlan) -> str:
    """Write the carry-over database first (nothing of the source is dropped before it is saved), then the target;
    returns the carry-over's SHA-256."""
    conn = connect(snapshot, readonly=True)
    try:
        has_sequence = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").get is not None
    finally:
        conn.close()
    _write(snapshot, carry_over, carry_statements(plan, has_sequence))
    _write(snapshot, target, target_statements(plan, has_sequence))
    return sha256_file(carry_over)


def _joined_view(s: TableSplit, carried: str | None) -> str:
    """A SELECT of the source's columns (and rowid) from the target's table joined to the carry-over's."""
    rid = rowid_name(s.columns) or "_rowid_"
    kept = {c.lower() for c in s.kept}
    exprs = [f"{'t' if c.lower() in kept else 'c'}.{quote(c)} AS {quote(c)}" for c in s.columns]
    if not s.in_target:
        return f"SELECT {', '.join([*([f'c.{rid} AS {rid}'] if s.rowid else []), *exprs])} FROM carry.{carried} AS c"
    trid = s.target_rowid or "_rowid_"
    head = [f"t.{trid} AS {rid}"] if s.rowid else []
    src = f"main.{quote(s.table)} AS t"
    if carried is not None:
        on = " AND ".join(f"c.{quote(k)} = t.{quote(k)}" for k in s.key) or f"c.{rid} = t.{trid}"
        src += f" LEFT JOIN carry.{carried} AS c ON {on}"
    return f"SELECT {', '.join([*head, *exprs])} FROM {src}"


def prove_down(snapshot: Path, target: Path, carry_over: Path, plan: DownPlan, engine: Engine) -> list[TableCheck]:
    """Per source table: source digest == digest of target ⋈ carry-over (apsw), and the target's part as sql.js
    (``engine``) reads it == the same columns of the source."""
    conn = connect(snapshot, readonly=True)
    try:
        source = {s.table: table_digest(conn, DigestSpec(s.table, s.columns, s.rowid)) for s in plan.splits}
        parts = {
            s.table: table_digest(conn, DigestSpec(s.table, s.kept, s.rowid and not s.key))
            for s in plan.splits
            if s.in_target
        }
    finally:
        conn.close()
    names = {s.table: carry_table(i) for i, s in enumerate(plan.carried)}
    conn = connect(target, readonly=True)
    try:
        conn.execute("ATTACH DATABASE ? AS carry", (readonly_uri(carry_over),))
        joined = {}
        for i, s in enumerate(plan.splits):
            view = f"failback_joined_{i}"
            conn.execute(f"CREATE TEMP VIEW {view} AS {_joined_view(s, names.get(s.table))}")
            joined[s.table] = table_digest(conn, DigestSpec(view, s.columns, s.rowid), "temp")
    except apsw.Error as err:
        return [TableCheck(s.table, None, None, None, False, "differs", f"cannot join: {err}") for s in plan.splits]
    finally:
        conn.close()
    in_target = [s for s in plan.splits if s.in_target]
    specs = [DigestSpec(s.table, s.kept, s.rowid and not s.key).to_json() for s in in_target]
    run = engine.run(target, [{"op": "digest", "tables": specs}]).results[0] if specs else {"tables": []}
    sqljs = {t["table"].lower(): t for t in run.get("tables", [])}
    checks = []
    for s in plan.splits:
        src, both = source[s.table], joined[s.table]
        part = sqljs.get(s.table.lower())
        detail = ""
        if (src.rows, src.digest) != (both.rows, both.digest):
            detail = f"source {src.rows} rows != target + carry-over {both.rows} rows (or their digests differ)"
        elif s.in_target and (part is None or (part["rows"], part["digest"]) != astuple(parts[s.table])[1:]):
            detail = f"sql.js reads the target's part differently: {run.get('error') or part}"
        snap, tgt = src.to_json(), {**both.to_json(), "table": s.table}
        checks.append(TableCheck(s.table, snap, tgt, part, not detail, "equal" if not detail else "differs", detail))
    return checks


def verify_down(
    snapshot: Path, target: Path, carry_over: Path, plan: DownPlan, engine: Engine, level: str
) -> VerifyReport:
    """The down-converted target's verification: its integrity and foreign keys (as any target's), then
    ``prove_down`` in place of the per-table comparison with the source."""
    started, rep = time.perf_counter(), VerifyReport(level)
    target_side(rep, target, [], snapshot, level == "quick", False)
    rep.tables = prove_down(snapshot, target, carry_over, plan, engine)
    rep.problems += table_problems(rep.tables)
    rep.seconds = round(time.perf_counter() - started, 3)
    return rep


def down_convert(snapshot: Path, target: Path, carry_over: Path, plan: DownPlan, engine: Engine) -> DownResult:
    """Write the carry-over and the target from ``snapshot`` per ``plan``, then prove them (``prove_down``)."""
    sha = write_down(snapshot, target, carry_over, plan)
    return DownResult(target, carry_over, sha, prove_down(snapshot, target, carry_over, plan, engine))
