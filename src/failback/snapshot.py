"""Snapshots: a consistent copy of the live source, and the guard that tells whether it changed since.

``take_snapshot``: a consistent copy through the online backup API, stepped (progress), while the app may
be writing. A WAL source is copied inside one read transaction (writers are never blocked and the copy
never restarts); a rollback-journal source is copied in steps, restarting when a writer commits, and its
last step (or, after ``MAX_RESTARTS``, the whole copy) runs inside one read transaction. The connection
stays open so that ``SnapshotGuard.changed`` can later tell whether anything was committed after the
snapshot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from .db.connect import SIDE_FILES, connect, database_error, open_source, pragma, run_script
from .errors import BackupError, EnvironmentFailure, from_os_error
from .files import FILE_MODE, free_bytes, publish, remove_quietly

__all__ = ["Snapshot", "SnapshotGuard", "take_snapshot"]

MAX_RESTARTS = 3
STEP_BYTES = 16 << 20  # pages copied per backup step: progress granularity and, for journal sources, lock span
SLACK = 1 << 20  # free space kept on top of every estimate (manifest, file system overhead)
Progress = Callable[[str, int, int], None]


def _noop(*_: object) -> None:
    return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _require_space(folder: Path, needed: int, what: str) -> None:
    """Refuse (before writing anything) when the disk holding ``folder`` lacks ``needed`` bytes + slack."""
    free = free_bytes(folder)
    if free < needed + SLACK:
        raise EnvironmentFailure(
            f"{what}: not enough free space on the disk holding {folder} ({_mb(free)} free, about "
            f"{_mb(needed + SLACK)} needed)"
        )


# -- snapshot -------------------------------------------------------------------------------------
def fingerprint(path: Path) -> dict[str, list[int]]:
    """(size, mtime_ns, inode) of the database and its -wal: cheap evidence of a write."""
    out = {}
    for suffix in ("", "-wal"):
        try:
            st = Path(str(path) + suffix).stat()
            out[suffix or "db"] = [st.st_size, st.st_mtime_ns, st.st_ino]
        except FileNotFoundError:
            out[suffix or "db"] = []
    return out


@dataclass
class SnapshotGuard:
    """Evidence taken at snapshot time, to detect writes made after it."""

    source: Path
    data_version: int
    fingerprint: dict[str, list[int]]
    conn: apsw.Connection | None = None

    def changed(self) -> str | None:
        """Why the source is known to have changed since the snapshot, or None."""
        if self.conn is not None:
            try:
                if pragma(self.conn, "data_version") != self.data_version:
                    return "a transaction was committed to the source after the snapshot"
            except apsw.Error as err:
                return f"the source can no longer be read ({err})"
        if not self.source.exists():
            return "the source file is gone"
        now = fingerprint(self.source)
        if now["db"] != self.fingerprint["db"] or (now["-wal"] and now["-wal"] != self.fingerprint["-wal"]):
            return "the source file or its -wal changed after the snapshot"
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def to_json(self) -> dict[str, Any]:
        return {"source": str(self.source), "data_version": self.data_version, "fingerprint": self.fingerprint}


@dataclass
class Snapshot:
    path: Path
    guard: SnapshotGuard
    pages: int
    page_size: int
    restarts: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "page_size": self.page_size,
            "restarts": self.restarts,
            "seconds": round(self.seconds, 3),
        }


def take_snapshot(source: Path, dest: Path, progress: Progress = _noop, step_bytes: int = STEP_BYTES) -> Snapshot:
    """Copy ``source`` to ``dest`` (temp name, then rename) with the online backup API, ``step_bytes`` a step."""
    src = open_source(source)
    tmp = dest.with_name(dest.name + ".part")  # the name `failback abort` cleans up after a crash
    leftovers = [tmp, *(Path(str(tmp) + s) for s in SIDE_FILES)]
    remove_quietly(*leftovers)
    t0 = time.perf_counter()
    try:
        size = sum(st[0] for st in fingerprint(source).values() if st)  # database + -wal: the copy is no larger
        _require_space(dest.parent, size, f"snapshot {dest}")
        wal = str(pragma(src, "journal_mode")).lower() == "wal"
        restarts, guard, page_size, pages = _copy_pages(src, source, tmp, progress, wal=wal, step_bytes=step_bytes)
        publish(tmp, dest)
    except BaseException as err:
        src.close()
        remove_quietly(*leftovers)
        if isinstance(err, apsw.FullError | apsw.IOError) and free_bytes(dest.parent) < (4 << 20):
            raise EnvironmentFailure(f"cannot write the snapshot in {dest.parent}: disk full") from err
        if isinstance(err, apsw.BusyError):
            raise BackupError(
                f"{source}: another process kept the database locked; no snapshot taken",
                "run again when the app is idle",
            ) from err
        if isinstance(err, apsw.Error | UnicodeDecodeError):
            raise database_error(source, err) from err
        if isinstance(err, OSError):
            raise from_os_error(err, f"cannot write snapshot {dest}") from err
        raise
    return Snapshot(dest, guard, pages, page_size, restarts, time.perf_counter() - t0)


def _observe(src: apsw.Connection, source: Path, *, pin: bool) -> SnapshotGuard:
    """The source's state now; ``pin`` first opens a read transaction that fixes it until COMMIT."""
    if pin:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").get  # noqa: B018 - starts the read transaction
    return SnapshotGuard(source, pragma(src, "data_version"), fingerprint(source), src)


