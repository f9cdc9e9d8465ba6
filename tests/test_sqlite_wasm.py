"""The official SQLite WASM build (npm @sqlite.org/sqlite-wasm, pinned in tests/engines/package-lock.json,
installed by `make deps-engines`) as the "sqlite-wasm" engine: probed into a profile, it reads every value as the
pinned sql.js does, and a conversion for it keeps FTS5 and verifies with apsw's digests. Also [target]
engine_path: the build engine_for runs when neither the profile nor FAILBACK_SQLJS_DIR names one."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from failback import api
from failback.config import TargetConfig
from failback.db.connect import connect
from failback.engines import browser_twin, get_engine
from failback.engines.sqljs import RUNNER_DIR, SQLJS_DIR_VARIABLE
from failback.errors import ConfigError, EngineError
from failback.profiles import engine_for, load_profile, target_engine

from .conftest import installed
from .test_browser import actions_for, storage_classes_db

ENGINES = Path(__file__).resolve().parent / "engines" / "node_modules"
WASM_PACKAGE = ENGINES / "@sqlite.org" / "sqlite-wasm"
FTS5_BUILD = ENGINES / "sql.js-fts5" / "dist"
PINNED_SQLJS = RUNNER_DIR / "node_modules" / "sql.js" / "dist"


@pytest.fixture(scope="module")
def wasm_package() -> Path:
    return installed(WASM_PACKAGE / "package.json", "run `make deps-engines`").parent


@pytest.fixture
def wasm_profile(wasm_package: Path, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]) -> Path:
    """`failback probe --engine sqlite-wasm --engine-path` of the pinned package, written to a file."""
    path = tmp_path / "wasm.toml"
    done = cli("probe", "--engine", "sqlite-wasm", "--engine-path", str(wasm_package), "-o", str(path))
    assert done.returncode == 0, done.stderr
    return path


def test_probe_says_what_the_build_holds(wasm_profile: Path, wasm_package: Path) -> None:
    prof = load_profile(wasm_profile)
    assert (prof.name, prof.engine, prof.engine_version, prof.sqlite_version) == (
        "sqlite-wasm-3.53.4-build2",
        "sqlite-wasm",
        "3.53.4-build2",
        "3.53.4",
    )
    assert prof.engine_path == str(wasm_package.resolve())
    assert prof.has("fts5") and prof.has("rtree") and prof.has("strict") and prof.has("generated_columns")
    assert not prof.has("fts4") and "OMIT_UTF16" in prof.compile_options  # proved, not assumed: no FTS3/4
    assert engine_for(prof).run(None, []).version == "3.53.4"


def test_without_the_package_the_engine_says_how_to_name_it(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    done = cli("probe", "--engine", "sqlite-wasm")
    assert done.returncode != 0 and "--engine-path" in done.stderr and "@sqlite.org/sqlite-wasm" in done.stderr


def test_reads_every_value_as_the_pinned_sqljs(wasm_profile: Path, tmp_path: Path) -> None:
    db = storage_classes_db(tmp_path / "classes.sqlite")
    actions = actions_for(db)
    pinned = get_engine("sqljs").run(db, actions)
    wasm = engine_for(wasm_profile).run(db, actions)
    assert wasm.version == "3.53.4" and wasm.results == pinned.results


def test_app_functions_and_scripts(wasm_profile: Path) -> None:
    engine = engine_for(wasm_profile).with_stand_ins(["app_norm/1", "app_any/-1"])
    run = engine.run(
        None,
        [
            {"op": "exec", "sql": "CREATE TABLE t(a); INSERT INTO t VALUES (1), (2.5), (x'00'); -- end"},
            {
                "op": "query",
                "sql": "SELECT app_norm(a), app_any(a, 1, 2), a FROM t WHERE a > ?",
                "params": [{"int": "1"}],
            },
            {"op": "query", "sql": "SELECT 1; SELECT 2"},
        ],
    )
    assert run.results[0] == {"ok": True}
    assert run.results[1]["rows"] == [[None, None, {"real": "2.5"}], [None, None, {"blob": "00"}]]
    assert not run.results[2]["ok"] and "single SQL statement" in run.results[2]["error"]


def test_conversion_keeps_fts5_and_verifies_with_apsws_digests(
    wasm_profile: Path, native_db: Path, tmp_path: Path
) -> None:
    target = tmp_path / "app.sqlite"
    result = api.export(native_db, target, profile=str(wasm_profile))
    assert result.ok and result.verification.sqljs_version == "3.53.4"
    assert "note_ft" in {t.table for t in result.verification.tables if t.status == "equal"}
    conn = connect(target, readonly=True)
    try:
        assert "USING fts5" in str(conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'note_ft'").get)
    finally:
        conn.close()
    actions = [a for a in actions_for(target) if a["op"] == "digest"]
    apsw_run, wasm_run = get_engine("sqlite").run(target, actions), engine_for(wasm_profile).run(target, actions)
    assert wasm_run.results == apsw_run.results and any(t["rows"] for t in wasm_run.results[0]["tables"])


def test_a_wal_database_loads_from_memory(wasm_profile: Path, tmp_path: Path) -> None:
    db = storage_classes_db(tmp_path / "wal.sqlite")
    conn = connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()  # checkpointed: the -wal is gone, the header says WAL
    run = engine_for(wasm_profile).run(db, [{"op": "query", "sql": "SELECT count(*) FROM v"}])
    assert run.results[0]["ok"] and run.results[0]["rows"][0][0] != {"int": "0"}


def test_no_browser_check(wasm_profile: Path) -> None:
    with pytest.raises(ConfigError, match="no browser check"):
        browser_twin(engine_for(wasm_profile))


def test_target_engine_path_runs_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fts5 = installed(FTS5_BUILD / "sql-wasm.js", "run `make deps-engines`").parent
    monkeypatch.delenv(SQLJS_DIR_VARIABLE, raising=False)
    target = TargetConfig(path=tmp_path / "app.sqlite", engine_path=fts5)
    assert target_engine(target).run(None, []).version == "3.33.0"  # the config wins over nothing
    monkeypatch.setenv(SQLJS_DIR_VARIABLE, str(PINNED_SQLJS))
    assert target_engine(target).run(None, []).version != "3.33.0"  # the variable wins over the config
    with pytest.raises(EngineError, match=f"engine path {tmp_path}"):
        monkeypatch.delenv(SQLJS_DIR_VARIABLE)
        target_engine(TargetConfig(path=tmp_path / "app.sqlite", engine_path=tmp_path)).run(None, [])
    with pytest.raises(ConfigError, match="runs no other build"):
        target_engine(TargetConfig(path=tmp_path / "app.sqlite", profile="sqlite-3.54", engine_path=fts5))
