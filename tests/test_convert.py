"""Conversion of every kind of schema object, proven by opening the result in the real sql.js and using it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.config import ConvertConfig, load_config
from failback.db.connect import connect, run_script
from failback.db.schema import read_schema
from failback.engines.sqljs import SqlJsEngine
from failback.errors import UnsupportedSchemaError
from failback.pipeline.export import export_database, plan_for
from failback.plan.fts import fts4_tokenizer
from failback.plan.model import Action
from failback.plan.planner import plan_conversion
from failback.profiles import Profile, load_profile, probe_engine


def make_db(path: Path, script: str, setup: Any = None) -> Path:
    conn = apsw.Connection(str(path))
    if setup:
        setup(conn)
    run_script(conn, script)
    conn.close()
    return path


def export(tmp_path: Path, script: str, *, setup: Any = None, convert: str = "", profile: str = "sqljs-1.16.0") -> Path:
    src = make_db(tmp_path / "src.sqlite", script, setup)
    cfg = None
    if convert:
        toml = tmp_path / "failback.toml"
        toml.write_text(
            f'[source]\npath="src.sqlite"\n[target]\npath="t.sqlite"\n[app]\nconfig="a.env"\n[convert]\n{convert}\n'
        )
        cfg = load_config(toml)
    out = tmp_path / "out.sqlite"
    result = export_database(src, out, profile=profile, cfg=cfg)
    assert result.verification.ok, result.verification.problems
    return out


def sqljs(db: Path, *sqls: str) -> list[dict[str, Any]]:
    results = SqlJsEngine().run(db, [{"op": "query", "sql": s} for s in sqls]).results
    return results


def values(r: dict[str, Any]) -> list[list[Any]]:
    from failback.engines import decode_typed

    assert r["ok"], r.get("error")
    return [[decode_typed(v) for v in row] for row in r["rows"]]


def decisions(db: Path, **kw: Any) -> dict[str, Action]:
    return {d.name: d.action for d in plan_for(db, **kw).decisions}


# -- tables ------------------------------------------------------------------------------------------
def test_rowids_counters_and_keys_are_kept(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        INSERT INTO auto(v) VALUES ('a'), ('b'), ('c'), ('d'); DELETE FROM auto WHERE id IN (2, 4);
        CREATE TABLE plain(v);  -- rowid table without a key: rowids must survive
        INSERT INTO plain(rowid, v) VALUES (5, 'x'), (17, 'y'), (9000000000, 'z');
        CREATE TABLE wr(k TEXT PRIMARY KEY, n INT) WITHOUT ROWID; INSERT INTO wr VALUES ('b', 2), ('a', 1);
        """,
    )
    r = sqljs(
        out,
        "SELECT id, v FROM auto ORDER BY id",
        "SELECT seq FROM sqlite_sequence WHERE name = 'auto'",
        "SELECT rowid, v FROM plain ORDER BY rowid",
        "SELECT k, n FROM wr",
        "INSERT INTO auto(v) VALUES ('new') RETURNING id",
    )
    assert values(r[0]) == [[1, "a"], [3, "c"]]
    assert values(r[1]) == [[4]]
    assert values(r[2]) == [[5, "x"], [17, "y"], [9000000000, "z"]]
    assert values(r[3]) == [["a", 1], ["b", 2]]
    assert values(r[4]) == [[5]], "AUTOINCREMENT counter lost: an id would be reused"


