"""Liveness of the live source, read without writing anything: stat, its header, ``data_version`` on a
read-only connection and /proc/locks. Its files are never opened outside SQLite: closing a plain file
descriptor would drop the locks this process's SQLite connections hold on them."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import apsw

from ..db.connect import connect, pragma
from ..errors import FailbackError
from .facts import Liveness, SideFiles

# SQLite's locks (os_unix.c): a writer write-locks bytes of the database file from 0x40000000 (rollback
# journal), or this byte of the -shm (WAL); every WAL connection read-locks -shm byte 128 while open.
WAL_WRITE_LOCK = 120
WATCH_INTERVAL = 0.05


# -- liveness of the live source ----------------------------------------------------------------------
def observe_sides(source: Path) -> SideFiles:
    """Stat the files beside ``source`` (nothing is opened)."""

    def size(suffix: str) -> int | None:
        try:
            return os.stat(f"{source}{suffix}").st_size
        except FileNotFoundError:
            return None

    return SideFiles(size("-wal"), size("-journal"), os.path.exists(f"{source}-shm"))


def read_header(path: Path) -> bytes:
    """The 100-byte database header, read through SQLite's VFS (which keeps this process's locks)."""
    f = apsw.VFSFile("", str(path), [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READONLY, 0])
    try:
        return bytes(f.xRead(100, 0))
    finally:
        f.xClose()


@dataclass(frozen=True)
class FileLock:
    """One POSIX lock from /proc/locks on a file of interest."""

    path: str
    pid: int
    write: bool
    start: int
    end: float

    def covers(self, byte: int) -> bool:
        return self.start <= byte <= self.end


def file_locks(paths: list[Path], text: str | None = None) -> list[FileLock] | None:
    """Locks other processes hold on ``paths``, from /proc/locks (``text``); None where it does not exist."""
    if text is None:
        try:
            text = Path("/proc/locks").read_text()
        except OSError:
            return None
    ids: dict[tuple[int, int, int], str] = {}
    for p in paths:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = str(p)
    locks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[1] == "->":
            continue
        major, minor, inode = parts[5].split(":")
        path = ids.get((int(major, 16), int(minor, 16), int(inode)))
        pid = int(parts[4])
        if path is None or pid == os.getpid():
            continue
        end = math.inf if parts[7] == "EOF" else int(parts[7])
        locks.append(FileLock(path, pid, parts[3] == "WRITE", int(parts[6]), end))
    return locks


@dataclass(frozen=True)
class _Sample:
    stats: tuple[tuple[int, int] | None, tuple[int, int] | None]  # (size, mtime_ns) of the db and its -wal
    counter: bytes  # the header's file change counter (moves on each commit in rollback-journal mode)
    data_version: int | None


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _sample(source: Path, conn: apsw.Connection | None) -> _Sample:
    version, counter = None, b""
    if conn is not None:
        with contextlib.suppress(apsw.Error):
            version = pragma(conn, "data_version")
    with contextlib.suppress(apsw.Error):
        counter = read_header(source)[24:28]
    return _Sample((_stat(str(source)), _stat(f"{source}-wal")), counter, version)


def _changes(a: _Sample, b: _Sample) -> list[str]:
    return [
        what
        for what, moved in (
            ("data_version moved", a.data_version != b.data_version),
            ("the file change counter moved", a.counter != b.counter),
            ("the database file changed", a.stats[0] != b.stats[0]),
            ("the -wal changed", a.stats[1] != b.stats[1]),
        )
        if moved
    ]


def watch_source(source: Path, seconds: float, sides: SideFiles) -> Liveness:
    """Watch the live source for ``seconds`` without writing anything: file stats, header change counter,
    ``data_version`` on a read-only connection (only when opening one creates no -shm/-wal), and the
    locks other processes hold (Linux). ``sides`` is what lay beside it before anything opened it."""
    live = Liveness(seconds=seconds)
    with contextlib.suppress(apsw.Error):
        live.wal_mode = read_header(source)[18] == 2
    shm = Path(f"{source}-shm")
    locks = file_locks([source, shm])
    live.locks_known = locks is not None
    seen = set(locks or [])
    db_writer = any(x.write and x.path == str(source) for x in seen)
    now = observe_sides(source)
    if now.journal_bytes and not live.wal_mode and not db_writer:
        live.hot_journal = now.journal_bytes
    if sides.wal_bytes and not sides.shm:
        live.wal_without_shm = sides.wal_bytes
    conn = None
    if not live.hot_journal and (not live.wal_mode or (now.shm and now.wal_bytes is not None)):
        try:
            conn = connect(source, readonly=True)
            conn.set_busy_timeout(100)
        except FailbackError as err:
            live.error = err.message
    try:
        first = prev = _sample(source, conn)
        evidence: set[str] = set()
        for _ in range(math.ceil(seconds / WATCH_INTERVAL)):
            time.sleep(WATCH_INTERVAL)
            cur = _sample(source, conn)
            moved = _changes(prev, cur)
            live.writes_seen += bool(moved)
            evidence.update(moved)
            prev = cur
            seen.update(file_locks([source, shm]) or [])
    finally:
        if conn is not None:
            conn.close()
    live.evidence = sorted(evidence)
    live.wal_growth = max(0, (prev.stats[1] or (0, 0))[0] - (first.stats[1] or (0, 0))[0])
    # a write lock on the database file, or on the -shm's WAL write byte
    live.writer_pids = sorted({x.pid for x in seen if x.write and (x.path == str(source) or x.covers(WAL_WRITE_LOCK))})
    live.open_pids = sorted({x.pid for x in seen})
    return live


def start_watch(source: Path, seconds: float, sides: SideFiles) -> Future[Liveness]:
    """:func:`watch_source` in a daemon thread (a run ended meanwhile does not wait for it); its result or error
    in the future."""
    watching: Future[Liveness] = Future()

    def run() -> None:
        try:
            watching.set_result(watch_source(source, seconds, sides))
        except BaseException as err:  # handed to whoever waits for the watch
            watching.set_exception(err)

    threading.Thread(target=run, name="failback-liveness", daemon=True).start()
    return watching
