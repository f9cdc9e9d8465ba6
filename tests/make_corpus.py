"""Generate the bad-input corpus in tests/data/ (``python tests/make_corpus.py [DEST]``).

Deterministic: SQLite's random numbers (WAL salts, journal nonces, ``randomblob``) come from a VFS whose
randomness is all zeros, and every other byte is derived from fixed seeds, so running the script twice gives
the same bytes (a test checks that the committed corpus equals a fresh build). Every file is small (a few KB;
the 65536-byte-page database is two pages of mostly zeros). ``tests/data/README.md`` is written from
``ENTRIES``: each file, what it is, and what failback must do with it.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SEED = 20240808


class _ZeroRandomVFS(apsw.VFS):
    """The default VFS with fixed randomness and a fixed clock: the same SQL writes the same bytes."""

    def __init__(self) -> None:
        super().__init__("failback-corpus", "", makedefault=True)

    def xRandomness(self, numbytes: int) -> bytes:
        return bytes(numbytes)

    def xCurrentTimeInt64(self) -> int:
        return 212_000_000_000_000  # a fixed Julian-day time in ms (2024)


@dataclass(frozen=True)
class Entry:
    """One corpus input: its file name, what it is, and what failback must make of it (``expect``)."""

    name: str
    what: str
    expect: str  # "error": a clean error · "export": exports with identical content · "either" · "repair"
    build: Callable[[Path, Path], None]  # (scratch folder, destination path)
    extra: tuple[str, ...] = ()  # side files written beside it (-wal, -journal)
    kind: str = "db"  # db or config


def _sql(path: Path, sql: str, *, pre: str = "") -> Path:
    """Create a database at ``path`` by running ``pre`` (pragmas) then ``sql`` in one transaction."""
    conn = apsw.Connection(str(path))
    for _ in conn.execute(pre or "SELECT 1"):
        pass
    with conn:
        for _ in conn.execute(sql):
            pass
    conn.close()
    return path


SMALL = """
CREATE TABLE note(id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT, n REAL, b BLOB);
CREATE INDEX note_title ON note(title);
WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 40)
INSERT INTO note(title, body, n, b) SELECT 'title ' || x, printf('body %d %.*c', x, x, 'z'), x / 3.0, zeroblob(x % 5)
FROM i;
"""


def small_db(path: Path) -> Path:
    """A valid little database (one table with an index, 40 rows, four pages of 1024 bytes)."""
    return _sql(path, SMALL, pre="PRAGMA page_size = 1024")


def _write(dest: Path, data: bytes) -> None:
    from failback.files import write_bytes

    write_bytes(dest, data, 0o644)


def _copy(src: Path, dest: Path) -> None:
    _write(dest, src.read_bytes())


# -- not databases -------------------------------------------------------------------------------------
def b_empty(_: Path, dest: Path) -> None:
    _write(dest, b"")


def b_text(_: Path, dest: Path) -> None:
    _write(dest, b"This is a text file, not a database.\nIt has two lines.\n")


def b_truncated_header(tmp: Path, dest: Path) -> None:
    _write(dest, small_db(tmp / "a.sqlite").read_bytes()[:60])


def b_truncated(tmp: Path, dest: Path) -> None:
    data = small_db(tmp / "a.sqlite").read_bytes()
    _write(dest, data[: len(data) // 2 + 100])  # half the pages, and part of the next one


def b_corrupt_page(tmp: Path, dest: Path) -> None:
    data = bytearray(small_db(tmp / "a.sqlite").read_bytes())
    page = 1024
    last = len(data) // page - 1  # a leaf page of the table: its b-tree header and cells become noise
    data[last * page : (last + 1) * page] = random.Random(SEED).randbytes(page)
    _write(dest, bytes(data))


def b_pagesize_invalid(tmp: Path, dest: Path) -> None:
    data = bytearray(small_db(tmp / "a.sqlite").read_bytes())
    data[16:18] = struct.pack(">H", 1000)  # not a power of two
    _write(dest, bytes(data))


def b_pagesize_wrong(tmp: Path, dest: Path) -> None:
    data = bytearray(small_db(tmp / "a.sqlite").read_bytes())
    data[16:18] = struct.pack(">H", 4096)  # a valid size, but the pages are 1024 bytes
    _write(dest, bytes(data))


def b_encrypted(_: Path, dest: Path) -> None:
    _write(dest, random.Random(SEED + 1).randbytes(4096))  # what SQLCipher's file looks like without its key


def b_hot_journal(tmp: Path, dest: Path) -> None:
    """A writer's transaction caught mid-way: the database holds half-written pages, the -journal the originals.
    (Copied while the transaction is open: exactly what a crash at that instant leaves.)"""
    db = _sql(
        tmp / "h.sqlite",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 16)"
        " INSERT INTO t(v) SELECT printf('%.200c', 'a') FROM i;",
        pre="PRAGMA page_size = 1024; PRAGMA journal_mode = DELETE",
    )
    before = db.read_bytes()
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA cache_size = 2").get  # noqa: B018 - spill changed pages to the file mid-transaction
    conn.execute("BEGIN; UPDATE t SET v = printf('%.200c', 'b') WHERE id > 2")
    journal = Path(str(db) + "-journal")
    assert journal.stat().st_size > 1024 and db.read_bytes() != before, "no page was spilled"
    _copy(db, dest)
    _copy(journal, Path(str(dest) + "-journal"))
    conn.execute("ROLLBACK")
    conn.close()


def _wal_db(path: Path, sql: str) -> tuple[apsw.Connection, Path]:
    """A WAL database whose commits are all still in its -wal (the connection is kept open: no checkpoint)."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 1024").get  # noqa: B018
    conn.execute("PRAGMA journal_mode = WAL").get  # noqa: B018
    conn.execute("PRAGMA wal_autocheckpoint = 0").get  # noqa: B018
    with conn:
        for _ in conn.execute(sql):
            pass
    return conn, Path(str(path) + "-wal")


