"""`failback init`: the proposal from what was found (pure), and the command on the demo's native database as a
real process: a config the loader accepts and `failback assess` runs on, the native database never written, an
existing file never replaced, a non-database refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from failback.config import Config, load_config
from failback.demo import create_demo
from failback.scaffold.propose import AppFound, FtsFound, NativeSurvey, frequent_words, pick_app_setting, render_config

from .conftest import db_files, file_hashes

NOTES = 150


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("init") / "demo"
    create_demo(directory, notes=NOTES)
    (directory / "failback.toml").unlink()  # init starts where there is no config yet
    return directory


@pytest.fixture
def app(demo_template: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    shutil.copytree(demo_template, directory, ignore=shutil.ignore_patterns("*-shm"))
    return directory


def failback(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


# -- the proposal (pure) -----------------------------------------------------------------------------
def test_frequent_words_skip_short_words_numbers_and_stop_words() -> None:
    texts = ["Zebra zebra café CAFÉ café with with with the 2024 ab", "zebra meeting"]
    assert frequent_words(texts) == (("café", 3), ("zebra", 3), ("meeting", 1))


def test_the_provider_key_is_found_in_nested_json() -> None:
    settings = {"database.provider": "grdb", "database.sqljsPath": "data/app.sqlite", "name": "x"}
    found = pick_app_setting(Path("/app/config.json"), settings)
    assert found == AppFound(
        Path("/app/config.json"), "database.provider", "grdb", "database.sqljsPath", "data/app.sqlite"
    )
    assert pick_app_setting(Path("/app/.env"), {"PROVIDER": "two words"}) is None  # the loader would refuse it


def test_a_proposal_without_an_app_config_still_loads(tmp_path: Path) -> None:
    survey = NativeSurvey(
        native=tmp_path / "db" / "my data.sqlite",
        grdb=False,
        tables=1,
        fts=(FtsFound("doc_fts", "fts5", "", note="contentless: its text cannot be read back"),),
        collations=("unicase",),
        sync=(),
        app=None,
    )
    text = render_config(survey, tmp_path, "sqljs-1.16.0")
    cfg = Config.model_validate(tomllib.loads(text))
    assert cfg.source.path == Path("db/my data.sqlite") and cfg.target.path == Path("db/my data-sqljs.sqlite")
    assert cfg.convert.collations == {"unicase": "NOCASE"} and cfg.convert.fts == {"doc_fts": "fts4"}
    assert cfg.verify.fts_queries == [] and "NOT FOUND" in text and "contentless" in text


# -- the command ---------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_init_on_the_demo_writes_a_config_assess_runs_on(app: Path) -> None:
    native = app / "native.sqlite"
    before = file_hashes(*db_files(native))
    res = failback("init", "native.sqlite", "--json", cwd=app)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert found["grdb"] and found["collations"] == ["swiftLocalizedCaseInsensitiveCompare"]
    [fts] = found["fts"]
    assert fts["name"] == "note_ft" and fts["module"] == "fts5" and len(fts["terms"]) == 5
    assert {s["kind"] for s in found["sync"]} == {"cloudkit", "flag"}
    cfg = load_config(app / "failback.toml")
    assert cfg.source_path == native and cfg.app_config_path == app / "app.env"
    assert cfg.app.path_key == "SQLJS_DATABASE_PATH" and cfg.target_path == app / "app-sqljs.sqlite"
    assert cfg.verify.fts_queries == fts["terms"] and cfg.convert.fts == {"note_ft": "fts4"}
    assert file_hashes(*db_files(native)) == before  # only read

    assessed = failback("assess", "-c", "failback.toml", "--json", cwd=app)
    assert assessed.returncode in (0, 3), assessed.stderr
    result = json.loads(assessed.stdout)
    assert any("not yet synced" in f["message"] for f in result["findings"])  # the sync layouts init saw
    assert file_hashes(*db_files(native)) == before


def test_init_finds_the_one_database_in_the_folder(app: Path) -> None:
    (app / "app-sqljs.sqlite").unlink()
    res = failback("init", "-o", "mine.toml", cwd=app)
    assert res.returncode == 0, res.stderr
    assert load_config(app / "mine.toml").source_path == app / "native.sqlite"
    assert "next: `failback assess -c mine.toml`" in res.stdout


def test_init_never_replaces_a_file(app: Path) -> None:
    existing = app / "failback.toml"
    existing.write_bytes(b"# mine\n[source]\npath = 'x'\n")
    res = failback("init", "native.sqlite", cwd=app)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines()[0] == "error: failback.toml: already exists; not overwritten"
    assert existing.read_bytes() == b"# mine\n[source]\npath = 'x'\n"
    assert not list(app.glob(".failback.toml*"))  # no temp file left


def test_init_refuses_a_file_that_is_not_a_database(app: Path) -> None:
    res = failback("init", "app.env", cwd=app)
    assert res.returncode == 2 and res.stdout == ""
    error, hint = res.stderr.splitlines()
    assert error.startswith(f"error: {app / 'app.env'}: not a SQLite database") and hint.startswith("hint: ")
    assert not (app / "failback.toml").exists()
