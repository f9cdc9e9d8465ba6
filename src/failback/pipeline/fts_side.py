"""Build FTS3/FTS4 indexes in a second process, from the snapshot, while the main process copies the tables.

:func:`failback.pipeline.export.build_target` starts ``python -m failback.pipeline.fts_side`` with a job on stdin
(the snapshot, a side database in a temp folder, the target's page size and encoding, and for each FTS table its
CREATE statement and a statement that fills it from the snapshot alone). The worker builds the tables there in
one transaction and replies with one JSON line: ``{"seconds": …}``, or ``{"error": <apsw exception class>,
"message": …}``. The main process then creates each table in the target and copies its shadow tables from the
side database (:data:`SHADOWS`, identical definitions: SQLite's transfer optimisation copies the records without
decoding them). Only this module's imports are loaded in the worker, so it starts in a few tens of milliseconds.

The worker stops by itself when the process that started it is gone (a killed run): its temp folder is then
left for ``remove_stale_folders``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import apsw

from ..db.connect import connect, run_script

SHADOWS = ("_content", "_segments", "_segdir", "_docsize", "_stat")  # an FTS3/FTS4 table's shadow tables
SIDE_FILE = "fts.sqlite"
_MMAP_BYTES = 1 << 40  # the snapshot is mapped whole (SQLite caps it at its compile-time maximum)
_PARENT_CHECK_STEPS = 1 << 16  # SQLite VM steps between two looks at whether the parent is still there


@dataclass(frozen=True)
class SideTable:
    """An FTS table the side process builds: its CREATE statement and the statement that fills it from ``src``."""

    name: str
    create: str
    fill: str


class SideBuild:
    """The side process building ``tables`` from ``snapshot_uri`` into ``folder``/:data:`SIDE_FILE`. A context
    manager: leaving it stops the process if it still runs (the folder is its creator's to remove)."""

    def __init__(self, folder: Path, snapshot_uri: str, pragmas: dict[str, Any], tables: list[SideTable]) -> None:
        self.path = folder / SIDE_FILE
        job = {
            "side": str(self.path),
            "snapshot": snapshot_uri,
            "page_size": int(pragmas["page_size"]),
            "encoding": str(pragmas["encoding"]),
            "parent": os.getpid(),
            "tables": [asdict(t) for t in tables],
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # a crash's last words are the reply
            text=True,
        )
        assert self.proc.stdin is not None
        try:
            with self.proc.stdin:
                self.proc.stdin.write(json.dumps(job))
        except BrokenPipeError:  # it stopped at once: result() says why
            pass

    def result(self) -> float:
        """Wait for the side process; its build's seconds. Its failure is raised as the apsw error it met (an
        ``apsw.Error`` when it stopped without saying why), as if the build had run here."""
        assert self.proc.stdout is not None
        lines = self.proc.stdout.read().strip().splitlines() or [f"exit status {self.proc.wait()}"]
        try:
            reply = json.loads(lines[-1])
        except ValueError:
            reply = {"message": lines[-1]}
        if self.proc.wait() == 0 and "seconds" in reply:
            return float(reply["seconds"])
        kind = getattr(apsw, str(reply.get("error")), None)
        kind = kind if isinstance(kind, type) and issubclass(kind, apsw.Error) else apsw.Error
        raise kind(f"search index process: {reply.get('message')}")

    def __enter__(self) -> SideBuild:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with self.proc:  # closes its pipe, waits for it
            pass


def build(job: dict[str, Any]) -> float:
    """Build the job's FTS tables in its side database (created here); the seconds it took."""
    t0 = time.perf_counter()
    conn = connect(Path(job["side"]), create=True)
    try:
        conn.set_progress_handler(lambda: os.getppid() != job["parent"], _PARENT_CHECK_STEPS)
        run_script(
            conn,
            f"PRAGMA page_size = {int(job['page_size'])}; PRAGMA encoding = '{job['encoding']}';"
            " PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536;",
        )
        conn.execute("ATTACH DATABASE ? AS src", (job["snapshot"],))
        conn.execute(f"PRAGMA src.mmap_size = {_MMAP_BYTES}")  # read in place: ~10 % less CPU on 1 GB
        with conn:
            for table in job["tables"]:
                conn.execute(table["create"])
                conn.execute(table["fill"])
    finally:
        conn.close()
    return time.perf_counter() - t0


def _worker() -> int:
    """Run the job read from stdin; reply with one JSON line; exit status 0 when built."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        reply: dict[str, Any] = {"seconds": build(json.loads(sys.stdin.read()))}
    except Exception as err:  # every failure is reported to the parent, which raises it
        kind = type(err).__name__ if isinstance(err, apsw.Error) else "Error"
        reply = {"error": kind, "message": str(err)}
    try:
        print(json.dumps(reply), flush=True)
    except BrokenPipeError:  # the parent is gone
        return 1
    return 0 if "seconds" in reply else 1


if __name__ == "__main__":
    sys.exit(_worker())
