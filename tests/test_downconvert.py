"""Down-conversion to the old app's schema (convert.schema = "previous"), on real files: target + carry-over hold
all of the source (apsw join, the target's part in sql.js), an old NOT NULL column refused then filled, dropped
tables kept in the carry-over, and the old app's statements run on the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

import failback
from failback.assess.drift import load_old_schema
from failback.assess.statements import check_statements
from failback.audit import AuditLog
from failback.config import load_config
from failback.db.connect import open_source
from failback.db.schema import read_schema
from failback.engines import get_engine
from failback.errors import UnsupportedSchemaError
from failback.files import sha256_file
from failback.journal import list_runs
from failback.pipeline.downconvert import CARRY_MANIFEST, CARRY_OVER, DownResult, down_convert, prove_down
from failback.pipeline.driver import Rollback
from failback.pipeline.steps import Options
from failback.plan.down import DownPlan, FillValue, check_down, load_down, plan_down
from failback.plan.model import Action

from .conftest import copy_db, file_hashes

Cli = Callable[..., subprocess.CompletedProcess[str]]

SQLJS = get_engine("sqljs")
OLD = """
CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT);
CREATE TABLE tags (name TEXT PRIMARY KEY, color TEXT) WITHOUT ROWID;
CREATE TABLE legacy (k INTEGER PRIMARY KEY, v TEXT);
CREATE INDEX notes_on_title ON notes(title);
CREATE VIEW titles AS SELECT id, title FROM notes;
PRAGMA user_version = 3;
"""
NEW = """
CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT,
                    pinned INTEGER NOT NULL DEFAULT 0, meta BLOB);
CREATE TABLE tags (name TEXT PRIMARY KEY, color TEXT, rank REAL) WITHOUT ROWID;
CREATE TABLE sync_log (seq INTEGER PRIMARY KEY, change TEXT, at REAL);
CREATE TABLE kv (k TEXT, v);
INSERT INTO notes(id, title, body, pinned, meta) VALUES (1, 'a', 'x', 1, x'00ff'), (5, 'b', NULL, 0, NULL),
    (9, 'ü', 'long' , 1, 3.5);
