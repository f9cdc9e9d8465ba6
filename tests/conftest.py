"""Shared fixtures: real SQLite files built in tmp_path (never mocks), and a guard proving that a test left
the source database's bytes (and its -wal) exactly as they were."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failback.db.connect import connect
from failback.db.digest import DigestSpec, table_digest
from failback.db.schema import digest_specs, read_schema
from failback.demo import create_demo
from failback.demo.sample import build_native
from failback.engines.sqljs import SqlJsEngine

DEMO_NOTES = 400
CHROMIUM = Path("/usr/bin/chromium")


def file_hashes(*paths: Path) -> dict[str, str | None]:
    """SHA-256 of each file (None when absent), e.g. a database and its -wal."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


def db_files(db: Path) -> list[Path]:
    return [db, Path(str(db) + "-wal")]


def digest_specs_of(db: Path) -> list[DigestSpec]:
    """What a database's content digests cover (read-only)."""
    conn = connect(db, readonly=True)
    try:
        return digest_specs(read_schema(conn))
    finally:
        conn.close()


def apsw_digests(db: Path, specs: list[DigestSpec]) -> dict[str, tuple[int, str]]:
    """(rows, digest) per table, read through apsw (a -wal included)."""
    conn = connect(db, readonly=True)
    try:
        return {s.table: (d.rows, d.digest) for s in specs for d in [table_digest(conn, s)]}
    finally:
        conn.close()


def sqljs_digests(db: Path, specs: list[DigestSpec]) -> dict[str, tuple[int, str]]:
    """(rows, digest) per table, as the real sql.js reads the file."""
    result = SqlJsEngine().run(db, [{"op": "digest", "tables": [s.to_json() for s in specs]}]).results[0]
    assert result["ok"], result
    return {t["table"]: (t["rows"], t["digest"]) for t in result["tables"]}


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


def installed(path: Path, how: str) -> Path:
    """``path``, installed by a deps target of `make test`; missing, the test fails under CI=true and skips,
    saying ``how`` to install it, elsewhere."""
    if not path.exists():
        why = f"{path} is missing: {how}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed by `make deps-browser` (a step of `make test`)."""
    return installed(CHROMIUM, "run `make deps-browser` (as root) or `apt-get install chromium`")


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


# -- mounts -----------------------------------------------------------------------------------------------
class Mounts:
    """Small tmpfs file systems for one test, unmounted at its end (root only; skipped where not permitted)."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def tmpfs(self, folder: Path, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        folder.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if res.returncode:
            pytest.skip(f"mounting a tmpfs is not permitted here: {res.stderr.strip()}")
        self.mounted.append(folder)
        return folder

    @staticmethod
    def readonly(folder: Path) -> None:
        """Remount a tmpfs read-only (root ignores permission bits, not a read-only mount)."""
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)

    def unmount_all(self) -> None:
        for folder in reversed(self.mounted):
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        self.mounted.clear()


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    try:
        yield m
    finally:
        m.unmount_all()
