"""Engines on real files: apsw in-process and real sql.js 1.16.0 under Node, compared with failback.db.digest."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failback.db.connect import quote, run_script
from failback.db.digest import DigestSpec, digest_rows, encode_value, table_digest
from failback.engines import (
    Engine,
    EngineRun,
    decode_typed,
    encode_typed,
    first_difference,
    get_engine,
)
from failback.engines.sqlite import SqliteEngine
from failback.engines.sqljs import SQLJS_DIR_VARIABLE, SqlJsEngine, runner_modules
from failback.errors import EngineError, InputError, NotADatabaseError

# ---------------------------------------------------------------- fixtures and helpers

SQLITE = SqliteEngine()
SQLJS = SqlJsEngine()
ENGINES: list[Engine] = [SQLITE, SQLJS]


def make_db(
    path: Path, tables: dict[str, tuple[Sequence[str], Iterable[Sequence[Any]]]], encoding: str = "UTF-8"
) -> Path:
    """Create ``path`` with one table per entry: name -> (column definitions, rows)."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA encoding = '{encoding}'")
    with conn:
        for name, (columns, rows) in tables.items():
            conn.execute(f"CREATE TABLE {quote(name)} ({', '.join(columns)})")
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {quote(name)} VALUES ({marks})", rows)
    conn.close()
    return path