def test_strict_generated_check_default_and_foreign_keys(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        PRAGMA foreign_keys = ON;
        CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (length(name) > 0)) STRICT;
        CREATE TABLE child(id INTEGER PRIMARY KEY, pid INT REFERENCES parent(id) ON DELETE CASCADE,
            qty INT DEFAULT 7, twice INT GENERATED ALWAYS AS (qty * 2) VIRTUAL,
            label TEXT GENERATED ALWAYS AS ('#' || id) STORED);
        INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
        INSERT INTO child(id, pid) VALUES (10, 1), (11, 2), (12, 2);
        """,
    )
    r = (
        SqlJsEngine()
        .run(
            out,
            [
                {"op": "query", "sql": "SELECT id, twice, label FROM child ORDER BY id"},
                {"op": "exec", "sql": "INSERT INTO parent VALUES (3, 'x')"},
                {"op": "exec", "sql": "INSERT INTO parent VALUES (4, '')"},  # CHECK still enforced
                {"op": "exec", "sql": "INSERT INTO parent VALUES ('five', 'x')"},  # STRICT still enforced
                {"op": "exec", "sql": "PRAGMA foreign_keys = ON; DELETE FROM parent WHERE id = 2"},
                {"op": "query", "sql": "SELECT count(*) FROM child"},
            ],
        )
        .results
    )
    assert values(r[0]) == [[10, 14, "#10"], [11, 14, "#11"], [12, 14, "#12"]]
    assert r[1]["ok"] and not r[2]["ok"] and "CHECK" in r[2]["error"]
    assert (not r[3]["ok"] and "cannot store TEXT value in INT" in r[3]["error"]) or "datatype" in r[3]["error"]
    assert values(r[5]) == [[1]], "ON DELETE CASCADE lost"


def test_target_without_strict_or_generated_columns_gets_them_converted(tmp_path: Path) -> None:
    prof = load_profile("sqljs-1.16.0").model_copy(deep=True)
    prof.name = "old-engine"
    prof.features.update({"strict": False, "generated_columns": False})
    path = tmp_path / "old-engine.toml"
    path.write_text(prof.to_toml())
    out = export(
        tmp_path,
        """CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b INT GENERATED ALWAYS AS (a + 1) STORED,
           c INT AS (a * 10)) STRICT;
           INSERT INTO t(id, a) VALUES (1, 1), (2, 5);""",
        profile=str(path),
    )
    r = sqljs(out, "SELECT id, a, b, c FROM t ORDER BY id", "SELECT sql FROM sqlite_schema WHERE name = 't'")
    assert values(r[0]) == [[1, 1, 2, 10], [2, 5, 6, 50]]
    sql = values(r[1])[0][0]
    assert "STRICT" not in sql and "GENERATED" not in sql.upper() and " AS " not in sql.upper()


# -- indexes, views, triggers ------------------------------------------------------------------------
def test_indexes_of_every_kind_are_rebuilt_and_used(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT, score REAL, deleted INT, name TEXT);
        CREATE UNIQUE INDEX t_email ON t(email);
        CREATE INDEX t_live ON t(score) WHERE deleted = 0;
        CREATE INDEX t_lower ON t(lower(name));
        CREATE INDEX t_name_nocase ON t(name COLLATE NOCASE);
        CREATE INDEX t_score_desc ON t(score DESC);
        INSERT INTO t VALUES (1, 'a@x', 1.5, 0, 'Ann'), (2, 'b@x', 2.5, 1, 'bob');
        ANALYZE;
        """,
    )
    r = (
        SqlJsEngine()
        .run(
            out,
            [
                {"op": "query", "sql": "SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name"},
                {"op": "exec", "sql": "INSERT INTO t(email) VALUES ('a@x')"},
                {"op": "query", "sql": "EXPLAIN QUERY PLAN SELECT id FROM t WHERE lower(name) = 'bob'"},
                {"op": "query", "sql": "SELECT count(*) FROM sqlite_stat1"},
                {"op": "query", "sql": "SELECT id FROM t WHERE name = 'ANN' COLLATE NOCASE"},
            ],
        )
        .results
    )
    assert [v[0] for v in values(r[0])] == ["t_email", "t_live", "t_lower", "t_name_nocase", "t_score_desc"]
    assert not r[1]["ok"] and "UNIQUE" in r[1]["error"]
    assert "t_lower" in str(values(r[2]))
    assert values(r[3])[0][0] >= 5, "sqlite_stat1 not copied"
    assert values(r[4]) == [[1]]


def _app_function(conn: apsw.Connection) -> None:
    conn.create_scalar_function("app_slug", lambda s: str(s).lower())