WAL_ROWS = (
    "CREATE TABLE event(id INTEGER PRIMARY KEY, kind TEXT, at REAL);"
    "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 30)"
    " INSERT INTO event(kind, at) SELECT 'kind ' || (x % 4), x * 1.5 FROM i;"
)


def b_wal_pending(tmp: Path, dest: Path) -> None:
    """Valid: the table and its rows exist only in the -wal (a reader of the main file alone sees nothing)."""
    conn, wal = _wal_db(tmp / "w.sqlite", WAL_ROWS)
    _copy(tmp / "w.sqlite", dest)
    _copy(wal, Path(str(dest) + "-wal"))
    conn.close()


def b_wal_bad_salt(tmp: Path, dest: Path) -> None:
    """The -wal's header salts do not match its checksum and frames: SQLite ignores the whole -wal, so a
    reader would silently lose the rows in it."""
    conn, wal = _wal_db(tmp / "w.sqlite", WAL_ROWS)
    data = bytearray(wal.read_bytes())
    data[16:24] = bytes(b ^ 0x5A for b in data[16:24])
    _copy(tmp / "w.sqlite", dest)
    _write(Path(str(dest) + "-wal"), bytes(data))
    conn.close()


def b_foreign_wal(tmp: Path, dest: Path) -> None:
    """The -wal of another database (same page size) beside a checkpointed one: SQLite replays foreign pages."""
    conn, wal = _wal_db(tmp / "other.sqlite", WAL_ROWS + "CREATE TABLE extra(x); INSERT INTO extra VALUES (1);")
    mine = small_db(tmp / "mine.sqlite")
    c = apsw.Connection(str(mine))
    c.execute("PRAGMA journal_mode = WAL").get  # noqa: B018 - header says WAL; closing checkpoints it
    c.close()
    _copy(mine, dest)
    _copy(wal, Path(str(dest) + "-wal"))
    conn.close()


