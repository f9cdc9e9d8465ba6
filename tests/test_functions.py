"""App functions everywhere (#22 item 3): every object calling a function the target lacks is found, kept
with a stand-in when ``[app] functions`` declares it (where that is faithful), refused otherwise, dropped
when ``allow_drop`` names it. Real databases built by apsw with the function registered (as the app has it),
exported by the real CLI, read back in the real sql.js."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from failback.config import AppConfig
from failback.db import sqltext
from failback.demo import create_demo
from failback.engines.sqljs import SqlJsEngine
from failback.errors import NotADatabaseError

Cli = Callable[..., subprocess.CompletedProcess[str]]
TABLE = "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT)"

# kind -> (schema, the object's name as plans and allow_drop name it)
KINDS: dict[str, tuple[str, str]] = {
    "default": ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT DEFAULT (app_norm('X')))", "t.b"),
    "expression index": (f"{TABLE}; CREATE INDEX t_norm ON t(app_norm(a))", "t_norm"),
    "partial index": (f"{TABLE}; CREATE INDEX t_part ON t(a) WHERE app_norm(a) = 'x'", "t_part"),
    "virtual generated": (
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT, v TEXT AS (app_norm(a)) VIRTUAL)",
        "t.v",
    ),
    "stored generated": (
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT, s TEXT AS (app_norm(a)) STORED)",
        "t.s",
    ),
    "check": ("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT CHECK (app_norm(b) <> 'bad'))", "t.b"),
    "view": (f"{TABLE}; CREATE VIEW t_view AS SELECT id, app_norm(a) AS n FROM t", "t_view"),
    "trigger": (
        f"{TABLE}; CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN UPDATE t SET b = app_norm(new.a) WHERE id = new.id; END",
        "t_ai",
    ),
}
# Kinds whose values a build would compute (or sql.js's non-deterministic app functions forbid): refused even
# when declared.
COMPUTED = {"expression index", "partial index", "virtual generated", "stored generated"}
ROWS = [(1, "Hello", "World"), (2, "ÅBC", "q"), (3, None, "x")]


def app_norm(x: object) -> object:
    return None if x is None else str(x).lower()


def make_db(path: Path, schema: str) -> Path:
    conn = apsw.Connection(str(path))
    conn.create_scalar_function("app_norm", app_norm, 1, deterministic=True)
    conn.execute(schema)
    conn.executemany("INSERT INTO t(id, a, b) VALUES (?, ?, ?)", ROWS)
    conn.close()
    return path


def write_config(path: Path, *, functions: list[str] = (), allow_drop: list[str] = ()) -> Path:  # type: ignore[assignment]
    path.write_text(
        '[source]\npath = "src.sqlite"\n[target]\npath = "out.sqlite"\n'
        f'[app]\nconfig = "app.env"\nfunctions = {json.dumps(list(functions))}\n'
        f"[convert]\nallow_drop = {json.dumps(list(allow_drop))}\n"
    )
    return path


def schema_sql(db: Path) -> dict[str, str]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL")}
    finally:
        conn.close()


def table_rows(db: Path, columns: str = "id, a, b") -> list[tuple[object, ...]]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(f"SELECT {columns} FROM t ORDER BY id"))
    finally:
        conn.close()


def decision(result: subprocess.CompletedProcess[str], name: str) -> dict[str, str]:
    decisions = json.loads(result.stdout)["plan"]["decisions"]
    return next(d for d in decisions if d["name"] == name and d["kind"] != "table")


@pytest.mark.parametrize("kind", KINDS)
def test_undeclared_app_function_is_refused_in_one_line(kind: str, tmp_path: Path, cli: Cli) -> None:
    """Before: a DEFAULT exported with exit 0 ("supported as is"), indexes, generated columns and CHECKs
    stopped with "report this" (exit 2), views and triggers failed their proof."""
    schema, name = KINDS[kind]
    src = make_db(tmp_path / "src.sqlite", schema)
    result = cli("export", str(src), str(tmp_path / "out.sqlite"))
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert repr(name) in lines[0] and "app_norm/1" in lines[0]
    assert "report this" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.sqlite").exists()


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in COMPUTED])
def test_declared_app_function_is_kept_and_proved_with_a_stand_in(kind: str, tmp_path: Path, cli: Cli) -> None:
    schema, name = KINDS[kind]
    src = make_db(tmp_path / "src.sqlite", schema)
    out = tmp_path / "out.sqlite"
    cfg = write_config(tmp_path / "failback.toml", functions=["app_norm/1"])
    result = cli("export", "--json", "--config", str(cfg), str(src), str(out))
    assert result.returncode == 0, result.stderr
    d = decision(result, name)
    assert (d["action"], d["severity"]) == ("keep", "warn")
    assert "app_norm/1" in d["reason"] and "must register" in d["reason"] and "prepares in sqljs" in d["reason"]
    assert schema_sql(out) == schema_sql(src)  # kept exactly as it is
    assert table_rows(out) == table_rows(src)
    # sql.js prepares the object when the app registers the function, and only then
    proof = {"view": "EXPLAIN SELECT * FROM t_view"}.get(kind, "EXPLAIN INSERT INTO t(a) VALUES('x')")
    action = [{"op": "exec", "sql": proof}]
    assert SqlJsEngine(stand_ins=["app_norm/1"]).run(out, action).results[0]["ok"]
    bare = SqlJsEngine().run(out, action).results[0]
    assert not bare["ok"] and "app_norm" in bare["error"]


@pytest.mark.parametrize("kind", sorted(COMPUTED))
def test_declared_app_function_whose_values_a_build_needs_is_refused(kind: str, tmp_path: Path, cli: Cli) -> None:
    """An index or generated column calling a declared function: building it would store stand-in values, and
    sql.js registers app functions as non-deterministic (proved below: the schema no longer loads)."""
    schema, name = KINDS[kind]
    src = make_db(tmp_path / "src.sqlite", schema)
    cfg = write_config(tmp_path / "failback.toml", functions=["app_norm/1"])
    result = cli("export", "--config", str(cfg), str(src), str(tmp_path / "out.sqlite"))
    assert result.returncode == 3, result.stderr
    assert repr(name) in result.stderr and "app_norm/1" in result.stderr and "report this" not in result.stderr
    # why: with the app's function registered the way sql.js can, the source's own schema does not load
    with pytest.raises(NotADatabaseError, match="non-deterministic functions prohibited"):
        SqlJsEngine(stand_ins=["app_norm/1"]).run(src, [])


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "virtual generated"])
def test_allow_drop_drops_the_object_and_lists_it(kind: str, tmp_path: Path, cli: Cli) -> None:
    schema, name = KINDS[kind]
    src = make_db(tmp_path / "src.sqlite", schema)
    out = tmp_path / "out.sqlite"
    cfg = write_config(tmp_path / "failback.toml", allow_drop=[name])
    result = cli("export", "--json", "--config", str(cfg), str(src), str(out))
    assert result.returncode == 0, result.stderr
    d = decision(result, name)
    assert d["action"] == "drop" and "app_norm/1" in d["reason"]
    target = schema_sql(out)
    assert not any("app_norm" in sql for sql in target.values())  # nothing left that calls it
    assert table_rows(out) == table_rows(src)
    if kind == "stored generated":  # materialized: the values the app's function stored, copied as data
        assert table_rows(out, "id, s") == [(i, app_norm(a)) for i, a, _ in ROWS]
    if kind in ("view", "trigger", "expression index", "partial index"):
        assert name not in target and name in schema_sql(src)


def test_virtual_generated_column_cannot_be_dropped(tmp_path: Path, cli: Cli) -> None:
    schema, name = KINDS["virtual generated"]
    src = make_db(tmp_path / "src.sqlite", schema)
    cfg = write_config(tmp_path / "failback.toml", functions=["app_norm/1"], allow_drop=[name])
    result = cli("export", "--config", str(cfg), str(src), str(tmp_path / "out.sqlite"))
    assert result.returncode == 3 and "VIRTUAL generated column" in result.stderr


def test_build_never_computes_a_stand_in_value(tmp_path: Path, cli: Cli) -> None:
    """A CHECK the rows passed with the app's function is not evaluated during the copy (a stand-in returning
    NULL would fail ``app_norm(b) IS NOT NULL`` on every row, and one that answered would only guess)."""
    schema = "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT CHECK (app_norm(b) IS NOT NULL))"
    src = make_db(tmp_path / "src.sqlite", schema)
    out = tmp_path / "out.sqlite"
    cfg = write_config(tmp_path / "failback.toml", functions=["app_norm/1"])
    result = cli("export", "--config", str(cfg), str(src), str(out))
    assert result.returncode == 0, result.stderr
    assert table_rows(out) == table_rows(src)


def test_plan_names_every_use_and_declared_arity_matters(tmp_path: Path, cli: Cli) -> None:
    src = make_db(tmp_path / "src.sqlite", f"{TABLE}; CREATE VIEW v2 AS SELECT app_norm(a, b) FROM t")
    cfg = write_config(tmp_path / "failback.toml", functions=["app_norm/1"])
    result = cli("plan", "--json", "--config", str(cfg), str(src))
    assert result.returncode == 3
    d = next(x for x in json.loads(result.stdout)["decisions"] if x["name"] == "v2")
    assert d["action"] == "refuse" and "app_norm/2" in d["reason"]
    write_config(tmp_path / "failback.toml", functions=["app_norm/-1"])
    result = cli("plan", "--json", "--config", str(cfg), str(src))
    assert result.returncode == 0, result.stdout


def test_function_calls_are_found_by_tokens_not_text() -> None:
    sql = (
        "CREATE VIEW v(a, b) AS WITH c(x) AS (SELECT 1) SELECT count(*), app_one(a), 'app_str(a)', "
        '"app_quoted"(a, b), "app_ident" AS q, [app_col] -- app_comment(x)\n'
        "/* app_block(x) */ FROM json_each(a) JOIN t ON app_on(t.a) = 1 WHERE a IN tvf(1) AND a REGEXP 'x' "
        "AND CAST(a AS VARCHAR(3)) = group_concat(a, ',' ORDER BY b, c)"
    )
    assert sqltext.function_calls(sql) == [
        ("count", 0),
        ("app_one", 1),
        ("app_quoted", 2),
        ("app_on", 1),
        ("regexp", 2),
        ("group_concat", 2),
    ]


def test_table_clauses_remove_exactly_one_clause() -> None:
    sql = (
        "CREATE TABLE t(a TEXT DEFAULT (lower('x,y')) CHECK (length(a)), b AS (upper(a)) STORED, "
        "CONSTRAINT c CHECK (abs(b)))"
    )
    clauses = sqltext.table_clauses(sql)
    assert [(c.kind, c.column, c.expr, c.stored) for c in clauses] == [
        ("default", "a", "lower('x,y')", False),
        ("check", "a", "length(a)", False),
        ("generated", "b", "upper(a)", True),
        ("check", None, "abs(b)", False),
    ]
    assert sqltext.remove_spans(sql, [clauses[3].span]) == sql.removesuffix(", CONSTRAINT c CHECK (abs(b)))") + ")"
    conn = apsw.Connection(":memory:")
    for c in clauses:  # each removal leaves SQL that SQLite accepts, without that clause's expression
        stripped = sqltext.remove_spans(sql, [c.span])
        assert c.expr not in stripped
        conn.execute(f"DROP TABLE IF EXISTS t; {stripped}")


@pytest.mark.parametrize("entry", ["app_norm", "app norm/1", "app_norm/-2", "1fn/1", "fn/x"])
def test_function_declarations_are_validated(entry: str) -> None:
    with pytest.raises(ValueError, match="name/arity"):
        AppConfig(config=Path("a.env"), functions=[entry])


def test_a_rollback_keeps_a_declared_function_and_verify_agrees(tmp_path: Path, cli: Cli) -> None:
    """The rollback (not only export) plans, proves and verifies with the declaration; without it, refused."""
    demo = create_demo(tmp_path / "demo", notes=50).parent
    conn = apsw.Connection(str(demo / "native.sqlite"))
    conn.create_scalar_function("app_norm", app_norm, 1, deterministic=True)
    conn.execute("CREATE VIEW note_norm AS SELECT id, app_norm(title) AS t FROM note")
    conn.close()
    toml = demo / "failback.toml"
    undeclared = cli("rollback", "--yes", "-c", str(toml))
    assert undeclared.returncode == 3 and "app_norm" in undeclared.stderr, undeclared.stderr
    toml.write_text(toml.read_text().replace("[app]\n", '[app]\nfunctions = ["app_norm/1"]\n'))
    done = cli("rollback", "--yes", "--json", "-c", str(toml))
    assert done.returncode == 0, done.stderr
    target = demo / "app-sqljs.sqlite"
    assert schema_sql(target)["note_norm"] == schema_sql(demo / "native.sqlite")["note_norm"]
    verified = cli("verify", str(demo / "native.sqlite"), str(target), "-c", str(toml), "--json")
    assert verified.returncode == 0, verified.stdout[-2000:]