APP_FUNCTION_DB = """
CREATE TABLE t(id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
CREATE TABLE log(id INTEGER PRIMARY KEY, msg TEXT);
CREATE VIEW t_upper AS SELECT id, upper(title) AS t FROM t;
CREATE VIEW t_slugs AS SELECT app_slug(title) FROM t;
CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log(msg) VALUES ('added ' || new.id); END;
CREATE TRIGGER t_slug AFTER UPDATE OF title ON t BEGIN UPDATE t SET slug = app_slug(new.title) WHERE id = new.id; END;
INSERT INTO t(id, title) VALUES (1, 'Hello');
"""


def test_views_and_triggers_using_an_app_function_stop_the_run(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedSchemaError) as e:
        export(tmp_path, APP_FUNCTION_DB, setup=_app_function)
    assert "app_slug" in str(e.value) and e.value.exit_code == 3
    assert not (tmp_path / "out.sqlite").exists()


def test_views_and_triggers_that_prepare_are_kept_and_fire(tmp_path: Path) -> None:
    out = export(tmp_path, APP_FUNCTION_DB, setup=_app_function, convert='allow_drop = ["t_slugs", "t_slug"]')
    r = (
        SqlJsEngine()
        .run(
            out,
            [
                {
                    "op": "query",
                    "sql": "SELECT name FROM sqlite_schema WHERE type IN ('view', 'trigger') ORDER BY name",
                },
                {
                    "op": "exec",
                    "sql": "INSERT INTO t(id, title) VALUES (2, 'World'); UPDATE t SET title = 'x' WHERE id = 1",
                },
                {"op": "query", "sql": "SELECT msg FROM log ORDER BY id"},
                {"op": "query", "sql": "SELECT * FROM t_upper ORDER BY id"},
            ],
        )
        .results
    )
    assert [v[0] for v in values(r[0])] == ["t_log", "t_upper"]
    assert r[1]["ok"], r[1]
    assert values(r[2]) == [["added 1"], ["added 2"]]  # row 1 was logged in the source
    assert values(r[3]) == [[1, "X"], [2, "WORLD"]]


# -- virtual tables ----------------------------------------------------------------------------------
def test_fts5_own_content_becomes_searchable_fts4(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        CREATE VIRTUAL TABLE docs USING fts5(title, body, note UNINDEXED, prefix='2 3',
            tokenize='unicode61 remove_diacritics 2');
        INSERT INTO docs(rowid, title, body, note) VALUES (3, 'Café crème', 'über naïve', 'n1'),
            (8, 'Tea', 'green leaves', 'n2');
        """,
    )
    r = (
        SqlJsEngine()
        .run(
            out,
            [
                {"op": "query", "sql": "SELECT rowid FROM docs WHERE docs MATCH 'cafe'"},
                {"op": "query", "sql": "SELECT rowid FROM docs WHERE docs MATCH 'gr*'"},
                {"op": "query", "sql": "SELECT rowid FROM docs WHERE docs MATCH 'n1'"},  # UNINDEXED stays unindexed
                {
                    "op": "exec",
                    "sql": "INSERT INTO docs(docid, title, body, note) VALUES (9, 'new', 'cafe au lait', '')",
                },
                {"op": "query", "sql": "SELECT rowid FROM docs WHERE docs MATCH 'cafe' ORDER BY rowid"},
                {
                    "op": "exec",
                    "sql": "DELETE FROM docs WHERE rowid = 3; INSERT INTO docs(docs) VALUES('integrity-check')",
                },
            ],
        )
        .results
    )
    assert values(r[0]) == [[3]] and values(r[1]) == [[8]] and values(r[2]) == []
    assert values(r[4]) == [[3], [9]]
    assert r[5]["ok"], r[5]


@pytest.mark.parametrize(
    ("tokenize", "expected"),
    [
        ("unicode61 remove_diacritics 2 tokenchars '-_'", 'unicode61 "remove_diacritics=2" "tokenchars=-_"'),
        ("porter unicode61", "porter"),
        ("ascii", "simple"),
        ("trigram", None),
    ],
)
def test_fts5_tokenizers_map_to_fts4(tokenize: str, expected: str | None) -> None:
    from failback.plan.fts import _split_words

    assert fts4_tokenizer(tuple(_split_words(tokenize)))[0] == expected


def test_trigram_and_plain_choice_keep_text_without_index(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        CREATE VIRTUAL TABLE tri USING fts5(body, tokenize='trigram');
        INSERT INTO tri(rowid, body) VALUES (4, 'substring search');
        CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE note_ft USING fts5(body, content='note', content_rowid='id');
        INSERT INTO note VALUES (1, 'alpha'); INSERT INTO note_ft(note_ft) VALUES('rebuild');
        """,
        convert='fts = { note_ft = "plain" }',
    )
    r = sqljs(
        out, "SELECT type, name FROM sqlite_schema WHERE name IN ('tri', 'note_ft')", "SELECT rowid, body FROM tri"
    )
    assert values(r[0]) == [["table", "tri"]]
    assert values(r[1]) == [[4, "substring search"]]