def reference_digests(path: Path, specs: list[DigestSpec]) -> list[dict[str, object]]:
    """failback.db.digest.table_digest over a plain apsw connection to the file."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [table_digest(conn, spec).to_json() for spec in specs]
    finally:
        conn.close()


def only(run: EngineRun) -> dict[str, Any]:
    """The single result of a run, which must have succeeded."""
    (result,) = run.results
    assert result["ok"], result
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- typed values


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -(2**63),
        2**63 - 1,
        1.0,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        math.inf,
        -math.inf,
        "",
        "a\x00😀",
        b"",
        b"\x00\xff",
    ],
)
def test_typed_round_trip(value: object) -> None:
    back = decode_typed(encode_typed(value))
    assert type(back) is type(value) and back == value
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)  # type: ignore[arg-type]


def test_typed_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        decode_typed({"decimal": "1"})
    assert math.isnan(decode_typed({"real": "NaN"}))  # type: ignore[arg-type]
    assert get_engine("sqljs").name == "sqljs" and get_engine("sqlite").name == "sqlite"


# ---------------------------------------------------------------- hashing agrees


def test_js_and_python_xxh3_128_agree(tmp_path: Path) -> None:
    payloads = [
        b"",
        b"a",
        b"abc",
        bytes(range(16)),
        bytes(17),
        bytes(range(128)),
        bytes(129),
        bytes(240),
        bytes(241),
        bytes(range(256)) * 4,
        hashlib.sha512(b"x").digest() * 1600,
    ]
    db = make_db(tmp_path / "x.db", {f"t{i}": (["b"], [(p,)]) for i, p in enumerate(payloads)})
    specs = [{"table": f"t{i}", "columns": ["b"], "rowid": False} for i in range(len(payloads))]
    tables = only(SQLJS.run(db, [{"op": "digest", "tables": specs}]))["tables"]
    for payload, table in zip(payloads, tables, strict=True):
        assert table["digest"] == f"{xxhash.xxh3_128_intdigest(encode_value(payload)):032x}"
        assert table["digest"] == xxhash.xxh3_128_hexdigest(encode_value(payload))


# ---------------------------------------------------------------- property: three digests agree

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1, 2**53 + 1, 2**31]),
    st.floats(allow_nan=False),
    st.sampled_from([-0.0, 5e-324, -5e-324, 1.7976931348623157e308, math.inf, -math.inf, 1.0, 0.1]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "😀𝄞", "é\u0301", "\U0010ffff"]),
    st.binary(max_size=40),
    st.randoms(use_true_random=False).map(lambda r: r.randbytes(100_000)),
)
column_types = st.sampled_from(["", "INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", "ANY"])


@st.composite
def databases(draw: st.DrawFn) -> tuple[str, dict[str, tuple[list[str], list[list[Any]]]], list[DigestSpec]]:
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    specs: list[DigestSpec] = []
    for t in range(draw(st.integers(1, 4))):
        ncols = draw(st.integers(1, 4))
        names = [f'c{i} "x"' if i % 2 else f"c{i}" for i in range(ncols)]
        columns = [f"{quote(n)} {draw(column_types)}" for n in names]
        rows = draw(st.lists(st.lists(values, min_size=ncols, max_size=ncols), max_size=8))
        name = f"t {t}" if t % 2 else f't"{t}'
        tables[name] = (columns, rows)
        picked = draw(st.lists(st.sampled_from(names), unique=True))
        specs.append(DigestSpec(name, tuple(picked), draw(st.booleans())))
    return draw(st.sampled_from(["UTF-8", "UTF-16le", "UTF-16be"])), tables, specs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(databases())
def test_digests_agree_property(case: tuple[str, dict[str, Any], list[DigestSpec]]) -> None:
    encoding, tables, specs = case
    with tempfile.TemporaryDirectory() as tmp:
        db = make_db(Path(tmp) / "p.db", tables, encoding)
        before = sha256(db)
        expected = reference_digests(db, specs)
        first = specs[0]
        actions = [
            {"op": "digest", "tables": [s.to_json() for s in specs]},
            {"op": "query", "sql": f"SELECT * FROM {quote(first.table)}", "limit": 3},
        ]
        runs = [engine.run(db, actions) for engine in ENGINES]
        for run in runs:
            assert run.results[0] == {"ok": True, "tables": expected}
        assert runs[0].results[1] == runs[1].results[1]  # typed rows, count and digest, byte for byte
        conn = apsw.Connection(str(db))
        count, total = digest_rows(conn.execute(f"SELECT * FROM {quote(first.table)}"))
        conn.close()
        assert runs[1].results[1]["count"] == count
        assert runs[1].results[1]["digest"] == f"{total:032x}"
        assert sha256(db) == before


# ---------------------------------------------------------------- text edge cases


def test_invalid_utf8_text_digests_the_same(tmp_path: Path) -> None:
    db = make_db(tmp_path / "bad.db", {"t": (["a", "b"], [(1, "ok")])})
    conn = apsw.Connection(str(db))
    conn.execute("INSERT INTO t VALUES (CAST(x'ff41' AS TEXT), CAST(x'c3' AS TEXT)), ('x' || CAST(x'80' AS TEXT), 2)")
    conn.close()
    spec = DigestSpec("t", ("a", "b"), True)
    expected = reference_digests(db, [spec])
    actions = [
        {"op": "digest", "tables": [spec.to_json()]},
        {"op": "row_hashes", "table": spec.to_json()},
        {"op": "query", "sql": "SELECT a FROM t"},
    ]
    runs = [engine.run(db, actions) for engine in ENGINES]
    for run in runs:
        assert run.results[0]["tables"] == expected
        assert run.results[2] == {"ok": False, "error": "a TEXT value is not valid UTF-8"}
    assert runs[0].results[1] == runs[1].results[1]
    assert first_difference(runs[0].results[1]["rows"], runs[1].results[1]["rows"]) is None


def test_utf16_database_digests_like_utf8(tmp_path: Path) -> None:
    rows = [(1, "plain"), (2, "a\x00b"), (3, "😀 astral 𝄞"), (4, ""), (5, None), (6, b"\x00\xfe")]
    specs = [DigestSpec("t", ("k", "v"), True), DigestSpec("t", ("v",), False)]
    action = {"op": "digest", "tables": [s.to_json() for s in specs]}
    digests = []
    for encoding in ("UTF-8", "UTF-16le", "UTF-16be"):
        db = make_db(tmp_path / f"{encoding}.db", {"t": (["k INTEGER", "v TEXT"], rows)}, encoding)
        for engine in ENGINES:
            digests.append(only(engine.run(db, [action]))["tables"])
        digests.append(reference_digests(db, specs))
    assert all(d == digests[0] for d in digests)


def test_invalid_utf16_text_digests_the_same(tmp_path: Path) -> None:
    db = tmp_path / "u16.db"
    conn = apsw.Connection(str(db))
    run_script(conn, "PRAGMA encoding = 'UTF-16le'; CREATE TABLE t(a); INSERT INTO t VALUES (CAST(x'3dd8' AS TEXT))")
    conn.close()
    action = {"op": "digest", "tables": [{"table": "t", "columns": ["a"], "rowid": True}]}
    assert SQLITE.run(db, [action]).results == SQLJS.run(db, [action]).results


# ---------------------------------------------------------------- query

EXTREMES_SQL = (
    "SELECT -9223372036854775808, 9223372036854775807, -0.0, 5e-324, 1e308 * 10, 'a' || char(0) || '😀', x'00ff', NULL"
)
EXTREMES = [
    {"int": "-9223372036854775808"},
    {"int": "9223372036854775807"},
    {"real": "-0.0"},
    {"real": "5e-324"},
    {"real": "Infinity"},
    "a\x00😀",
    {"blob": "00ff"},
    None,
]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_query_values_round_trip(engine: Engine) -> None:
    params = [
        {"int": "-2147483648"},
        {"int": "2147483647"},
        {"real": "2.5"},
        {"real": "-1e-300"},
        "t\x00😀",
        {"blob": ""},
        {"blob": "0001ff"},
        None,
    ]
    run = engine.run(
        None,
        [
            {"op": "query", "sql": EXTREMES_SQL},
            {"op": "query", "sql": "SELECT " + ", ".join("?" * len(params)), "params": params},
        ],
    )
    first, second = run.results
    assert first["ok"] and first["rows"] == [EXTREMES] and first["count"] == 1
    expected_digest = digest_rows([[decode_typed(v) for v in EXTREMES]])[1]
    assert first["digest"] == f"{expected_digest:032x}"
    assert second["ok"] and second["rows"] == [params]
    assert run.version == "3.54.1"


def test_query_limit_count_digest_and_columns_agree(tmp_path: Path) -> None:
    db = make_db(tmp_path / "q.db", {"t": (["a", "b"], [(i, i * 0.5) for i in range(50)])})
    actions = [
        {"op": "query", "sql": "SELECT a AS x, b FROM t ORDER BY a", "limit": 5},
        {"op": "query", "sql": "SELECT a FROM t WHERE a > ?", "params": [{"int": "1000"}]},
        {"op": "query", "sql": "SELECT 1; SELECT 2"},
    ]
    a, b = (engine.run(db, actions) for engine in ENGINES)
    assert a.results == b.results
    first, empty, multi = a.results
    assert first["columns"] == ["x", "b"] and len(first["rows"]) == 5 and first["count"] == 50
    assert empty == {"ok": True, "columns": ["a"], "rows": [], "count": 0, "digest": "0" * 32}
    assert multi == {"ok": False, "error": "query takes a single SQL statement; use exec for scripts"}


def test_query_keeps_the_rows_whose_column_is_text_with_the_prefix(tmp_path: Path) -> None:
    """``keep``: only TEXT values starting with the prefix (not a BLOB of the same bytes, nor a number whose text
    does); rows, count and digest are those of the kept rows, in every engine; an EXPLAIN keeps its trigger
    programs' first instructions."""
    values = ["'ab'", "'abc'", "x'616263'", "123", "12.5", "NULL", "'xab'", "'a'", "'ab' || char(0) || 'z'"]
    db = tmp_path / "keep.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE t(i INTEGER PRIMARY KEY, v); CREATE TABLE log(n)")
    conn.execute("CREATE TRIGGER t_logged AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.i); END")
    conn.execute("INSERT INTO t(v) VALUES " + ", ".join(f"({v})" for v in values))
    conn.close()
    texts = "SELECT v, i FROM t WHERE typeof(v) = 'text' AND substr(v, 1, {n}) = '{p}'"
    actions = [
        {"op": "query", "sql": "SELECT v, i FROM t", "keep": {"column": 0, "prefix": "ab"}},
        {"op": "query", "sql": texts.format(n=2, p="ab")},
        {"op": "query", "sql": "SELECT i, v FROM t", "keep": {"column": 1, "prefix": "12"}, "limit": 1},
        {"op": "query", "sql": "EXPLAIN INSERT INTO t(v) VALUES (1)", "keep": {"column": 5, "prefix": "-- TRIGGER "}},
    ]
    for engine in ENGINES:
        kept, expected, numbers, explain = engine.run(db, actions).results
        assert kept == expected and kept["count"] == 3, engine.name
        assert [r[0] for r in kept["rows"]] == ["ab", "abc", "ab\x00z"]
        assert numbers == {"ok": True, "columns": ["i", "v"], "rows": [], "count": 0, "digest": "0" * 32}
        init = ["Init", {"int": "0"}, {"int": "1"}, {"int": "0"}, "-- TRIGGER t_logged"]
        assert [r[1:6] for r in explain["rows"]] == [init] and explain["count"] == 1


