"""Shared fixtures: real SQLite files built in tmp_path (never mocks), and a guard proving that a test left
the source database's bytes (and its -wal) exactly as they were."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failback.demo import create_demo
from failback.sample import build_native

DEMO_NOTES = 400


def file_hashes(*paths: Path) -> dict[str, str | None]:
    """SHA-256 of each file (None when absent), e.g. a database and its -wal."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


def db_files(db: Path) -> list[Path]:
    return [db, Path(str(db) + "-wal")]


@pytest.fixture(scope="session")
def native_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GRDB-style native database (WAL, FTS5, Swift collation), built once per session."""
    path = tmp_path_factory.mktemp("template") / "native.sqlite"
    build_native(path, notes=DEMO_NOTES)
    return path


def copy_db(src: Path, dest: Path) -> Path:
    """Copy a database with its -wal (never its -shm) to ``dest``."""
    shutil.copyfile(src, dest)
    if Path(str(src) + "-wal").exists():
        shutil.copyfile(str(src) + "-wal", str(dest) + "-wal")
    return dest


@pytest.fixture
def native_db(native_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the native sample; the test must leave its bytes (and -wal) unchanged."""
    path = copy_db(native_template, tmp_path / "native.sqlite")
    before = file_hashes(*db_files(path))
    yield path
    assert file_hashes(*db_files(path)) == before, "the source database was modified"


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    """A demo app folder (native db, app.env, old sql.js file, failback.toml); source bytes guarded."""
    directory = tmp_path / "demo"
    create_demo(directory, notes=DEMO_NOTES)
    native = directory / "native.sqlite"
    before = file_hashes(*db_files(native))
    yield directory
    if native.exists():
        assert file_hashes(*db_files(native)) == before, "the source database was modified"


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `failback` command in a subprocess."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "failback", *args],
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run