DELETE FROM notes WHERE id = 5;
INSERT INTO notes(title, body) VALUES ('c', 'y');
INSERT INTO tags VALUES ('red', '#f00', 1.5), ('blue', NULL, NULL);
INSERT INTO sync_log VALUES (1, 'add', 1.25), (2, 'del', NULL);
INSERT INTO kv(rowid, k, v) VALUES (7, 'a', 1), (3, 'b', x'01');
PRAGMA user_version = 7;
"""


def _db(path: Path, script: str) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute(script)
    conn.close()
    return path


def _plan(source: Path, old: Path, fill: dict[str, FillValue] | None = None) -> DownPlan:
    found = load_old_schema(None, old)
    assert found is not None
    conn = open_source(source)
    try:
        return plan_down(read_schema(conn), found[0].schema, fill)
    finally:
        conn.close()


def _convert(source: Path, plan: DownPlan, tmp_path: Path) -> DownResult:
    (tmp_path / "run").mkdir()
    return down_convert(source, tmp_path / "target.sqlite", tmp_path / "run" / "carry-over.sqlite", plan, SQLJS)


def test_round_trip_target_and_carry_over_hold_the_source(tmp_path: Path) -> None:
    source, old = _db(tmp_path / "native.sqlite", NEW), _db(tmp_path / "old.sqlite", OLD)
    plan = _plan(source, old)
    check_down(plan)
    actions = {(d.kind, d.name): d.action for d in plan.decisions}
    assert actions[("column", "notes.pinned")] is Action.CARRY
    assert actions[("column", "tags.rank")] is Action.CARRY
    assert actions[("table", "sync_log")] is Action.CARRY
    assert actions[("table", "legacy")] is Action.KEEP  # in the old schema only: created empty
    result = _convert(source, plan, tmp_path)
    assert result.ok, result.problems
    assert {t.table for t in result.tables} == {"notes", "tags", "sync_log", "kv"}
    assert all(t.sqljs is not None for t in result.tables if t.table in ("notes", "tags"))
    target = apsw.Connection(str(result.target))
    assert target.execute("PRAGMA user_version").get == 3
    cols = [r[1] for r in target.execute("PRAGMA table_info(notes)")]
    assert cols == ["id", "title", "body"]
    assert target.execute("SELECT seq FROM sqlite_sequence WHERE name = 'notes'").get == 10  # the source's counter
    assert target.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'sync_log'").get == 0
    target.close()
    carry = apsw.Connection(str(result.carry_over))
    manifest = {
        r[1]: (r[0], json.loads(r[3]), json.loads(r[4])) for r in carry.execute(f"SELECT * FROM {CARRY_MANIFEST}")
    }
    assert manifest["notes"][1:] == (["rowid"], ["pinned", "meta"])
    assert manifest["tags"][1:] == (["name"], ["name", "rank"])
    name = manifest["sync_log"][0]
    assert carry.execute(f"SELECT rowid, seq, change FROM {name} ORDER BY rowid").fetchall() == [
        (1, 1, "add"),
        (2, 2, "del"),
    ]
    carry.close()
    # a changed byte in the carry-over is found
    carry = apsw.Connection(str(result.carry_over))
    carry.execute(f"UPDATE {manifest['notes'][0]} SET pinned = 0 WHERE rowid = 1")
    carry.close()
    checks = prove_down(source, result.target, result.carry_over, plan, SQLJS)
    assert [t.table for t in checks if not t.ok] == ["notes"]


def test_old_not_null_column_refused_then_filled(tmp_path: Path) -> None:
    old = _db(tmp_path / "old.sqlite", OLD.replace("body TEXT);", "body TEXT, folder TEXT NOT NULL);"))
    source = _db(tmp_path / "native.sqlite", NEW)
    plan = _plan(source, old)
    with pytest.raises(UnsupportedSchemaError, match=r"notes\.folder") as err:
        check_down(plan)
    assert "\n" not in str(err.value) and err.value.exit_code == 3
    plan = _plan(source, old, {"notes.folder": "inbox"})
    check_down(plan)
    assert any(d.action is Action.FILL and d.name == "notes.folder" for d in plan.decisions)
    result = _convert(source, plan, tmp_path)
    assert result.ok, result.problems
    conn = apsw.Connection(str(result.target))
    assert {r[0] for r in conn.execute("SELECT folder FROM notes")} == {"inbox"}
    conn.close()


def test_old_statements_run_on_the_down_converted_target(tmp_path: Path) -> None:
    source, old = _db(tmp_path / "native.sqlite", NEW), _db(tmp_path / "old.sqlite", OLD)
    plan = _plan(source, old)
    result = _convert(source, plan, tmp_path)
    statements = [
        "INSERT INTO notes(title, body) VALUES (?, ?)",
        "SELECT id, title, body FROM notes WHERE id = ?",
        "SELECT * FROM titles",
        "INSERT INTO tags(name, color) VALUES (:name, :color)",
        "SELECT v FROM legacy WHERE k = ?",
    ]
    outcomes = check_statements(SQLJS, result.target, statements, [])
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


def _stored_schema(db: Path) -> tuple[list[tuple[str, str, str]], int]:
    conn = apsw.Connection(str(db))
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
        return rows, conn.execute("PRAGMA user_version").get
    finally:
        conn.close()


def _previous(demo: Path, extra: str = "") -> Path:
    """The demo's failback.toml with convert.schema = "previous" (``extra``: more lines for [convert])."""
    cfg = demo / "failback.toml"
    cfg.write_text(cfg.read_text().replace("[convert]\n", f'[convert]\nschema = "previous"\n{extra}'))
    return cfg