def test_sqljs_binds_params_as_sqljs_does() -> None:
    """Known sql.js limit: a JS number outside int32 binds as REAL, an integral REAL as INTEGER."""
    sql = "SELECT typeof(?), typeof(?), typeof(?)"
    params = [{"int": "3000000000"}, {"real": "2.0"}, {"int": "9223372036854775807"}]
    assert only(SQLITE.run(None, [{"op": "query", "sql": sql, "params": params}]))["rows"] == [
        ["integer", "real", "integer"]
    ]
    assert only(SQLJS.run(None, [{"op": "query", "sql": sql, "params": params}]))["rows"] == [
        ["real", "integer", "text"]
    ]


# ---------------------------------------------------------------- exec writes in memory only


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_exec_stays_in_memory_and_errors_do_not_stop(engine: Engine, tmp_path: Path) -> None:
    db = make_db(tmp_path / "w.db", {"t": (["a"], [(1,), (2,)])})
    before = sha256(db)
    run = engine.run(
        db,
        [
            {
                "op": "exec",
                "sql": "INSERT INTO t VALUES (3); CREATE TABLE u(x); INSERT INTO u VALUES ('new')",
            },
            {"op": "exec", "sql": "INSERT INTO nope VALUES (1)"},
            {"op": "query", "sql": "SELECT count(*) FROM t"},
            {"op": "exec", "sql": "DELETE FROM t; VACUUM"},
            {"op": "bogus"},
            {"op": "query", "sql": "SELECT * FROM u"},
        ],
    )
    ok, failed, counted, vacuumed, bogus, new = run.results
    assert ok == {"ok": True} and vacuumed == {"ok": True}
    assert failed == {"ok": False, "error": "no such table: nope"}
    assert counted["rows"] == [[{"int": "3"}]]
    assert bogus == {"ok": False, "error": "unknown op: bogus"}
    assert new["rows"] == [["new"]]
    assert sha256(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.db"]
    assert engine.run(db, [{"op": "query", "sql": "SELECT count(*) FROM t"}]).results[0]["rows"] == [[{"int": "2"}]]


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_bad_files_raise_clean_errors(engine: Engine, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 20)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (text, garbage, empty):
        with pytest.raises(NotADatabaseError):
            engine.run(path, [])
    with pytest.raises(InputError, match="no such file"):
        engine.run(tmp_path / "missing.db", [])
    with pytest.raises(InputError, match="folder"):
        engine.run(tmp_path, [])


def export_with(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`failback export` of a small real database in a subprocess whose environment is changed by ``env``."""
    source = make_db(tmp_path / "source.db", {"t": (["a INTEGER", "b TEXT"], [(1, "x"), (2, "y")])})
    return subprocess.run(
        [sys.executable, "-m", "failback", "export", str(source), str(tmp_path / "target.db")],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 2, no target written, stderr one error line (holding ``parts``) and one hint line."""
    error, hint = proc.stderr.splitlines()
    assert proc.returncode == 2 and error.startswith("error: ") and hint.startswith("hint: "), proc.stderr
    assert all(part in proc.stderr for part in parts), proc.stderr
    assert not (Path(proc.args[-1])).exists()


def test_export_without_node_says_to_install_node_18(tmp_path: Path) -> None:
    no_node = tmp_path / "bin"  # PATH holds only an empty folder; the interpreter is named by its path
    no_node.mkdir()
    proc = export_with({"PATH": str(no_node)}, tmp_path)
    assert_one_line_error(proc, "Node.js not found", "Node.js >= 18", "install Node.js 18 or newer")


def test_export_with_a_bogus_sqljs_dir_names_the_variable(tmp_path: Path) -> None:
    proc = export_with({SQLJS_DIR_VARIABLE: str(tmp_path / "nowhere")}, tmp_path)
    assert_one_line_error(proc, f"{SQLJS_DIR_VARIABLE}=", "no sql-wasm.js and no sql-wasm.wasm", "unset it")


def test_sqljs_dir_names_the_build_the_runner_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = runner_modules()["sql.js"].parent
    build = tmp_path / "sqljs-build"
    build.mkdir()
    for name in ("sql-wasm.js", "sql-wasm.wasm"):
        shutil.copyfile(shipped / name, build / name)
    monkeypatch.setenv(SQLJS_DIR_VARIABLE, str(build))
    assert runner_modules()["sql.js"] == build / "sql-wasm.js"
    assert only(SQLJS.run(None, [{"op": "query", "sql": "SELECT sqlite_version()"}]))["rows"] == [["3.54.1"]]
    (build / "sql-wasm.wasm").write_bytes(b"\0asm broken")  # the runner loads this folder's wasm, not the shipped one
    with pytest.raises(EngineError, match=r"the sql\.js runner failed"):
        SQLJS.run(None, [])


def test_sqljs_legacy_functions_are_opt_in() -> None:
    sql = {"op": "query", "sql": "SELECT log(100), replicate('ab', 2)"}
    assert SQLJS.run(None, [sql]).results[0] == {"ok": False, "error": "no such function: replicate"}
    legacy = SqlJsEngine(legacy_functions=True).run(None, [sql, sql])  # warns on stderr, once
    assert legacy.results[0]["rows"] == [[{"real": repr(math.log(100))}, "abab"]]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_wal_mode_files(engine: Engine, tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    conn = apsw.Connection(str(db))
    run_script(conn, "PRAGMA journal_mode = WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1)")
    with pytest.raises(InputError, match="-wal"):  # commits only in the -wal would be dropped
        engine.run(db, [])
    run_script(conn, "PRAGMA wal_checkpoint(TRUNCATE)")
    run = engine.run(db, [{"op": "exec", "sql": "INSERT INTO t VALUES (2)"}, {"op": "query", "sql": "SELECT a FROM t"}])
    conn.close()
    assert run.results[1]["rows"] == [[{"int": "1"}], [{"int": "2"}]]


def test_unknown_collation_gets_the_fallback(tmp_path: Path) -> None:
    db = tmp_path / "coll.db"
    conn = apsw.Connection(str(db))
    conn.create_collation("swiftLocalizedCaseInsensitiveCompare", lambda a, b: (a > b) - (a < b))
    run_script(conn, "CREATE TABLE t(a TEXT COLLATE swiftLocalizedCaseInsensitiveCompare)")
    run_script(conn, "INSERT INTO t VALUES ('b'), ('A')")
    conn.close()
    run = SQLITE.run(db, [{"op": "query", "sql": "SELECT a FROM t ORDER BY a"}])
    assert only(run)["rows"] == [["A"], ["b"]]
    assert (
        "no such collation" in SQLJS.run(db, [{"op": "query", "sql": "SELECT a FROM t ORDER BY a"}]).results[0]["error"]
    )


# ---------------------------------------------------------------- row hashes and first_difference


def test_row_hashes_name_the_first_difference(tmp_path: Path) -> None:
    rows = [(i, f"v{i}", i * 1.5) for i in range(1, 11)]
    a = make_db(tmp_path / "a.db", {"t": (["id INTEGER PRIMARY KEY", "v", "r"], rows)})
    b = make_db(tmp_path / "b.db", {"t": (["id INTEGER PRIMARY KEY", "v", "r"], rows)})
    conn = apsw.Connection(str(b))
    run_script(conn, "UPDATE t SET r = 7.0000001 WHERE id = 7; UPDATE t SET v = 'x' WHERE id = 9")
    conn.close()
    spec = {"table": "t", "columns": ["v", "r"], "rowid": True}
    by_v = {"op": "row_hashes", "table": {**spec, "rowid": False}, "order_by": ["id"]}
    digest = {"op": "digest", "tables": [spec]}
    ra, rb = (
        SQLITE.run(a, [{"op": "row_hashes", "table": spec}, by_v, digest]),
        SQLJS.run(b, [{"op": "row_hashes", "table": spec}, by_v, digest]),
    )
    assert ra.results[2] != rb.results[2]
    message = first_difference(ra.results[0]["rows"], rb.results[0]["rows"], "snapshot", "target")
    assert message is not None and message.startswith("rowid 7: values differ")
    by_key = first_difference(ra.results[1]["rows"], rb.results[1]["rows"])
    assert by_key is not None and by_key.startswith("key (7): values differ (row hash a ")
    same = SQLITE.run(b, [{"op": "row_hashes", "table": spec}])
    assert first_difference(same.results[0]["rows"], rb.results[0]["rows"]) is None
    hashes = dict((r[0]["int"], r[1]) for r in same.results[0]["rows"])
    expected = xxhash.xxh3_128_hexdigest(b"".join(map(encode_value, (1, "v1", 1.5))))
    assert hashes["1"] == expected


def test_first_difference_missing_extra_and_duplicates() -> None:
    def key(i: int) -> dict[str, str]:
        return {"int": str(i)}

    a = [[key(1), "h1"], [key(2), "h2"], [key(3), "h3"]]
    assert first_difference(a, a) is None
    assert first_difference(a, [a[0], a[2]]) == "rowid 2: in a, missing in b"
    assert first_difference(a, [*a, [key(4), "h4"]]) == "rowid 4: in b, missing in a"
    assert first_difference([a[0], a[2]], a) == "rowid 2: in b, missing in a"
    dup_a = [[["x"], "h1"], [["x"], "h2"], [["y"], "h3"]]
    dup_b = [[["x"], "h2"], [["x"], "h1"], [["y"], "h3"]]
    assert first_difference(dup_a, dup_b) is None  # same multiset under a non-unique key
    assert first_difference(dup_a, dup_b[1:]) == "key ('x'): 2 row(s) in a, 1 in b"