def test_contentless_fts5_is_a_loud_data_loss_finding(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "c.sqlite",
        "CREATE VIRTUAL TABLE c USING fts5(a, content=''); INSERT INTO c(rowid, a) VALUES (1, 'x');",
    )
    plan = plan_for(db)
    [d] = [d for d in plan.decisions if d.name == "c"]
    assert d.action is Action.REFUSE and d.severity == "critical" and "cannot be recovered" in d.reason
    with pytest.raises(UnsupportedSchemaError):
        export_database(db, tmp_path / "o.sqlite")
    allowed = plan_for(db, options=ConvertConfig(allow_drop=["c"]))
    assert [d.action for d in allowed.decisions if d.name == "c"] == [Action.DROP]


def test_rtree_becomes_a_plain_table_with_the_same_rows(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """
        CREATE VIRTUAL TABLE box USING rtree(id, minx, maxx, miny, maxy, +label);
        INSERT INTO box VALUES (1, 0, 1.5, 0, 2, 'a'), (7, -3, 3, -1, 1, 'b');
        CREATE VIRTUAL TABLE ibox USING rtree_i32(id, x0, x1);
        INSERT INTO ibox VALUES (1, -5, 5);
        """,
    )
    r = sqljs(
        out, "SELECT * FROM box ORDER BY id", "SELECT * FROM ibox", "SELECT id FROM box WHERE minx <= 0 AND maxx >= 2"
    )
    assert values(r[0]) == [[1, 0.0, 1.5, 0.0, 2.0, "a"], [7, -3.0, 3.0, -1.0, 1.0, "b"]]
    assert values(r[1]) == [[1, -5, 5]] and values(r[2]) == [[7]]


def test_fts5vocab_is_dropped_and_unknown_modules_stop_the_run(tmp_path: Path) -> None:
    vocab = make_db(
        tmp_path / "v.sqlite",
        "CREATE VIRTUAL TABLE f USING fts5(a); CREATE VIRTUAL TABLE fv USING fts5vocab(f, 'row');",
    )
    assert decisions(vocab)["fv"] is Action.DROP

    class Source:
        def Create(self, db: Any, modulename: str, dbname: str, tablename: str, *args: str) -> tuple[str, Any]:
            return "CREATE TABLE x(a)", Table()

        Connect = Create

    class Table:
        def BestIndex(self, *args: Any) -> None:
            return None

        def Open(self) -> Any:
            raise NotImplementedError

        def Disconnect(self) -> None: ...

        Destroy = Disconnect

    def module(conn: apsw.Connection) -> None:
        conn.create_module("appgeo", Source())

    db = make_db(
        tmp_path / "u.sqlite", "CREATE TABLE keep(a); CREATE VIRTUAL TABLE places USING appgeo(x);", setup=module
    )
    plan = plan_for(db)
    [d] = [d for d in plan.decisions if d.name == "places"]
    assert d.action is Action.REFUSE and "appgeo" in d.reason
    with pytest.raises(UnsupportedSchemaError, match="places"):
        export_database(db, tmp_path / "o.sqlite")


