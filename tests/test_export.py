"""build_target's FTS indexes built by a side process beside the copy: the same index as a build in the target
itself, the same errors, no temp file left behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.db.connect import connect, quote, run_script
from failback.engines.sqljs import SqlJsEngine
from failback.errors import FailbackError, NotADatabaseError
from failback.guard import FTS_SIDE
from failback.pipeline.export import build_target, plan_for
from failback.pipeline.fts_side import SHADOWS
from failback.verify import verify_target

IN_PROCESS = 1 << 62  # a threshold no test database reaches
WORDS = ["alpha", "beta", "gamma", "delta", "café", "naïve", "zebra", "meeting", "river", "stone"]

# Every way the plan fills an FTS table: FTS5 external content rebuilt from its content table (built aside from
# the snapshot's copy of it); FTS5 with its own text, a kept FTS4 and FTS3 (filled from the snapshot: aside);
# FTS5 keyed by a column that is not the rowid (filled from the target's copy: built here, after the copy).
SCHEMA = f"""
CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
CREATE VIRTUAL TABLE note_ft USING fts5(title, body, content='note', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2');
CREATE TABLE doc(key TEXT PRIMARY KEY, n INTEGER UNIQUE, text TEXT);
CREATE VIRTUAL TABLE doc_ft USING fts5(text, content='doc', content_rowid='n');
CREATE VIRTUAL TABLE own5 USING fts5(a, b UNINDEXED, prefix='2');
CREATE VIRTUAL TABLE own4 USING fts4(a, b);
CREATE VIRTUAL TABLE old3 USING fts3(a);
CREATE TABLE w(i INTEGER PRIMARY KEY, word TEXT);
INSERT INTO w VALUES {", ".join(f"({i}, '{w}')" for i, w in enumerate(WORDS))};
WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 3000)
INSERT INTO note(id, title, body) SELECT x * 3,
    (SELECT word FROM w WHERE i = x % 10) || ' ' || x,
    (SELECT group_concat(word, ' ') FROM w WHERE i <= x % 7 + 2) || ' body' || (x % 97) FROM i;
INSERT INTO note_ft(note_ft) VALUES('rebuild');
INSERT INTO doc SELECT 'k' || id, id + 7, body FROM note WHERE id % 2;
INSERT INTO doc_ft(doc_ft) VALUES('rebuild');
INSERT INTO own5(rowid, a, b) SELECT id, title, body FROM note WHERE id % 5;
INSERT INTO own4(docid, a, b) SELECT id, body, title FROM note WHERE id % 2 = 0;
INSERT INTO old3(docid, a) SELECT id, title FROM note WHERE id % 4;
"""
FTS_TABLES = ("note_ft", "doc_ft", "own5", "own4", "old3")
QUERIES = ("zebra", "cafe", "meeting AND river", "ga*", "body1*", "alpha NOT stone")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.sqlite"
    conn = apsw.Connection(str(path))
    run_script(conn, SCHEMA)
    conn.close()
    return path


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = connect(db, readonly=True)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def shadow_rows(db: Path, table: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of each shadow table of the FTS table ``table``, in rowid order."""
    names = {r[0] for r in rows(db, "SELECT name FROM sqlite_schema WHERE type = 'table'")}
    return {s: rows(db, f"SELECT * FROM {quote(table + s)} ORDER BY rowid") for s in SHADOWS if table + s in names}


def side_folders(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{FTS_SIDE}*"))


def test_the_side_build_gives_the_in_process_index(source: Path, tmp_path: Path) -> None:
    plan = plan_for(source)
    here, aside = tmp_path / "here" / "t.sqlite", tmp_path / "aside" / "t.sqlite"
    for path in (here, aside):
        path.parent.mkdir()
    built_here = build_target(source, here, plan, side_min_bytes=IN_PROCESS)
    built_aside = build_target(source, aside, plan, side_min_bytes=0)
    assert "fts_side" in built_aside.seconds and "fts_side" not in built_here.seconds
    for table in FTS_TABLES:
        shadows = shadow_rows(aside, table)
        assert shadows["_segdir"] and shadows == shadow_rows(here, table), table  # the same index, row for row
        for q in QUERIES:
            sql = f"SELECT rowid FROM {quote(table)} WHERE {quote(table)} MATCH ? ORDER BY rowid"
            assert rows(aside, sql, q) == rows(here, sql, q) == rows(source, sql, q), (table, q)
    checks = [{"op": "exec", "sql": f"INSERT INTO {t}({t}) VALUES('integrity-check')"} for t in FTS_TABLES]
    assert all(r["ok"] for r in SqlJsEngine().run(aside, checks).results)
    report = verify_target(aside, plan, SqlJsEngine(), snapshot=source)
    assert report.ok, report.problems
    assert side_folders(aside.parent) == []


def test_a_side_build_removes_a_killed_runs_folder(source: Path, tmp_path: Path) -> None:
    """A folder a killed run left (nobody holds its lock) goes; the side build's own goes when it is done."""
    left = tmp_path / f"{FTS_SIDE}killed"
    left.mkdir()
    (left / "fts.sqlite").write_bytes(b"half a database")
    build_target(source, tmp_path / "t.sqlite", plan_for(source), side_min_bytes=0)
    assert side_folders(tmp_path) == []


def damage_own5_text(db: Path) -> None:
    """Break the b-tree page holding own5's text (read only to build its index, never copied as a table)."""
    conn = apsw.Connection(str(db))
    page = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'own5_content'").get
    size = conn.execute("PRAGMA page_size").get
    conn.close()
    with db.open("r+b") as fh:
        fh.seek((page - 1) * size + (100 if page == 1 else 0))
        fh.write(b"\x00" * 12)


BOTH = pytest.mark.parametrize("side_min_bytes", [0, IN_PROCESS], ids=["aside", "here"])


@BOTH
def test_a_damaged_snapshot_is_the_same_error_aside_and_here(source: Path, tmp_path: Path, side_min_bytes: int) -> None:
    plan = plan_for(source)
    out = tmp_path / "out" / "t.sqlite"
    out.parent.mkdir()
    damage_own5_text(source)
    with pytest.raises(NotADatabaseError) as caught:
        build_target(source, out, plan, side_min_bytes=side_min_bytes)
    assert str(source) in caught.value.message and "\n" not in caught.value.message
    assert list(out.parent.iterdir()) == []  # no target, no journal, no side folder


@BOTH
def test_a_failing_fts_statement_is_the_same_error_aside_and_here(
    source: Path, tmp_path: Path, side_min_bytes: int
) -> None:
    plan = plan_for(source)
    broken = [s.replace("SELECT _rowid_", "SELECT no_such_column") for s in plan.virtual_tables]
    assert broken != plan.virtual_tables
    out = tmp_path / "out" / "t.sqlite"
    out.parent.mkdir()
    with pytest.raises(FailbackError) as caught:
        build_target(source, out, replace(plan, virtual_tables=broken), side_min_bytes=side_min_bytes)
    assert type(caught.value) is FailbackError and caught.value.exit_code == 2
    assert "no such column: no_such_column" in caught.value.message
    assert list(out.parent.iterdir()) == []