def b_user_version_max(tmp: Path, dest: Path) -> None:
    _copy(_sql(tmp / "u.sqlite", SMALL, pre=f"PRAGMA page_size = 1024; PRAGMA user_version = {2**31 - 1}"), dest)


def b_user_version_negative(tmp: Path, dest: Path) -> None:
    pre = f"PRAGMA page_size = 1024; PRAGMA user_version = {-(2**31)}; PRAGMA application_id = -1"
    _copy(_sql(tmp / "u.sqlite", SMALL, pre=pre), dest)


NAMES = """
CREATE TABLE "x""; DROP TABLE y; --"("a""b" TEXT, "select" INTEGER, "col with spaces" TEXT, "naïve ☃ 表" TEXT);
CREATE TABLE y(id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE "table"("order" INTEGER PRIMARY KEY, "group" TEXT, [from] TEXT, `where` TEXT, "'single'" TEXT);
CREATE TABLE "my table ☃"("Ω" TEXT COLLATE NOCASE, "]bracket[" INTEGER, "back`tick" TEXT, "" TEXT);
CREATE INDEX "idx ""quoted""; --" ON "x""; DROP TABLE y; --"("a""b", "select");
CREATE UNIQUE INDEX "select" ON "table"("group");
CREATE INDEX "ünïcödé idx" ON "my table ☃"("Ω" COLLATE NOCASE, "]bracket[");
CREATE VIEW "view ""of"" x" AS SELECT "a""b" AS "a b", "select" FROM "x""; DROP TABLE y; --" WHERE "select" > 1;
CREATE TRIGGER "trg'; DROP TABLE y; --" AFTER INSERT ON "x""; DROP TABLE y; --"
BEGIN INSERT INTO y(v) VALUES ('from trigger: ' || new."a""b"); END;
INSERT INTO "x""; DROP TABLE y; --" VALUES ('''); DROP TABLE y; --', 1, 'a b c', '☃ snow');
INSERT INTO "x""; DROP TABLE y; --" VALUES ('"quoted"', 2, NULL, 'naïve');
INSERT INTO "table" VALUES (1, 'g1', 'f', 'w', 's'), (2, 'g2', NULL, NULL, 'O''Brien');
INSERT INTO "my table ☃" VALUES ('Ωmega', 1, 'tick', 'empty name'), ('omega', 2, NULL, NULL);
"""


def b_names(tmp: Path, dest: Path) -> None:
    """Quotes, spaces, unicode, SQL keywords and injection-looking names on tables, columns, an index, a view
    and a trigger; rows that look like SQL. All of it must survive export unchanged (and ``y`` must survive)."""
    _copy(_sql(tmp / "n.sqlite", NAMES, pre="PRAGMA page_size = 1024"), dest)


def _encoded(encoding: str) -> Callable[[Path, Path], None]:
    def build(tmp: Path, dest: Path) -> None:
        pre = f"PRAGMA page_size = 1024; PRAGMA encoding = '{encoding}'"
        _copy(_sql(tmp / "e.sqlite", SMALL + NAMES, pre=pre), dest)

    return build


def _page_size(size: int) -> Callable[[Path, Path], None]:
    def build(tmp: Path, dest: Path) -> None:
        sql = SMALL if size <= 4096 else "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')"
        _copy(_sql(tmp / "p.sqlite", sql, pre=f"PRAGMA page_size = {size}"), dest)

    return build


def _auto_vacuum(mode: str) -> Callable[[Path, Path], None]:
    def build(tmp: Path, dest: Path) -> None:
        db = _sql(tmp / "v.sqlite", SMALL, pre=f"PRAGMA page_size = 1024; PRAGMA auto_vacuum = {mode}")
        _sql(db, "DELETE FROM note WHERE id % 3 = 0")  # free pages: FULL gives them back, INCREMENTAL keeps them
        _copy(db, dest)

    return build


