"""Schema drift against the old app's schema, and the old app's statements run in sql.js on the result: each drift
kind on real files, with an old statement it breaks and one it does not."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from failback.assess import drift as drift_module
from failback.assess.drift import (
    Drift,
    compare_schemas,
    load_old_schema,
    old_app_drift,
    planned_app_schema,
    read_app_schema,
    schema_from_sql,
)
from failback.assess.statements import _params, blame, check_statements, load_statements
from failback.config import Config
from failback.db.connect import open_source
from failback.db.sqltext import function_calls
from failback.engines import get_engine
from failback.errors import ConfigError, NotADatabaseError
from failback.pipeline.export import PlanSettings, build_target, read_plan
from failback.profiles import load_profile

BASE = """
CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT {x});
CREATE TABLE b (id INTEGER PRIMARY KEY, y TEXT);
INSERT INTO a(id, x) VALUES (1, 'ab'), (2, 'cd');
INSERT INTO b(id, y) VALUES (1, 'q');
"""
OLD = BASE.format(x="") + "CREATE INDEX a_on_x ON a(x); CREATE VIEW v AS SELECT id, x FROM a;"


def _db(path: Path, script: str) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute(script)
    conn.close()
    return path


def _lacks(sql: str) -> list[str]:
    profile = load_profile("sqljs-1.16.0")
    return [f"{n}/{a}" for n, a in function_calls(sql) if not profile.has_function(n, a)]


# (new schema, the drift expected (kind, name, change, severity), an old statement it breaks, one it does not)
CASES = {
    "table dropped": (
        "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT); INSERT INTO a VALUES (1, 'ab');"
        "CREATE INDEX a_on_x ON a(x); CREATE VIEW v AS SELECT id, x FROM a;",
        ("table", "b", "dropped", "high"),
        "SELECT y FROM b",
        "SELECT x FROM a WHERE id = ?",
    ),
    "table renamed": (
        OLD.replace("TABLE b ", "TABLE b2 ").replace("INTO b(", "INTO b2("),
        ("table", "b", "renamed", "high"),
        "SELECT y FROM b WHERE id = ?",
        "SELECT y FROM b2 WHERE id = ?",
    ),
    "table added": (
        OLD + "CREATE TABLE c (id INTEGER PRIMARY KEY, z TEXT NOT NULL);",
        ("table", "c", "added", "info"),
        None,
        "INSERT INTO b(y) VALUES (?)",
    ),
    "column added NOT NULL without default": (
        OLD.replace("x TEXT ", "x TEXT, z TEXT NOT NULL").replace(
            "a(id, x) VALUES (1, 'ab'), (2, 'cd')", "a VALUES (1, 'ab', 'z')"
        ),
        ("column", "a.z", "added", "high"),
        "INSERT INTO a(x) VALUES (?)",
        "UPDATE a SET x = :x WHERE id = :id",
    ),
    "column added with a default": (
        OLD.replace("x TEXT ", "x TEXT, z TEXT NOT NULL DEFAULT 'n'"),
        ("column", "a.z", "added", "info"),
        None,
        "INSERT INTO a(x) VALUES (?)",
    ),
    "column dropped": (
        OLD.replace("x TEXT ", "w TEXT, k INTEGER")
        .replace("(id, x)", "(id, w)")
        .replace("(x)", "(w)")
        .replace("id, x FROM", "id, w FROM"),
        ("column", "a.x", "renamed", "high"),  # same type: detected as the rename it may be
        "SELECT x FROM a WHERE id = ?",
        "SELECT id FROM a WHERE id = ?",
    ),
    "column renamed": (
        OLD.replace("x TEXT ", "x2 TEXT")
        .replace("(id, x)", "(id, x2)")
        .replace("(x)", "(x2)")
        .replace("id, x FROM", "id, x2 FROM"),
        ("column", "a.x", "renamed", "high"),
        "UPDATE a SET x = ? WHERE id = ?",
        "DELETE FROM a WHERE id = ?",
    ),
    "type changed": (
        OLD.replace("x TEXT ", "x BLOB "),
        ("column", "a.x", "type", "warn"),
        None,
        "SELECT x FROM a WHERE x = ?",
    ),
    "now NOT NULL": (
        OLD.replace("x TEXT ", "x TEXT NOT NULL"),
        ("column", "a.x", "nullability", "high"),
        "INSERT INTO a(id) VALUES (?)",
        "INSERT INTO a(id, x) VALUES (?, ?)",
    ),
    "CHECK added": (
        OLD.replace("x TEXT ", "x TEXT CHECK (length(x) < 3)"),
        ("table", "a", "constraint", "warn"),
        "UPDATE a SET x = 'abcdef' WHERE id = ?",
        "UPDATE a SET x = 'ef' WHERE id = ?",
    ),
    "unique index added": (
        OLD + "CREATE UNIQUE INDEX a_x_unique ON a(x);",
        ("index", "a_x_unique", "added", "warn"),
        "INSERT INTO a(x) SELECT x FROM a WHERE id = ?",
        "INSERT INTO a(x) VALUES ('new')",
    ),
    "index renamed": (
        OLD.replace("INDEX a_on_x", 'INDEX "a_by_x"'),
        ("index", "a_on_x", "renamed", "info"),
        None,
        "SELECT id FROM a WHERE x = ?",
    ),
    "trigger added calling a function the app lacks": (
        OLD + "CREATE TRIGGER a_t AFTER INSERT ON a BEGIN SELECT app_slug(new.x); END;",
        ("trigger", "a_t", "added", "high"),
        "INSERT INTO a(x) VALUES (?)",
        "SELECT x FROM a WHERE id = ?",
    ),
    "view dropped": (
        BASE.format(x="") + "CREATE INDEX a_on_x ON a(x);",
        ("view", "v", "dropped", "high"),
        "SELECT x FROM v",
        "SELECT x FROM a",
    ),
    "view changed": (
        BASE.format(x="") + "CREATE INDEX a_on_x ON a(x); CREATE VIEW v AS SELECT id FROM a;",
        ("view", "v", "changed", "warn"),
        "SELECT x FROM v WHERE id = ?",
        "SELECT id FROM v WHERE id = ?",
    ),
    "collation changed": (
        OLD.replace("x TEXT ", "x TEXT COLLATE NOCASE"),
        ("column", "a.x", "collation", "warn"),
        None,
        "SELECT id FROM a WHERE x = ?",
    ),
    "default dropped": (  # the old schema has x TEXT DEFAULT 'd'
        OLD.replace("x TEXT ", "x TEXT NOT NULL"),
        ("column", "a.x", "default", "high"),
        "INSERT INTO a(id) VALUES (?)",
        "INSERT INTO a(id, x) VALUES (?, ?)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_drift_kind_found_and_old_statements_run_in_sqljs(case: str, tmp_path: Path) -> None:
    new_sql, (kind, name, change, severity), breaks, works = CASES[case]
    old_script = OLD.replace("x TEXT ", "x TEXT DEFAULT 'd'") if case == "default dropped" else OLD
    old = _db(tmp_path / "old.sqlite", old_script)
    new = _db(tmp_path / "new.sqlite", new_sql)
    before = new.read_bytes()
    loaded = load_old_schema(None, old)
    assert loaded is not None and loaded[1] == str(old)
    conn = open_source(new)
    try:
        drift = compare_schemas(loaded[0], read_app_schema(conn), _lacks)
    finally:
        conn.close()
    assert (kind, name, change, severity) in [(d.kind, d.name, d.change, d.severity) for d in drift], drift
    statements = [s for s in (breaks, works) if s]
    checks = check_statements(get_engine("sqljs"), new, statements, drift)
    assert checks[-1].ok, checks[-1]
    if breaks:
        assert not checks[0].ok
        assert checks[0].cause.startswith(f"{kind} {name} {change}") or name.split(".")[0] in checks[0].cause, checks[0]
    assert new.read_bytes() == before  # the result is only read


def test_statements_are_rolled_back_and_leave_the_file_unchanged(tmp_path: Path) -> None:
    new = _db(tmp_path / "new.sqlite", OLD)
    before = new.read_bytes()
    checks = check_statements(
        get_engine("sqljs"),
        new,
        [
            "DELETE FROM a",
            "SELECT count(*) FROM a",
            "INSERT INTO a(id, x) VALUES (?, ?)",
            "SELECT x FROM a WHERE id = ?",
        ],
        [],
    )
    assert [c.ok for c in checks] == [True] * 4
    assert checks[1].rows == 1  # one row: the count, run after the DELETE was rolled back
    assert checks[2].params[0] == {"int": "3"}  # a fresh key for the new row, not a colliding one
    assert checks[3].params == [{"int": "1"}] and checks[3].rows == 1  # a key drawn from the data finds its row
    assert new.read_bytes() == before


def test_parameters_numbered_as_sqlite_numbers_them() -> None:
    ps = _params("SELECT * FROM a WHERE x = :x AND id IN (?, ?5) OR x LIKE :x")
    assert [(p.index, p.column) for p in ps[:3]] == [(1, "x"), (2, "id"), (3, None)]
    assert len(ps) == 5 and ps[4].column == "id"


def test_user_version_and_application_id_compared(tmp_path: Path) -> None:
    old = _db(tmp_path / "old.sqlite", OLD + "PRAGMA user_version = 3; PRAGMA application_id = 77;")
    new = _db(tmp_path / "new.sqlite", OLD + "PRAGMA user_version = 7; PRAGMA application_id = 78;")
    loaded = load_old_schema(None, old)
    assert loaded is not None
    conn = open_source(new)
    try:
        drift = compare_schemas(loaded[0], read_app_schema(conn))
    finally:
        conn.close()
    assert [(d.name, d.detail, d.severity) for d in drift] == [
        ("user_version", "3 -> 7", "high"),
        ("application_id", "77 -> 78", "high"),
    ]


def test_old_schema_from_a_migrations_folder(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_init.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT);")
    (folder / "002_b.sql").write_text("CREATE TABLE b (id INTEGER PRIMARY KEY, y TEXT); PRAGMA user_version = 2;")
    loaded = load_old_schema(folder, tmp_path / "absent.sqlite")
    assert loaded is not None
    assert set(loaded[0].schema.tables) == {"a", "b"} and loaded[0].schema.user_version == 2
    (folder / "003_bad.sql").write_text("CREATE TABLE a (id);")
    with pytest.raises(ConfigError, match="the old app's schema does not run"):
        load_old_schema(folder, tmp_path / "absent.sqlite")
    assert load_old_schema(None, tmp_path / "absent.sqlite") is None


def test_blame_names_the_change_an_error_points_at() -> None:
    drift = [
        Drift("table", "a", "constraint", "adds CHECK (x)", "", "warn"),
        Drift("column", "a.z", "added", "TEXT NOT NULL without a default", "", "high"),
    ]
    assert blame("NOT NULL constraint failed: a.z", "INSERT INTO a(x) VALUES (?)", drift).startswith("column a.z added")
    assert blame("no such column: q", "SELECT q FROM elsewhere", drift) == ""


def test_config_reads_statements_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "statements.sql").write_text(
        "SELECT 1;\n-- a comment; with a semicolon\nUPDATE a SET x = ';'\n WHERE id = ?;\n"
    )
    cfg = Config.model_validate(
        {"source": {"path": "n"}, "target": {"path": "t"}, "app": {"config": "a", "statements": "statements.sql"}}
    )
    cfg.base = tmp_path
    assert load_statements(cfg) == ["SELECT 1", "-- a comment; with a semicolon\nUPDATE a SET x = ';'\n WHERE id = ?"]


@pytest.mark.parametrize(
    ("policy", "previous", "expected"),
    [(None, True, 3), ("previous", False, 7), ("source", True, 7), (11, True, 11)],
)
def test_user_version_policy_planned_built_and_stated(
    policy: str | int | None, previous: bool, expected: int, tmp_path: Path
) -> None:
    source = _db(tmp_path / "native.sqlite", OLD + "PRAGMA user_version = 7;")
    if previous:
        _db(tmp_path / "old.sqlite", OLD + "PRAGMA user_version = 3;")
    target: dict[str, object] = {"path": "old.sqlite"} | ({} if policy is None else {"user_version": policy})
    cfg = Config.model_validate({"source": {"path": "native.sqlite"}, "target": target, "app": {"config": "a"}})
    cfg.base = tmp_path
    _, plan = read_plan(source, PlanSettings.of(cfg))
    assert plan.pragmas["user_version"] == expected
    stated = [d.reason for d in plan.findings() if d.name == "user_version"]
    assert bool(stated) == (expected != 7) and all(f"7 -> {expected}" in r for r in stated)
    built = tmp_path / "built.sqlite"
    build_target(source, built, plan)
    conn = open_source(built)
    try:
        assert conn.execute("PRAGMA user_version").get == expected
    finally:
        conn.close()


def test_the_planned_schema_is_each_plans_own(tmp_path: Path) -> None:
    """The schema planned_app_schema gives is the one the built file has, plan after plan in one process (plans
    whose statements differ never share a result; plans whose statements agree do)."""
    settings = PlanSettings(functions=["app_slug/1"])  # the app registers it (one case's trigger calls it)
    for i, case in enumerate(sorted(CASES)):
        db = _db(tmp_path / f"{i}.sqlite", CASES[case][0])
        _, plan = read_plan(db, settings)
        build_target(db, tmp_path / f"{i}-built.sqlite", plan)
        conn = open_source(tmp_path / f"{i}-built.sqlite")
        try:
            assert compare_schemas(planned_app_schema(plan), read_app_schema(conn)) == [], case
        finally:
            conn.close()
        assert planned_app_schema(read_plan(db, settings)[1]) is planned_app_schema(plan)


def test_drift_is_kept_by_the_old_schema_not_by_its_file(tmp_path: Path) -> None:
    """Tenants of one app (old files of the same schema, other rows) share one comparison; a file whose schema or
    header differs gets its own; each equals the full comparison, and an unreadable old file fails as the full
    read does."""
    new = _db(tmp_path / "new.sqlite", OLD.replace("x TEXT ", "x TEXT NOT NULL DEFAULT 'd'"))
    _, plan = read_plan(new, PlanSettings("sqljs-1.16.0"))
    olds = [_db(tmp_path / f"old{n}.sqlite", OLD + f"INSERT INTO b(y) VALUES ('tenant {n}');") for n in range(2)]
    olds.append(_db(tmp_path / "newer.sqlite", OLD + "PRAGMA user_version = 4;"))
    olds.append(_db(tmp_path / "wider.sqlite", OLD + "ALTER TABLE b ADD COLUMN z INTEGER;"))
    kept = len(drift_module._drifts)
    for old in olds:
        loaded = load_old_schema(None, old)
        assert loaded is not None
        full = compare_schemas(loaded[0], planned_app_schema(plan), _lacks)
        assert old_app_drift(None, old, plan, _lacks, ("sqljs-1.16.0",)) == (full, str(old))
    assert len(drift_module._drifts) - kept == 3  # the two tenants' files share one
    sql = tmp_path / "schema.sql"
    for text in (OLD, OLD + "CREATE TABLE c (id INTEGER PRIMARY KEY);"):  # an [app] schema: kept by its text
        sql.write_text(text)
        full = compare_schemas(schema_from_sql(text, str(sql)), planned_app_schema(plan), _lacks)
        assert old_app_drift(sql, olds[0], plan, _lacks, ()) == (full, str(sql))
    assert old_app_drift(None, tmp_path / "absent.sqlite", plan, _lacks, ()) is None
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(olds[0].read_bytes()[:4096] + b"\xa5" * 8192)
    messages = []
    for read in (lambda: load_old_schema(None, broken), lambda: old_app_drift(None, broken, plan, _lacks, ())):
        with pytest.raises(NotADatabaseError) as failed:
            read()
        messages.append(failed.value.message)
    assert messages[0] == messages[1], messages