# -- collations, pragmas, profiles ----------------------------------------------------------------
def test_unknown_collations_are_mapped_and_indexes_rebuilt(tmp_path: Path) -> None:
    def swift(conn: apsw.Connection) -> None:
        conn.create_collation(
            "swiftLocalizedCaseInsensitiveCompare", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower())
        )
        conn.create_collation("appOrder", lambda a, b: (a > b) - (a < b))

    out = export(
        tmp_path,
        """
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT COLLATE swiftLocalizedCaseInsensitiveCompare,
            code TEXT COLLATE appOrder);
        CREATE UNIQUE INDEX t_name ON t(name);
        INSERT INTO t VALUES (1, 'Zoë', 'b'), (2, 'adam', 'a');
        """,
        setup=swift,
        convert='collations = { appOrder = "RTRIM" }',
    )
    r = (
        SqlJsEngine()
        .run(
            out,
            [
                {"op": "query", "sql": "SELECT sql FROM sqlite_schema WHERE name = 't'"},
                {"op": "exec", "sql": "INSERT INTO t(name) VALUES ('ADAM')"},
                {"op": "query", "sql": "SELECT id FROM t ORDER BY name"},
            ],
        )
        .results
    )
    sql = values(r[0])[0][0]
    assert "COLLATE NOCASE" in sql and "COLLATE RTRIM" in sql and "swift" not in sql
    assert not r[1]["ok"] and "UNIQUE" in r[1]["error"]
    assert values(r[2]) == [[2], [1]]


def test_pragmas_and_page_size_are_kept_within_the_target_limits(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        "PRAGMA page_size = 65536; PRAGMA user_version = 42; PRAGMA application_id = 1234; VACUUM; CREATE TABLE t(a);",
    )
    r = sqljs(out, "PRAGMA page_size", "PRAGMA user_version", "PRAGMA application_id")
    assert [values(x)[0][0] for x in r] == [65536, 42, 1234]
    prof = load_profile("sqljs-1.16.0").model_copy(deep=True)
    prof.limits["max_page_size"] = 8192
    conn = connect(tmp_path / "src.sqlite", readonly=True)
    plan = plan_conversion(read_schema(conn), prof)
    conn.close()
    assert plan.pragmas["page_size"] == 8192


def test_shipped_profiles_equal_a_fresh_probe_of_the_real_engines() -> None:
    for name, engine in (("sqljs-1.16.0", "sqljs"), ("sqlite-3.54", "sqlite")):
        fresh = probe_engine(engine)
        assert fresh == load_profile(name), name
    assert isinstance(fresh, Profile)


def test_plan_command_shows_each_decision(demo_dir: Path, cli: Any) -> None:
    res = cli("plan", str(demo_dir / "native.sqlite"), "--json")
    assert res.returncode == 0, res.stderr
    import json

    plan = json.loads(res.stdout)
    by_name = {d["name"]: d for d in plan["decisions"]}
    assert by_name["note_ft"]["action"] == "convert" and "FTS4" in by_name["note_ft"]["reason"]
    assert by_name["note_ft_data"]["action"] == "skip"
    assert by_name["__note_ft_ad"]["action"] == "convert"


def test_geopoly_rows_keep_their_rowids_and_shapes(tmp_path: Path) -> None:
    out = export(
        tmp_path,
        """CREATE VIRTUAL TABLE zone USING geopoly(name);
           INSERT INTO zone(rowid, _shape, name) VALUES (7, '[[0,0],[1,0],[1,1],[0,0]]', 'tri'),
               (42, '[[0,0],[2,0],[2,2],[0,2],[0,0]]', 'square');""",
    )
    r = sqljs(out, "SELECT rowid, name, length(_shape) FROM zone ORDER BY rowid")
    assert values(r[0]) == [[7, "tri", 28], [42, "square", 36]]  # 4 + 8 bytes per vertex, closing one dropped


def test_contentless_delete_fts5_is_contentless_too(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.sqlite",
        "CREATE VIRTUAL TABLE d USING fts5(a, content='', contentless_delete=1);"
        " INSERT INTO d(rowid, a) VALUES (1, 'x')",
    )
    [d] = [d for d in plan_for(db).decisions if d.name == "d"]
    assert d.action is Action.REFUSE and d.severity == "critical"
