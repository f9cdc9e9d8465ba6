"""Engines web apps ship: npm's sql.js-fts5 (pinned in tests/engines/package-lock.json, installed by
`make deps-engines`) probed with --engine-path into a profile; a conversion for it keeps FTS5 and searches the
same; it reads every value exactly as the pinned sql.js does, though it predates BigInt results."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from failback import api
from failback.db.connect import connect
from failback.engines import get_engine
from failback.engines.sqljs import SqlJsEngine
from failback.profiles import engine_for, load_profile

from .conftest import installed
from .test_browser import actions_for, storage_classes_db

FTS5_BUILD = Path(__file__).resolve().parent / "engines" / "node_modules" / "sql.js-fts5" / "dist"


@pytest.fixture(scope="module")
def fts5_build() -> Path:
    return installed(FTS5_BUILD / "sql-wasm.js", "run `make deps-engines`").parent


@pytest.fixture
def fts5_profile(fts5_build: Path, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]) -> Path:
    """`failback probe --engine-path` of the sql.js-fts5 build, written to a file."""
    path = tmp_path / "fts5.toml"
    done = cli("probe", "--engine-path", str(fts5_build), "-o", str(path))
    assert done.returncode == 0, done.stderr
    return path


def test_probe_writes_the_build_profile(fts5_profile: Path, fts5_build: Path) -> None:
    prof = load_profile(fts5_profile)
    assert (prof.name, prof.engine, prof.engine_version, prof.sqlite_version) == (
        "sqljs-fts5-1.4.0",
        "sqljs",
        "1.4.0",
        "3.33.0",
    )
    assert prof.engine_path == str(fts5_build.resolve())
    assert prof.has("fts5") and not prof.has("fts4") and not prof.has("strict")  # what the probe proved
    engine = engine_for(prof)
    assert isinstance(engine, SqlJsEngine) and engine.sqljs_dir == fts5_build.resolve()
    assert engine.run(None, []).version == "3.33.0"


def test_old_build_reads_every_value_as_the_pinned_one(fts5_build: Path, tmp_path: Path) -> None:
    db = storage_classes_db(tmp_path / "classes.sqlite")
    actions = actions_for(db)
    pinned = get_engine("sqljs").run(db, actions)
    old = SqlJsEngine(sqljs_dir=fts5_build).run(db, actions)
    assert old.version == "3.33.0" and old.results == pinned.results


def test_conversion_for_the_build_keeps_fts5_and_searches_the_same(
    fts5_profile: Path, fts5_build: Path, native_db: Path, tmp_path: Path, chromium: Path
) -> None:
    target = tmp_path / "app.sqlite"
    result = api.export(native_db, target, profile=str(fts5_profile))
    assert result.ok and result.verification.sqljs_version == "3.33.0"
    assert "note_ft" in {t.table for t in result.verification.tables if t.status == "equal"}  # its content, read
    conn = connect(target, readonly=True)
    try:
        assert "USING fts5" in str(conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'note_ft'").get)
    finally:
        conn.close()
    source = apsw.Connection(f"file:{native_db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    words = " ".join(str(b) for (b,) in source.execute("SELECT body FROM note ORDER BY id LIMIT 2")).split()
    terms = [words[0], words[3] + "*", f"{words[1]} OR {words[2]}", "fbnosuchword"]
    sql_of = "SELECT rowid FROM note_ft WHERE note_ft MATCH ? ORDER BY bm25(note_ft), rowid"
    expected = {t: [r for (r,) in source.execute(sql_of, (t,))] for t in terms}
    source.close()
    run = SqlJsEngine(sqljs_dir=fts5_build).run(target, [{"op": "query", "sql": sql_of, "params": [t]} for t in terms])
    got = {t: [int(row[0]["int"]) for row in r["rows"]] for t, r in zip(terms, run.results, strict=True)}
    assert got == expected and any(got.values())
    in_browser = api.verify(native_db, target, profile=str(fts5_profile), browser=True)  # the same build in Chromium
    assert in_browser.ok and in_browser.browser is not None and in_browser.browser["version"] == "3.33.0"
