"""Verification trusts no plan: every table and virtual table a reader of the source can SELECT from is compared
in the snapshot, the target (apsw) and sql.js, whatever the plan decided; deliberate drops are listed as drops."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.config import ConvertConfig
from failback.db.connect import connect, quote, run_script
from failback.engines.sqljs import SqlJsEngine
from failback.pipeline.export import build_target, export_database, plan_for
from failback.plan.model import Plan
from failback.verify import verify_target

from .conftest import file_hashes

# FTS3 has no content= option: content="x" declares a third column named content; the rows live in t_content.
FTS3_CONTENT_COLUMN = """
CREATE VIRTUAL TABLE t USING fts3(a, b, content="x");
INSERT INTO t(a, b, content) VALUES ('alpha one', 'beta one', 'gamma one'), ('alpha two', 'beta two', 'gamma two'),
  ('alpha three', 'beta three', 'gamma three');
"""

MANY_KINDS = """
CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE TABLE item(v);
CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE VIRTUAL TABLE own4 USING fts4(a, b);
CREATE VIRTUAL TABLE ext5 USING fts5(title, body, content='note', content_rowid='id');
CREATE VIRTUAL TABLE box USING rtree(id, x0, x1);
WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 12)
INSERT INTO note(title, body) SELECT 'title ' || x, 'body words ' || x FROM i;
INSERT INTO item(v) SELECT title FROM note;
INSERT INTO kv SELECT 'k' || id, id * 2 FROM note;
INSERT INTO own4(docid, a, b) SELECT id, 'own ' || title, body FROM note;
INSERT INTO ext5(ext5) VALUES('rebuild');
INSERT INTO box SELECT id, id, id + 0.5 FROM note;
"""


def make_db(path: Path, sql: str) -> Path:
    conn = apsw.Connection(str(path))
    run_script(conn, sql)
    conn.close()
    return path


def select_all(db: Path, table: str) -> list[tuple[Any, ...]]:
    conn = connect(db, readonly=True)
    try:
        return list(conn.execute(f"SELECT rowid, * FROM {quote(table)} ORDER BY rowid"))
    finally:
        conn.close()


def test_fts3_content_column_is_copied_as_a_column(tmp_path: Path) -> None:
    """The third-party case: export copied no row of the FTS3 table (taken for external content) and said
    'tables equal'. Now its rows are copied, and the verification lists it as compared."""
    src = make_db(tmp_path / "fts3.sqlite", FTS3_CONTENT_COLUMN)
    result = export_database(src, tmp_path / "out.sqlite")
    rows = select_all(src, "t")
    assert len(rows) == 3 and rows[0][3] == "gamma one"
    assert select_all(tmp_path / "out.sqlite", "t") == rows
    [check] = [t for t in result.verification.tables if t.table == "t"]
    assert check.status == "equal" and check.snapshot == check.sqljs and check.sqljs["rows"] == 3  # type: ignore[index]


def without(plan: Plan, table: str) -> Plan:
    """The plan as a planner that misread ``table`` makes it: its rows are neither copied nor digested."""
    return replace(
        plan,
        copies=[c for c in plan.copies if c.table != table],
        virtual_tables=[s for s in plan.virtual_tables if not s.startswith(f"INSERT INTO main.{quote(table)}")],
        digests=[d for d in plan.digests if d.table != table],
    )


@pytest.mark.parametrize(
    ("table", "first_key"),
    [("item", "rowid 1"), ("kv", "key ('k1', 2)"), ("own4", "rowid 1"), ("box", "key (1,")],
)
def test_a_table_the_plan_forgot_fails_verification(tmp_path: Path, table: str, first_key: str) -> None:
    """Whatever the plan chose to copy and digest, a table whose rows did not arrive fails the verification
    (in apsw and sql.js), named with its first missing row."""
    src = make_db(tmp_path / "src.sqlite", MANY_KINDS)
    plan = without(plan_for(src), table)
    out = tmp_path / "out.sqlite"
    build_target(src, out, plan)
    report = verify_target(out, plan, SqlJsEngine(), snapshot=src)
    [problem] = [p for p in report.problems if p.startswith("table ")]  # (an FTS table's search parity fails too)
    assert problem.startswith(f"table {table}: content differs") and f"; {first_key}" in problem, problem
    [check] = [t for t in report.tables if t.table == table]
    assert check.status == "differs" and check.target == check.sqljs == {"rows": 0, "digest": "0" * 32}
    assert {t.status for t in report.tables if t.table != table} == {"equal"}


def test_an_external_content_fts_table_is_compared_through_its_select(tmp_path: Path) -> None:
    """An external-content FTS table holds no rows of its own, but a reader's SELECT returns its content table's
    rows: a converted table pointing at the wrong content table fails, though every copied table is equal."""
    src = make_db(tmp_path / "src.sqlite", MANY_KINDS + "CREATE TABLE other(id INTEGER PRIMARY KEY, title, body);")
    plan = plan_for(src)
    wrong = [s.replace('content="note"', 'content="other"') for s in plan.virtual_tables]
    assert wrong != plan.virtual_tables
    out = tmp_path / "out.sqlite"
    build_target(src, out, replace(plan, virtual_tables=wrong))
    report = verify_target(out, plan, SqlJsEngine(), snapshot=src)
    [problem] = [p for p in report.problems if p.startswith("table ")]
    assert problem.startswith("table ext5: content differs") and "rowid 1: in snapshot, missing in sqljs" in problem


def test_dropped_objects_are_listed_as_dropped_never_as_equal(tmp_path: Path, cli: Callable[..., Any]) -> None:
    src = make_db(
        tmp_path / "src.sqlite",
        "CREATE TABLE note(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);"
        "INSERT INTO note(body) VALUES ('one'), ('two');"
        "CREATE VIRTUAL TABLE secret USING fts5(a, content='');"
        "INSERT INTO secret(rowid, a) VALUES (1, 'not stored'), (2, 'not either');"
        "CREATE VIRTUAL TABLE words USING fts5vocab(secret, row);",
    )
    (tmp_path / "failback.toml").write_text(
        '[source]\npath = "src.sqlite"\n[target]\npath = "t.sqlite"\n[app]\nconfig = "app.env"\n'
        '[convert]\nallow_drop = ["secret"]\n'
    )
    before = file_hashes(src)
    res = cli("export", "src.sqlite", "out.sqlite", "--config", "failback.toml", "--json")
    assert res.returncode == 0, res.stderr
    tables = {t["table"]: t for t in json.loads(res.stdout)["verification"]["tables"]}
    assert {n: t["status"] for n, t in tables.items()} == {
        "note": "equal",
        "sqlite_sequence": "equal",
        "secret": "dropped",
        "words": "dropped",
    }
    assert "allow_drop" in tables["secret"]["detail"] and tables["secret"]["sqljs"] is None
    text = cli("export", "src.sqlite", "out2.sqlite", "--config", "failback.toml")
    assert "2 tables equal in source, target and sql.js" in text.stdout
    assert "2 dropped by the plan: secret, words" in text.stdout
    assert file_hashes(src) == before


def test_a_virtual_table_the_source_cannot_select_from_is_listed_not_compared(tmp_path: Path) -> None:
    """A contentless FTS4 table cannot be scanned in SQLite itself: there is no row a reader sees to compare."""
    src = make_db(
        tmp_path / "src.sqlite",
        "CREATE TABLE t(v); INSERT INTO t VALUES (1);"
        "CREATE VIRTUAL TABLE c USING fts4(a, content=''); INSERT INTO c(docid, a) VALUES (1, 'x');",
    )
    report = export_database(src, tmp_path / "out.sqlite", cfg=None).verification
    [c] = [t for t in report.tables if t.table == "c"]
    assert c.status == "unreadable" and "SQL logic error" in c.detail
    assert [t.status for t in report.tables if t.table == "t"] == ["equal"]


def test_quick_level_counts_every_selectable_table(tmp_path: Path) -> None:
    """Emergency verification (counts only) covers the same tables as the standard one."""
    src = make_db(tmp_path / "src.sqlite", MANY_KINDS)
    plan = without(plan_for(src, options=ConvertConfig()), "own4")
    out = tmp_path / "out.sqlite"
    build_target(src, out, plan)
    report = verify_target(out, plan, SqlJsEngine(), snapshot=src, level="quick")
    [problem] = report.problems
    assert problem.startswith("table own4: content differs (snapshot {'rows': 12, 'digest': ''}")
    assert {t.table for t in report.tables} == {"note", "item", "kv", "own4", "ext5", "box"}