def _copy_pages(
    src: apsw.Connection, source: Path, dest: Path, progress: Progress, *, wal: bool, step_bytes: int
) -> tuple[int, SnapshotGuard, int, int]:
    """Copy every page of ``src`` into the new file ``dest``: (restarts, guard, page size, page count).

    A commit by another connection resets the source's page cache, which both restarts the backup and
    bumps ``data_version`` — so a changed ``data_version`` before a step is a restart. The guard is taken in
    the read transaction of the final step(s), so it describes exactly the state copied."""
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))  # owner-only before SQLite opens it
    page_size = pragma(src, "page_size")
    step = max(1, step_bytes // page_size)
    dst = connect(dest)
    try:
        # one fsync, by publish(), instead of one per step; no journal file (a failed copy is deleted whole) and no
        # -shm when the copied header says WAL (an exclusive lock keeps the WAL index in memory)
        run_script(dst, "PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY; PRAGMA locking_mode = EXCLUSIVE")
        restarts, pinned = 0, wal
        guard = _observe(src, source, pin=True) if wal else None
        with dst.backup("main", src, "main") as b:
            while not b.done:
                if not pinned:
                    left = b.remaining if b.page_count else pragma(src, "page_count")
                    pinned = restarts >= MAX_RESTARTS or left <= step
                    seen = guard.data_version if guard else None
                    guard = _observe(src, source, pin=pinned)
                    restarts += seen is not None and guard.data_version != seen
                b.step(-1 if pinned and not wal else step)
                progress("snapshot", b.page_count - b.remaining, b.page_count)
            pages = b.page_count  # read before the backup ends (it is 0 afterwards)
        if src.in_transaction:
            src.execute("COMMIT")
        assert guard is not None  # the loop ran: a database has at least one page
    finally:
        dst.close()  # a WAL the copy opened on the way (its header says WAL) is checkpointed into it and deleted
    _legacy_header(dest)
    return restarts, guard, page_size, pages


def _legacy_header(path: Path) -> None:
    """Make the copy one self-contained file: a WAL source's header, copied with its pages, says WAL (file format
    bytes 18–19 = 2); the copy's WAL is gone (checkpointed at close), so the header is set to the rollback journal
    (1), as ``PRAGMA journal_mode = DELETE`` would set it without creating and deleting a -wal file first."""
    wal = Path(f"{path}-wal")
    try:
        with path.open("r+b") as fh:
            fh.seek(18)
            if fh.read(2) != b"\x02\x02":
                return
            if wal.exists():  # the close could not checkpoint it: its pages are not in the copy
                raise EnvironmentFailure(f"cannot write the snapshot in {path.parent}: its {wal.name} stayed behind")
            fh.seek(18)
            fh.write(b"\x01\x01")
    except OSError as err:  # only the copy is touched here: its disk, not the source, failed
        raise EnvironmentFailure(f"cannot write the snapshot in {path.parent}: {err}") from err
