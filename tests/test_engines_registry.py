"""Engines as plugins: the registry, a profile naming its engine, and an extra engine that export and verify
really run through (registered in-process, and declared as an installed package's entry point for the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from failback.engines import Action, EngineRun, get_engine, names, register
from failback.engines.sqlite import SqliteEngine
from failback.errors import ConfigError
from failback.pipeline.export import export_database
from failback.profiles import engine_for, load_profile


class RecordingEngine(SqliteEngine):
    """The apsw engine under another name, recording each run it does."""

    name = "recording"
    runs: ClassVar[list[Path | None]] = []

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        self.runs.append(database)
        return super().run(database, actions)


def write_profile(path: Path, engine: str) -> Path:
    """The shipped apsw profile, renamed and pointing at ``engine``."""
    profile = load_profile("sqlite-3.54").model_copy(update={"name": f"{engine}-test", "engine": engine})
    path.write_text(profile.to_toml(), encoding="utf-8")
    return path


def test_builtins_registered_and_imported_lazily() -> None:
    assert {"sqlite", "sqljs"} <= set(names())
    assert get_engine("sqlite").name == "sqlite"
    probe = "import sys, failback.engines; print('failback.engines.sqljs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_profile_chooses_its_engine(tmp_path: Path) -> None:
    assert engine_for("sqljs-1.16.0").name == "sqljs"
    assert engine_for(write_profile(tmp_path / "native.toml", "sqlite")).name == "sqlite"


def test_unknown_engine_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        engine_for(write_profile(tmp_path / "p.toml", "nosuch"))
    assert info.value.message == "profile nosuch-test: no engine named 'nosuch'"
    assert "sqlite, sqlite-wasm, sqljs" in info.value.hint


def test_registered_engine_runs_export(native_db: Path, tmp_path: Path) -> None:
    register(RecordingEngine.name, RecordingEngine)
    RecordingEngine.runs.clear()
    profile = write_profile(tmp_path / "recording.toml", RecordingEngine.name)
    result = export_database(native_db, tmp_path / "out.sqlite", profile=str(profile))
    assert result.verification.ok, result.verification.problems
    built = [p for p in RecordingEngine.runs if p is not None and p.name == ".out.sqlite.failback-build"]
    assert built and None in RecordingEngine.runs  # the schema proved in it (empty), the built target verified in it


PLUGIN = """
import os
from failback.engines.sqlite import SqliteEngine

class LoggingEngine(SqliteEngine):
    name = "logging"

    def run(self, database, actions):
        with open(os.environ["ENGINE_LOG"], "a") as fh:
            fh.write(f"{database}\\n")
        return super().run(database, actions)

def make():
    return LoggingEngine()
"""


@pytest.fixture
def plugin_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real `failback` command with an installed-looking package declaring the engine "logging"."""
    site = tmp_path / "site"
    (site / "logging_engine-1.0.dist-info").mkdir(parents=True)
    (site / "logging_engine.py").write_text(textwrap.dedent(PLUGIN))
    (site / "logging_engine-1.0.dist-info" / "METADATA").write_text("Name: logging-engine\nVersion: 1.0\n")
    (site / "logging_engine-1.0.dist-info" / "entry_points.txt").write_text(
        "[failback.engines]\nlogging = logging_engine:make\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "ENGINE_LOG": str(tmp_path / "engine.log")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "failback", *args]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    return run


def test_entry_point_engine_runs_cli_export_and_verify(
    native_db: Path, tmp_path: Path, plugin_cli: Callable[..., Any]
) -> None:
    profile = str(write_profile(tmp_path / "logging.toml", "logging"))
    out, log = tmp_path / "out.sqlite", tmp_path / "engine.log"
    done = plugin_cli("export", str(native_db), str(out), "--profile", profile)
    assert done.returncode == 0, done.stderr
    exported = log.read_text().splitlines()
    assert exported and all(line.endswith(".failback-build") or line == "None" for line in exported)
    checked = plugin_cli("verify", str(native_db), str(out), "--profile", profile)
    assert checked.returncode == 0, checked.stderr
    assert str(out) in log.read_text().splitlines()[len(exported) :]


def test_cli_refuses_unknown_engine_in_one_line(
    native_db: Path, tmp_path: Path, plugin_cli: Callable[..., Any]
) -> None:
    profile = str(write_profile(tmp_path / "p.toml", "nosuch"))
    done = plugin_cli("export", str(native_db), str(tmp_path / "out.sqlite"), "--profile", profile)
    assert done.returncode == 2
    error, hint = done.stderr.splitlines()
    assert error == "error: profile nosuch-test: no engine named 'nosuch'"
    assert hint.startswith("hint: known engines: logging, sqlite, sqlite-wasm, sqljs, sqljs-browser;")
    assert not (tmp_path / "out.sqlite").exists()