def b_app_collation(tmp: Path, dest: Path) -> None:
    """App-defined collation (``unicase``) on a column and an index, and a trigger calling an app function
    (``ST_Distance``): readable through fallbacks; the trigger cannot work in sql.js."""

    conn = apsw.Connection(str(tmp / "c.sqlite"))
    conn.create_collation("unicase", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
    conn.create_scalar_function("ST_Distance", lambda *a: 0.0)
    sql = (
        "PRAGMA page_size = 1024;"
        "CREATE TABLE place(id INTEGER PRIMARY KEY, name TEXT COLLATE unicase, x REAL, y REAL, d REAL);"
        "CREATE INDEX place_name ON place(name COLLATE unicase);"
        "CREATE TRIGGER place_d AFTER INSERT ON place BEGIN"
        " UPDATE place SET d = ST_Distance(new.x, new.y, 0, 0) WHERE id = new.id; END;"
        "INSERT INTO place(name, x, y) VALUES ('Zürich', 8.5, 47.4), ('zurich', 1, 2), ('Basel', 7.6, 47.6);"
    )
    for _ in conn.execute(sql):
        pass
    conn.close()
    _copy(tmp / "c.sqlite", dest)


FTS4_NOTES = """
CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE VIRTUAL TABLE note_ft USING fts4(body);
WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 30)
INSERT INTO note(body) SELECT printf('note %d lorem ipsum qzx', x) FROM i;
INSERT INTO note_ft(docid, body) SELECT id, body FROM note;
"""


def b_fts4_bad_index(tmp: Path, dest: Path) -> None:
    """A valid FTS4 table whose inverted index no longer matches its intact text: the term 'qzx' renamed 'qzy'
    in the root of its segment (``note_ft_segdir``), as a damaged write leaves it. SELECT still returns every
    row; MATCH 'qzx' finds none (a word too short for the search parity's samples, so only quick_check on
    SQLite 3.54 tells: "malformed inverted index")."""
    db = _sql(tmp / "f.sqlite", FTS4_NOTES, pre="PRAGMA page_size = 1024")
    _sql(db, "UPDATE note_ft_segdir SET root = replace(root, CAST('qzx' AS BLOB), CAST('qzy' AS BLOB))")
    _copy(db, dest)


def b_bad_utf8_names(tmp: Path, dest: Path) -> None:
    """A schema whose table name and SQL hold bytes that are not UTF-8 (SQLite accepts them; Python cannot
    decode them)."""
    db = _sql(tmp / "b.sqlite", "CREATE TABLE tXX(a TEXT DEFAULT 'XX'); INSERT INTO tXX VALUES ('ok')")
    data = db.read_bytes().replace(b"tXX", b"t\xff\xfe").replace(b"'XX'", b"'\xc3\x28'")
    _write(dest, data)


def b_folder(_: Path, dest: Path) -> None:
    from failback.files import ensure_dir

    ensure_dir(dest)
    _write(dest / "README", b"A folder where a database file is expected (git keeps folders only with a file).\n")


def b_symlink_loop(_: Path, dest: Path) -> None:
    other = dest.with_name(dest.name.replace("-a", "-b"))
    for link, to in ((dest, other.name), (other, dest.name)):
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(to, link)


# -- configs ----------------------------------------------------------------------------------------------
GOOD_TOML = """\
[source]
path = "native.sqlite"

[target]
path = "app-sqljs.sqlite"

[app]
config = "app.env"
"""


def _text(text: str | bytes) -> Callable[[Path, Path], None]:
    def build(_: Path, dest: Path) -> None:
        _write(dest, text if isinstance(text, bytes) else text.encode("utf-8"))

    return build


CONFIGS: dict[str, tuple[str, str | bytes]] = {
    "config-wrong-types.toml": (
        "values of the wrong type: a number for a path, a string for an int, a table for a list",
        GOOD_TOML.replace('path = "native.sqlite"', "path = 5")
        + '\n[backup]\nmin_layers = "two"\nmirrors = { a = 1 }\nzstd_level = 99\n'
        + '\n[verify]\nqueries = "SELECT 1"\n',
    ),
    "config-unknown-keys.toml": (
        "a misspelt key (a typo must not silently disable a setting) and an unknown section",
        GOOD_TOML + '\n[backup]\nmirros = ["m"]\n\n[sourc]\npath = "x"\n',
    ),
    "config-missing-fields.toml": (
        "no [app] section and no [target] path",
        '[source]\npath = "native.sqlite"\n\n[target]\nprofile = "sqljs-1.16.0"\n',
    ),
    "config-not-toml.toml": (
        "INI/JSON-looking text that is not TOML",
        '{"source": {"path": "native.sqlite"}}\n[source\npath = native.sqlite\n',
    ),
    "config-not-utf8.toml": (
        "Latin-1 bytes (not UTF-8) in a string",
        GOOD_TOML.encode("utf-8").replace(b"native.sqlite", b"na\xefve.sqlite"),
    ),
    "config-bad-values.toml": (
        "well-typed values out of range or meaningless (empty state_dir, zero layers, a bad duration)",
        'state_dir = " "\n'
        + GOOD_TOML
        + '\n[backup]\nmin_layers = 0\nkeep_within = "forever"\n\n[triggers]\ninterval = -1\n',
    ),
    "config-injection.toml": (
        "an [app] key a shell would run if the app's .env is sourced (`X; rm -rf / #`), and SQL in "
        "[sync] pending_sql: a config error",
        GOOD_TOML.replace('config = "app.env"', 'config = "app.env"\nkey = "X; rm -rf / #"')
        + '\n[sync]\npending_sql = ["SELECT 1; DROP TABLE note"]\n',
    ),
}


ENTRIES: list[Entry] = [
    Entry("empty.sqlite", "an empty file (0 bytes)", "error", b_empty),
    Entry("text.sqlite", "a text file", "error", b_text),
    Entry("truncated-header.sqlite", "a database cut inside its 100-byte header", "error", b_truncated_header),
    Entry("truncated.sqlite", "a database cut in the middle of a page (half its pages missing)", "error", b_truncated),
    Entry("corrupt-page.sqlite", "a valid database whose last b-tree page is random bytes", "error", b_corrupt_page),
    Entry("pagesize-invalid.sqlite", "header page-size field 1000 (not a power of two)", "error", b_pagesize_invalid),
    Entry(
        "pagesize-wrong.sqlite", "header page-size field 4096 on a file of 1024-byte pages", "error", b_pagesize_wrong
    ),
    Entry("encrypted.sqlite", "random bytes without the SQLite header, as SQLCipher writes", "error", b_encrypted),
    Entry(
        "hot-journal.sqlite",
        "a transaction caught mid-way: half-written pages and a hot -journal (a crashed writer)",
        "error",
        b_hot_journal,
        ("-journal",),
    ),
    Entry(
        "wal-pending.sqlite", "valid; its only table and rows are still in the -wal", "export", b_wal_pending, ("-wal",)
    ),
    Entry(
        "wal-bad-salt.sqlite",
        "a -wal whose header salts do not match its checksum and frames (SQLite would ignore it: rows lost)",
        "error",
        b_wal_bad_salt,
        ("-wal",),
    ),
    Entry(
        "foreign-wal.sqlite",
        "the -wal of another database (same page size) beside a checkpointed database",
        "either",
        b_foreign_wal,
        ("-wal",),
    ),
    Entry("folder.sqlite", "a folder where a database file is expected", "error", b_folder),
    Entry("loop-a.sqlite", "a symlink loop (loop-a.sqlite -> loop-b.sqlite -> loop-a.sqlite)", "error", b_symlink_loop),
    Entry("bad-utf8-names.sqlite", "a table name and schema SQL that are not valid UTF-8", "error", b_bad_utf8_names),
    Entry("user-version-max.sqlite", "user_version 2**31-1", "export", b_user_version_max),
    Entry("user-version-negative.sqlite", "user_version -2**31, application_id -1", "export", b_user_version_negative),
    Entry(
        "names.sqlite",
        "quotes, spaces, unicode, SQL keywords and injection-looking names (tables, columns, index, view, trigger)",
        "export",
        b_names,
    ),
    Entry("utf16le.sqlite", "a UTF-16le database (with the odd names)", "export", _encoded("UTF-16le")),
    Entry("utf16be.sqlite", "a UTF-16be database (with the odd names)", "export", _encoded("UTF-16be")),
    Entry("pagesize-512.sqlite", "page size 512", "export", _page_size(512)),
    Entry("pagesize-65536.sqlite", "page size 65536 (two pages, mostly zeros: 128 KB)", "export", _page_size(65536)),
    Entry("autovacuum-full.sqlite", "auto_vacuum FULL, after deletes", "export", _auto_vacuum("FULL")),
    Entry(
        "autovacuum-incremental.sqlite",
        "auto_vacuum INCREMENTAL, free pages kept",
        "export",
        _auto_vacuum("INCREMENTAL"),
    ),
    Entry(
        "app-collation.sqlite",
        "an app collation (unicase) on a column and index, a trigger calling an app function (ST_Distance)",
        "either",
        b_app_collation,
    ),
    Entry(
        "fts4-bad-index.sqlite",
        "a valid-looking database whose FTS4 index no longer matches its intact text (quick_check: malformed "
        "inverted index)",
        "repair",
        b_fts4_bad_index,
    ),
    *(Entry(name, what, "error", _text(text), kind="config") for name, (what, text) in CONFIGS.items()),
]


def build(dest: Path = DATA) -> list[Path]:
    """Write every corpus entry (and tests/data/README.md) into ``dest``; return the paths written.

    Byte-for-byte repeatable only in a fresh process (as the script runs it): SQLite seeds its random number
    generator once per process, from the VFS that is the default at that moment."""
    from failback.files import ensure_dir, write_text

    vfs = _ZeroRandomVFS()
    ensure_dir(dest)
    written: list[Path] = []
    try:
        for entry in ENTRIES:
            with tempfile.TemporaryDirectory() as tmp:
                path = dest / entry.name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                for suffix in ("-wal", "-journal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
                entry.build(Path(tmp), path)
                written += [path, *(Path(str(path) + s) for s in entry.extra)]
    finally:
        vfs.unregister()
    write_text(dest / "README.md", readme(), 0o644)
    return written


def readme() -> str:
    """tests/data/README.md: the corpus, file by file."""
    expect = {
        "error": "a clean error (exit 1/2/3/5/6)",
        "export": "exports with identical content (exit 0)",
        "either": "a correct result or a clean error",
        "repair": "refused (exit 3) naming the index; with --repair-fts, exports with the index rebuilt from the text",
    }
    lines = [
        "# Bad-input corpus",
        "",
        "Generated by `tests/make_corpus.py` (deterministic; run `.venv/bin/python tests/make_corpus.py` after",
        "changing it — `tests/test_corpus.py` checks that this folder equals a fresh build). `tests/test_corpus.py`",
        "runs every failback command that takes a file against each of these, as a real subprocess: never a",
        "traceback or exit 70, a one-line `error:` with a `hint:` when it fails, the input's bytes unchanged, and",
        "no partial target or stray temp file. Tests work on copies in a temp folder, never on these files.",
        "",
        "| file | what it is | failback must give |",
        "|---|---|---|",
    ]
    for e in ENTRIES:
        side = "".join(f" (+ `{e.name}{s}`)" for s in e.extra)
        name = f"`{e.name}`" + (" (+ `loop-b.sqlite`)" if e.name == "loop-a.sqlite" else "") + side
        lines.append(f"| {name} | {e.what} | {expect[e.expect]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    for p in build(out):
        print(p)
