"""Schema-level verification: the target's schema (sqlite_schema through apsw and through sql.js) is the plan's —
every planned table, index, view and trigger with its planned SQL, nothing else, the planned header values — and a
trigger is proved only when it is in the target and the target's own statements fire it in sql.js."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.db.schema import created_object
from failback.engines.sqljs import SqlJsEngine
from failback.pipeline.export import export_database, plan_for
from failback.verify import covered_triggers, planned_schema, schema_differences, verify_target

from .conftest import file_hashes
from .test_verify import tamper
from .test_verify_sources import make_db

SOURCE = """
CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
CREATE TABLE log(noteId INTEGER, at TEXT);
CREATE UNIQUE INDEX note_title ON note(title);
CREATE VIEW recent AS SELECT id, title FROM note ORDER BY id DESC LIMIT 3;
CREATE TRIGGER note_logged AFTER INSERT ON note BEGIN INSERT INTO log VALUES (new.id, 'now'); END;
INSERT INTO note(title, body) VALUES ('one', 'a'), ('two', 'b'), ('three', 'c');
PRAGMA user_version = 42;
PRAGMA application_id = 1179648066;
"""
EVIL = "CREATE TRIGGER wipe AFTER INSERT ON note BEGIN DELETE FROM note; END"


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    src = make_db(tmp_path / "src.sqlite", SOURCE)
    out = tmp_path / "out.sqlite"
    export_database(src, out)
    return src, out


def verify_json(cli: Callable[..., Any], src: Path, out: Path) -> tuple[int, dict[str, Any]]:
    res = cli("verify", str(src), str(out), "--json")
    return res.returncode, json.loads(res.stdout)


def failed(report: dict[str, Any], kind: str) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"] if c["kind"] == kind and not c["ok"]}


def test_the_issue_target_fails_and_names_each_object(exported: tuple[Path, Path], cli: Callable[..., Any]) -> None:
    """Issue 22 item 4: a trigger and a unique index removed and a trigger that wipes the table added passed with
    exit 0, the report saying the removed trigger "prepares in sql.js"."""
    src, out = exported
    before = file_hashes(src)
    code, clean = verify_json(cli, src, out)
    assert code == 0, clean["problems"]
    [summary] = [c for c in clean["checks"] if c["kind"] == "schema"]
    assert summary["ok"] and "nothing else (apsw and sql.js)" in summary["detail"]
    [proof] = [c for c in clean["checks"] if c["name"] == "note_logged"]
    assert proof["ok"] and proof["detail"] == "in the target, fires on its event"

    tamper(out, f"DROP TRIGGER note_logged; DROP INDEX note_title; {EVIL}")
    code, report = verify_json(cli, src, out)
    assert code == 1
    assert {t["table"]: t["status"] for t in report["tables"]} == {"note": "equal", "log": "equal"}  # rows alike
    assert failed(report, "schema") == {
        "trigger note_logged": "missing in the target (apsw and sql.js)",
        "index note_title": "missing in the target (apsw and sql.js)",
        "trigger wipe": f"not in the plan: {EVIL!r} (apsw and sql.js)",
    }
    assert failed(report, "trigger prepares in sql.js") == {"note_logged": "not in the target: note_logged"}
    assert file_hashes(src) == before


@pytest.mark.parametrize(
    ("sql", "kind", "name", "detail"),
    [
        ("CREATE VIEW extra AS SELECT 1", "schema", "view extra", "not in the plan"),
        ("CREATE TABLE extra(x)", "schema", "table extra", "not in the plan"),
        ("CREATE INDEX extra ON log(at)", "schema", "index extra", "not in the plan"),
        ("DROP VIEW recent; CREATE VIEW recent AS SELECT 1", "schema", "view recent", "SQL differs: planned"),
        ("PRAGMA user_version = 7", "schema", "pragma user_version", "7 in the target, 42 planned"),
        ("PRAGMA application_id = 0", "schema", "pragma application_id", "0 in the target, 1179648066 planned"),
        # the trigger of that name is there, but no longer fires when a note is inserted
        (
            "DROP TRIGGER note_logged; CREATE TRIGGER note_logged AFTER DELETE ON note BEGIN SELECT 1; END",
            "trigger prepares in sql.js",
            "note_logged",
            "does not fire on its event: note_logged",
        ),
    ],
)
def test_each_kind_of_schema_difference_fails(
    exported: tuple[Path, Path], cli: Callable[..., Any], sql: str, kind: str, name: str, detail: str
) -> None:
    src, out = exported
    tamper(out, sql)
    code, report = verify_json(cli, src, out)
    assert code == 1
    assert failed(report, kind)[name].startswith(detail), report["problems"]


def test_whitespace_and_comments_are_not_a_difference(exported: tuple[Path, Path], cli: Callable[..., Any]) -> None:
    """SQLite stores the CREATE text as written: the same statement laid out otherwise is the same object."""
    src, out = exported
    tamper(
        out,
        "DROP TRIGGER note_logged; CREATE TRIGGER IF NOT EXISTS note_logged\n  AFTER INSERT ON note -- logged\n"
        "BEGIN\n  INSERT INTO log VALUES (new.id, 'now');\nEND;",
    )
    code, report = verify_json(cli, src, out)
    assert code == 0, report["problems"]


def test_a_converted_fts_sync_trigger_is_proved_only_when_present(native_db: Path, tmp_path: Path) -> None:
    """The FTS4 sync triggers the plan writes (``__note_ft_*``): each must be in the target and fire."""
    out = tmp_path / "out.sqlite"
    result = export_database(native_db, out)
    [sync] = [c for c in result.verification.checks if c.name == "__note_ft_*"]
    assert sync.ok, sync.detail
    tamper(out, "DROP TRIGGER __note_ft_ai")
    report = verify_target(out, result.plan, SqlJsEngine(), snapshot=native_db)
    [sync] = [c for c in report.checks if c.name == "__note_ft_*"]
    assert not sync.ok and sync.detail == "not in the target: __note_ft_ai"
    assert "schema trigger __note_ft_ai: missing in the target (apsw and sql.js)" in report.problems
    # the write round trip through the remaining triggers still updates the index: only the schema check sees it
    assert {t.status for t in report.tables} == {"equal"}


def test_planned_schema_reads_the_plans_statements(exported: tuple[Path, Path]) -> None:
    src, _ = exported
    planned = planned_schema(plan_for(src))
    assert sorted(planned.objects) == [
        ("index", "note_title"),
        ("table", "log"),
        ("table", "note"),
        ("trigger", "note_logged"),
        ("view", "recent"),
    ]
    assert planned.pragmas == {"user_version": 42, "application_id": 1179648066}
    rows = [("table", "t_x", "t_x", "CREATE TABLE 't_x'(a)", 1), ("index", "sqlite_autoindex_note_1", "note", None, 0)]
    assert schema_differences(planned, rows)["table t_x"].startswith("not in the plan")  # a shadow table of nothing


@pytest.mark.parametrize(
    ("sql", "kind", "name", "key_start"),
    [
        ("create   table  if not exists main.t(x)  ", "table", "t", ("CREATE", "TABLE", "t", "(")),
        ('CREATE UNIQUE INDEX "I" on t(x) ;', "index", "I", ("CREATE", "UNIQUE", "INDEX", "i", "on")),
        ("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", "trigger", "tr", ("CREATE", "TRIGGER", "tr")),
        ("CREATE VIRTUAL TABLE f USING fts4(a) -- c", "table", "f", ("CREATE", "VIRTUAL", "TABLE", "f", "USING")),
    ],
)
def test_created_object_follows_how_sqlite_stores_the_statement(
    sql: str, kind: str, name: str, key_start: tuple[str, ...]
) -> None:
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
    conn.execute(sql)
    stored = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE name = ? UNION ALL SELECT sql FROM sqlite_temp_schema WHERE name = ?",
        (name, name),
    ).get
    obj = created_object(sql)
    assert (obj.type, obj.name) == (kind, name) and obj.key[: len(key_start)] == key_start
    assert created_object(stored).key == obj.key  # what SQLite wrote is the same statement


def test_covered_triggers() -> None:
    names = ["__f_bu", "__f_ai", "__g_ai", "plain"]
    assert covered_triggers("__f_*", names) == ["__f_bu", "__f_ai"]
    assert covered_triggers("plain", names) == ["plain"] and covered_triggers("gone", names) == []


def test_verify_plans_the_source_as_export_did(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """``verify SOURCE TARGET`` plans SOURCE again: with the config's [convert] settings (here a view the target
    cannot prepare, dropped as allow_drop says) the target is as planned; planned without them, the view is missing."""
    src = make_db(tmp_path / "src.sqlite", SOURCE + "CREATE VIEW shouty AS SELECT app_upper(title) FROM note;")
    (tmp_path / "failback.toml").write_text(
        '[source]\npath = "src.sqlite"\n[target]\npath = "t.sqlite"\n[app]\nconfig = "app.env"\n'
        '[convert]\nallow_drop = ["shouty"]\n'
    )
    exported = cli("export", "src.sqlite", "out.sqlite", "--config", "failback.toml")
    assert exported.returncode == 0, exported.stderr
    code, report = verify_json(cli, src, tmp_path / "out.sqlite")
    assert code == 0, report["problems"]
    elsewhere = cli("verify", str(src), str(tmp_path / "out.sqlite"), "-c", str(tmp_path / "none.toml"), "--json")
    assert elsewhere.returncode == 1
    [(name, detail)] = failed(json.loads(elsewhere.stdout), "schema").items()  # planned without allow_drop: refused
    assert name == "view shouty" and detail.startswith("the target engine cannot hold it: ") and "app_upper" in detail