def test_rollback_down_converts_the_demo_to_the_old_apps_schema(demo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    old_schema = _stored_schema(demo_dir / "app-sqljs.sqlite")
    cfg = _previous(demo_dir)
    res = cli("rollback", "-c", str(cfg), "--yes")
    assert res.returncode == 0, res.stderr
    assert "DATABASE_PROVIDER=sqljs" in (demo_dir / "app.env").read_text()
    assert _stored_schema(demo_dir / "app-sqljs.sqlite") == old_schema  # the old app's schema, user_version 3
    [run] = list_runs(load_config(cfg).state_path)
    state, carry_over = run.load(), run.file(CARRY_OVER)
    convert, verify = state.step("convert").result, state.step("verify").result
    assert convert["carry_sha256"] == sha256_file(carry_over)
    codes = {f["code"] for f in state.step("assess").result["findings"]}
    assert "drift-none" in codes and not any(c.startswith("drift-") and c != "drift-none" for c in codes)
    carried = {d["name"] for d in convert["down"] if d["action"] == "carry"}
    assert carried == {"note.isSynced", "syncState", "grdb_migrations"}
    assert verify["integrity"] == "ok" and all(t["ok"] for t in verify["tables"])
    assert len(verify["statements"]) == 5 and all(c["ok"] for c in verify["statements"])
    # the carry-over is backed up in every layer, kept by retention for the done run, and shown in the report
    stored = state.step("backup").result["carry_over"]
    assert stored["sha256"]["raw"] == convert["carry_sha256"] and all(x["ok"] for x in stored["layers"])
    protected = {p.id: p.reasons for p in failback.status(cfg).protected}
    assert any("carry-over" in r and run.id in r for r in protected[stored["id"]])
    report = run.file("report.md").read_text()
    assert f"## Backup of the carry over: `{stored['id']}`" in report
    assert "## Down-conversion to the old app's schema" in report and "| note.isSynced | carry |" in report
    # target + carry-over == source, proven again on a copy of the source (its files stay untouched)
    source = copy_db(demo_dir / "native.sqlite", tmp_path / "source-copy.sqlite")
    plan = load_down(json.loads(run.file("down.json").read_text()))
    checks = prove_down(source, demo_dir / "app-sqljs.sqlite", carry_over, plan, SQLJS)
    assert {t.table for t in checks} >= {"note", "syncState", "grdb_migrations"} and all(t.ok for t in checks)


def test_rollback_refuses_an_unfillable_old_not_null_column_and_switches_nothing(demo_dir: Path, cli: Cli) -> None:
    rows, version = _stored_schema(demo_dir / "app-sqljs.sqlite")
    folder = ("createdAt DATETIME NOT NULL)", "createdAt DATETIME NOT NULL, color TEXT NOT NULL)")
    sql = [s.replace(*folder) for _, n, s in rows if n != "sqlite_sequence"]
    (demo_dir / "old.sql").write_text(";\n".join(sql) + f";\nPRAGMA user_version = {version};\n")
    cfg = _previous(demo_dir)
    cfg.write_text(cfg.read_text().replace("[app]\n", '[app]\nschema = "old.sql"\n'))
    before = file_hashes(demo_dir / "app.env", demo_dir / "app-sqljs.sqlite")
    res = cli("rollback", "-c", str(cfg), "--yes")
    assert res.returncode == 3, res.stderr
    assert "folder.color" in res.stderr and "[convert] fill" in res.stderr
    assert file_hashes(demo_dir / "app.env", demo_dir / "app-sqljs.sqlite") == before
    [run] = list_runs(load_config(cfg).state_path)
    assert not run.file(CARRY_OVER).exists()
    assert not list(demo_dir.glob(".app-sqljs.sqlite.failback-*"))


@pytest.mark.parametrize("tamper", [False, True])
def test_resume_trusts_the_carry_over_only_by_its_sha256(demo_dir: Path, tamper: bool) -> None:
    cfg_path = _previous(demo_dir)
    cfg = load_config(cfg_path)

    def stop_after_backup(step: str, event: str, _: dict[str, Any]) -> None:
        if step == "backup" and event == "done":
            os.kill(os.getpid(), signal.SIGTERM)  # the run stops at the next safe point

    stopped = Rollback(cfg, cfg_path, Options(yes=True), on_step=stop_after_backup).run()
    assert stopped.exit_code == 4
    carry_over = stopped.run_dir / CARRY_OVER
    if tamper:
        conn = apsw.Connection(str(carry_over))
        conn.execute("DELETE FROM carry_0 WHERE rowid IN (SELECT rowid FROM carry_0 LIMIT 1)")
        conn.close()
    resumed = Rollback.resume(cfg, cfg_path)
    assert resumed.exit_code == 0 and resumed.run_id == stopped.run_id
    events = [r["event"] for r in AuditLog(cfg.state.audit_log).records(stopped.run_id)]
    last = events[len(events) - 1 - events[::-1].index("run.resume") :]
    assert ("step.convert.reused" in last) is not tamper  # a changed carry-over is written again, never trusted
    assert resumed.results["verify"]["ok"]
    [run] = list_runs(cfg.state_path)
    assert sha256_file(carry_over) == run.load().step("convert").result["carry_sha256"]
