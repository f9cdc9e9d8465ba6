"""apsw helpers: open a database read-only with clean errors, stand-in collations, quoting, pragmas."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from ..errors import EnvironmentFailure, FailbackError, InputError, NotADatabaseError
from .collations import stand_in

HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little- / big-endian words
WAL_VERSION = 3007000
WAL_HEADER = 32


def quote(name: str) -> str:
    """Quote an SQL identifier (table, column, index names from the schema)."""
    return '"' + name.replace('"', '""') + '"'


def check_database_file(path: Path) -> None:
    """Raise a clear error unless ``path`` is a regular file starting with the SQLite header."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, not a database file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise NotADatabaseError(f"{path}: empty file, not a SQLite database")
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    if not head.startswith(HEADER):
        raise NotADatabaseError(
            f"{path}: not a SQLite database (no SQLite header: encrypted, e.g. SQLCipher, or another format)"
        )
    if len(head) < 100:
        raise NotADatabaseError(f"{path}: truncated SQLite database (header incomplete)")
    problem = wal_problem(Path(str(path) + "-wal"))
    if problem:
        raise NotADatabaseError(
            f"{path}: its -wal {problem}; SQLite would ignore it and lose every commit in it",
            "restore the database with its own -wal (`failback backup restore`), or move the -wal away if it "
            "does not belong to this database",
        )


def _wal_checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_problem(wal: Path) -> str | None:
    """Why the -wal file ``wal`` cannot be replayed (SQLite would silently ignore it), or None.

    Only a -wal holding frames is judged, and only by its 32-byte header (magic, version, page size, header
    checksum over the salts): SQLite writes a valid header before any frame, so an invalid one with frames
    after it means a damaged or foreign file, not a normal state."""
    problem = None
    for _ in range(3):  # a writer may be rewriting the header this instant: one good read is enough
        try:
            with open(wal, "rb") as fh:
                head, more = fh.read(WAL_HEADER), fh.read(1)
        except FileNotFoundError:
            return None
        except OSError as err:
            return f"cannot be read ({err.strerror})"
        if len(head) < WAL_HEADER or not more:
            return None  # empty or header only: no frames, nothing to lose
        problem = _wal_header_problem(head)
        if problem is None:
            return None
    return problem


def _wal_header_problem(head: bytes) -> str | None:
    """What is wrong with a 32-byte WAL header, or None."""
    magic, version, page_size = struct.unpack(">3I", head[:12])
    if magic not in WAL_MAGIC:
        return "is not a SQLite WAL file (bad magic number)"
    if version != WAL_VERSION or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return "has an invalid header (version or page size)"
    if _wal_checksum(head[:24], magic & 1 == 1) != struct.unpack(">2I", head[24:32]):
        return "has a header whose salts do not match its checksum (damaged, or not this database's)"
    return None


def _collation_needed(conn: apsw.Connection, name: str) -> None:
    conn.create_collation(name, stand_in(name))


def connect(path: Path | str, *, readonly: bool = False, create: bool = False) -> apsw.Connection:
    """Open a connection with stand-in collations registered; read-only opens never write the file."""
    if readonly:
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        target = readonly_uri(path)
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI | (apsw.SQLITE_OPEN_CREATE if create else 0)
        target = str(path)
    try:
        conn = apsw.Connection(target, flags=flags)
    except apsw.CantOpenError as err:
        raise InputError(f"{path}: cannot open ({err})") from None
    conn.collation_needed(_collation_needed)
    conn.set_busy_timeout(5000)
    return conn


def readonly_uri(path: Path | str) -> str:
    """The read-only ``file:`` URI of ``path`` (made absolute and %-quoted; SQLite follows symbolic links in it)."""
    from urllib.parse import quote as urlquote

    return "file:" + urlquote(os.path.abspath(path)) + "?mode=ro"


def open_source(path: Path) -> apsw.Connection:
    """Open a database read-only after checking it is one; every read failure becomes NotADatabaseError."""
    check_database_file(path)
    conn = connect(path, readonly=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_schema").get  # noqa: B018 - forces the schema to parse
    except (apsw.Error, UnicodeDecodeError) as err:
        conn.close()
        journal = Path(str(path) + "-journal")
        if isinstance(err, apsw.ReadOnlyError) and journal.exists():
            raise NotADatabaseError(
                f"{path}: a writer stopped mid-transaction: its hot {journal.name} must be rolled back first, "
                "and failback only reads the source",
                "let the app (or `sqlite3 FILE 'PRAGMA quick_check'`) open it once so SQLite rolls the journal "
                "back, then run again",
            ) from None
        raise NotADatabaseError(f"{path}: not a valid SQLite database ({_reason(err)})") from None
    return conn


def _reason(err: BaseException) -> str:
    if isinstance(err, UnicodeDecodeError):
        return "schema text is not valid UTF-8"
    return str(err).split(":", 1)[-1].strip() or type(err).__name__


def database_error(path: Path, err: BaseException) -> FailbackError:
    """Wrap an apsw/decoding error raised while reading ``path``: a full disk or an I/O error is the machine's
    failure (exit 6), anything else means the file is not a readable database."""
    if isinstance(err, apsw.FullError):
        return EnvironmentFailure(f"{path}: disk full ({_reason(err)})")
    if isinstance(err, apsw.IOError):
        return EnvironmentFailure(f"{path}: I/O error ({_reason(err)})")
    return NotADatabaseError(f"{path}: cannot be read ({_reason(err)})")


def pragma(conn: apsw.Connection, name: str, schema: str = "main") -> Any:
    """Value of a read-only pragma (first column of its first row)."""
    return conn.execute(f"PRAGMA {quote(schema)}.{name}").get


@contextlib.contextmanager
def read_transaction(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """Several reads (only reads) in one read transaction: one consistent view, and one lock taken and released
    for all of them instead of one per statement (the file's change counter read once). Inside a transaction: as
    it is. Its end never raises: a read that failed raised (or was handled) where it ran, and SQLite may repeat
    that error at COMMIT (a damaged page): a COMMIT that fails ends it, else a ROLLBACK does (nothing was written)."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:  # an error may have ended it already
            with contextlib.suppress(apsw.Error):
                conn.execute("COMMIT")
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def run_script(conn: apsw.Connection, sql: str, bindings: Any = None) -> None:
    """Execute every statement of ``sql`` (apsw runs the next statement only as rows are consumed)."""
    for _ in conn.execute(sql, bindings):
        pass


def register_stand_ins(conn: apsw.Connection, functions: Sequence[str], body: Callable[..., Any]) -> None:
    """Register each app function ("name/arity", -1: any arity) on ``conn`` as ``body``, deterministic (as a
    GRDB app registers its functions), so indexes, CHECKs and generated columns calling them compile."""
    for entry in functions:
        name, _, arity = entry.rpartition("/")
        conn.create_scalar_function(name, body, int(arity), deterministic=True)
