"""Sample databases for the demo, the tests and the benchmarks.

``build_native`` writes a database shaped like a GRDB (Swift) notes app in production: GRDB migrations,
a Swift collation, AUTOINCREMENT ids with gaps, JSON tags, foreign keys, an FTS5 external-content index
kept in sync by GRDB's triggers, CloudKit-style sync metadata, WAL mode with its last commits still in
the ``-wal`` file. ``build_sqljs_premigration`` writes the older sql.js-era file the app migrated from.

Both are deterministic for a given seed, write under a temp name and rename into place, and never print.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from .. import files
from ..db.connect import SIDE_FILES, connect, quote, run_script

__all__ = ["NativeStats", "build_native", "build_sqljs_premigration", "grdb_fts5_sql"]

SWIFT_COLLATION = "swiftLocalizedCaseInsensitiveCompare"
NATIVE_USER_VERSION = 7
NATIVE_APPLICATION_ID = 0x4E4F5445  # "NOTE"
SQLJS_USER_VERSION = 3
MIGRATIONS = (
    "v1.createFolders",
    "v2.createNotes",
    "v3.createAttachments",
    "v4.noteTags",
    "v5.fullTextSearch",
    "v6.syncMetadata",
)
SEARCH_WORD = "zebra"  # in the body of every note whose id is divisible by 10, nowhere else
MEETING_WORD = "meeting"  # in about a third of the titles
CAFE_WORD = "café"  # in a few titles; "cafe" finds them through remove_diacritics
EDIT_MARK = "(edited)"  # appended to the titles changed by the last transaction, left in the -wal
EXTRA_TITLE = "Lost draft"  # titles of the notes that exist only in the sql.js-era file
DELETE_FRACTION = 0.05
ATTACHMENT_EVERY = 10  # about one attachment per this many notes
PENDING_EVERY = 29  # about one note in this many is not synced yet (no server record)
EDITED_NOTES = 5
EXTRA_NOTES = 3
PREMIGRATION_FRACTION = 0.8

NATIVE_SCHEMA = f"""
CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
CREATE TABLE "folder" (\
"id" INTEGER PRIMARY KEY AUTOINCREMENT, \
"name" TEXT NOT NULL COLLATE {SWIFT_COLLATION}, \
"createdAt" DATETIME NOT NULL);
CREATE UNIQUE INDEX "folder_on_name" ON "folder"("name");
CREATE TABLE "note" (\
"id" INTEGER PRIMARY KEY AUTOINCREMENT, \
"folderId" INTEGER REFERENCES "folder"("id") ON DELETE CASCADE, \
"title" TEXT NOT NULL, \
"body" TEXT NOT NULL, \
"tags" TEXT NOT NULL CHECK (json_valid("tags")) DEFAULT '[]', \
"isPinned" BOOLEAN NOT NULL DEFAULT 0, \
"createdAt" DATETIME NOT NULL, \
"updatedAt" DATETIME NOT NULL, \
"isSynced" BOOLEAN NOT NULL DEFAULT 0);
CREATE INDEX "note_on_folderId" ON "note"("folderId");
CREATE INDEX "note_on_title" ON "note"("title" COLLATE {SWIFT_COLLATION});
CREATE INDEX "note_on_updatedAt_pinned" ON "note"("updatedAt") WHERE "isPinned";
CREATE TABLE "attachment" (\
"id" INTEGER PRIMARY KEY AUTOINCREMENT, \
"noteId" INTEGER NOT NULL REFERENCES "note"("id") ON DELETE CASCADE, \
"mimeType" TEXT NOT NULL, \
"data" BLOB NOT NULL);
CREATE INDEX "attachment_on_noteId" ON "attachment"("noteId");
CREATE TABLE "syncState" (\
"recordName" TEXT NOT NULL PRIMARY KEY, \
"tableName" TEXT NOT NULL, \
"lastKnownServerRecord" BLOB, \
"modifiedAt" DATETIME NOT NULL) WITHOUT ROWID;
"""


def _literal(text: str) -> str:
    """An SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def grdb_fts5_sql(
    fts: str, content: str, columns: Sequence[str], *, rowid: str = "id", tokenize: str | None = None
) -> str:
    """The SQL GRDB runs for ``db.create(virtualTable: fts, using: FTS5()) { t.synchronize(withTable:) }``.

    Same text as GRDB/FTS/FTS5.swift (``moduleArguments`` and ``database(_:didCreate:using:)``) and
    GRDB/QueryInterface/Schema/VirtualTableModule.swift: module arguments are columns, then tokenize,
    content and content_rowid as string literals; the three sync triggers are named after the FTS
    table (``__<fts>_ai/_ad/_au``; GRDB <= 2.3.1 used the content table) and the index is filled with 'rebuild'.
    """
    args = [*columns]
    if tokenize is not None:
        args.append(f"tokenize={_literal(tokenize)}")
    args += [f"content={_literal(content)}", f"content_rowid={_literal(rowid)}"]
    ft, tbl = quote(fts), quote(content)
    fts_cols = ", ".join(quote(c) for c in ["rowid", *columns])
    new = ", ".join(f"new.{quote(c)}" for c in [rowid, *columns])
    old = ", ".join(f"old.{quote(c)}" for c in [rowid, *columns])
    return (
        f"CREATE VIRTUAL TABLE {ft} USING fts5({', '.join(args)});\n"
        f"CREATE TRIGGER {quote(f'__{fts}_ai')} AFTER INSERT ON {tbl} BEGIN\n"
        f"    INSERT INTO {ft}({fts_cols}) VALUES ({new});\n"
        "END;\n"
        f"CREATE TRIGGER {quote(f'__{fts}_ad')} AFTER DELETE ON {tbl} BEGIN\n"
        f"    INSERT INTO {ft}({ft}, {fts_cols}) VALUES('delete', {old});\n"
        "END;\n"
        f"CREATE TRIGGER {quote(f'__{fts}_au')} AFTER UPDATE ON {tbl} BEGIN\n"
        f"    INSERT INTO {ft}({ft}, {fts_cols}) VALUES('delete', {old});\n"
        f"    INSERT INTO {ft}({fts_cols}) VALUES ({new});\n"
        "END;\n"
        f"INSERT INTO {ft}({ft}) VALUES('rebuild');\n"
    )


NATIVE_FTS = grdb_fts5_sql("note_ft", "note", ("title", "body"), tokenize="unicode61 remove_diacritics 2")

SQLJS_SCHEMA = """
CREATE TABLE folder (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, createdAt DATETIME NOT NULL);
CREATE TABLE note (id INTEGER PRIMARY KEY AUTOINCREMENT, \
folderId INTEGER REFERENCES folder(id) ON DELETE CASCADE, title TEXT NOT NULL, body TEXT NOT NULL, \
tags TEXT NOT NULL DEFAULT '[]', isPinned BOOLEAN NOT NULL DEFAULT 0, createdAt DATETIME NOT NULL, \
updatedAt DATETIME NOT NULL);
CREATE INDEX note_folder ON note(folderId);
CREATE TABLE attachment (id INTEGER PRIMARY KEY AUTOINCREMENT, \
noteId INTEGER NOT NULL REFERENCES note(id) ON DELETE CASCADE, mimeType TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX attachment_note ON attachment(noteId);
"""

FOLDERS = (
    "Inbox",
    "Travail",
    "Café ☕",
    "Рабочие заметки",
    "仕事",
    "Ελληνικά",
    "Ideas 💡",
    "Archive",
    "Recettes de cuisine",
    "Música y baile",
    "Über alles",
    "Zürich 2024",
    "家族 👨‍👩‍👧",
    "Ñandú",
)

WORDS = (
    # English
    "the", "a", "and", "of", "to", "in", "is", "it", "for", "on", "with", "as", "this", "that", "we",
    "project", "review", "plan", "budget", "call", "draft", "notes", "agenda", "follow", "up", "ship",
    "release", "design", "test", "idea", "list", "buy", "milk", "bread", "garden", "weekend", "trip",
    "book", "read", "write", "email", "client", "team", "quarter", "report", "deadline", "friday",
    "monday", "lunch", "dinner", "recipe", "travel", "flight", "hotel", "ticket", "museum", "river",
    "mountain", "coffee", "tea", "piano", "guitar", "movie", "music", "photo", "camera", "code",
    "server", "database", "backup", "restore", "sync", "cloud", "phone", "laptop", "battery", "repair",
    # accented Latin
    "été", "déjà", "élève", "naïve", "façade", "crème", "brûlée", "résumé", "niño", "mañana", "año",
    "señor", "über", "Straße", "Grüße", "Müller", "smørrebrød", "København", "São", "Paulo", "coração",
    "łódź", "žluťoučký", "kůň",
    # Greek
    "αλφα", "λόγος", "θάλασσα", "ήλιος", "καλημέρα", "Αθήνα", "φίλος",
    # Cyrillic
    "привет", "мир", "работа", "встреча", "книга", "Москва", "чай", "ёлка",
    # CJK
    "東京", "会議", "日本語", "学校", "北京", "中文", "서울", "한국어", "ありがとう",
    # emoji, astral plane (separators for unicode61, kept in the text)
    "🎉", "🚀", "👩‍💻", "🦊", "🍕", "📎", "✅", "🇫🇷",
)  # fmt: skip

SYLLABLES = ("ka", "lo", "mi", "ran", "te", "su", "vel", "dor", "pi", "an", "or", "qui", "sta", "ne", "bu")
SPECIAL_BODIES = (
    "She said \"it's fine\" and left.\nThen: 'really?'",
    "Line one\nLine two\n\n\tIndented line with a back\\slash",
    'JSON-ish: {"key": "value", "n": 1}',
    "Quotes '' and \"\" and `ticks`\r\nWindows line end",
)
TAGS = ("work", "home", "urgent", "later", "idée", "читать", "重要", "🔥", "q3", "family")
MIME_TYPES = ("image/png", "image/jpeg", "application/pdf", "text/plain", "audio/m4a")
RESERVED = {SEARCH_WORD, MEETING_WORD, "cafe", CAFE_WORD, "edited", "lost", "draft"}
BASE_TIME = 1_577_836_800  # 2020-01-01T00:00:00Z
# The constant part of an archived CKRecord's system fields (NSKeyedArchiver binary plist).
CKRECORD_HEAD = (
    b"bplist00\xd4\x01\x02\x03\x04\x05\x06\x07\x0aX$versionY$archiverT$topX$objects\x12\x00\x01\x86\xa0"
    b"_\x10\x0fNSKeyedArchiver\xd1\x08\x09Troot\x80\x01\xaf\x10\x12CKRecordZoneID"
    b"NotesZone__defaultOwner__CKRecordID CKRecordType recordChangeTag modificationDate"
)


@dataclass(frozen=True)
class NativeStats:
    """What ``build_native`` wrote: row counts, AUTOINCREMENT state and size on disk."""

    notes: int
    folders: int
    attachments: int
    deleted: int
    max_id: int
    seq: int
    bytes: int


def build_native(
    path: Path,
    *,
    notes: int = 3000,
    seed: int = 7,
    body_words: int = 60,
    wal: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> NativeStats:
    """Create a GRDB-like notes database at ``path``; refuse (FileExistsError) if anything is there.

    ``progress(done, total)`` is called about every 1% of the notes inserted.
    """
    if notes < 1:
        raise ValueError("notes must be at least 1")
    path = Path(path)
    _refuse_existing(path)
    tmp = files.tmp_name(path, "build")
    files.remove_quietly(tmp, *_sides(tmp))
    try:
        conn = apsw.Connection(str(tmp), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        try:
            conn.create_collation(SWIFT_COLLATION, _casefold_compare)
            stats = _fill_native(conn, random.Random(seed), notes, body_words, wal, progress)
        finally:
            conn.close()
        built = [p for p in (tmp, Path(f"{tmp}-wal")) if p.exists()]
        for p in built:  # the bulk phase ran with synchronous=OFF
            files.fsync_path(p)
        size = sum(p.stat().st_size for p in built)
        _refuse_existing(path)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{tmp}{suffix}")
            if side.exists():
                os.replace(side, f"{path}{suffix}")
        os.replace(tmp, path)
        files.fsync_dir(path.parent)
    except BaseException:
        files.remove_quietly(tmp, *_sides(tmp))
        raise
    return NativeStats(**stats, bytes=size)


def build_sqljs_premigration(path: Path, native: Path, *, seed: int = 7) -> None:
    """Create the sql.js-era database the app had before it migrated to ``native``.

    It holds the first ~80% of the native notes (with their folders and attachments) in plain tables,
    plus ``EXTRA_NOTES`` notes whose ids are not in ``native``: data the migration never carried.
    """
    path = Path(path)
    _refuse_existing(path)
    rng = random.Random(seed ^ 0x5A5A)
    tmp = files.tmp_name(path, "build")
    files.remove_quietly(tmp, *_sides(tmp))
    try:
        src = connect(native, readonly=True)
        try:
            dst = connect(tmp, create=True)
            try:
                _fill_premigration(src, dst, rng)
            finally:
                dst.close()
        finally:
            src.close()
        _refuse_existing(path)
        files.publish(tmp, path)
    except BaseException:
        files.remove_quietly(tmp, *_sides(tmp))
        raise


def _fill_native(
    conn: apsw.Connection,
    rng: random.Random,
    notes: int,
    body_words: int,
    wal: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, int]:
    # Bulk phase without a journal (a failed build is thrown away), then WAL like the live app.
    for pragma in (
        "PRAGMA page_size=4096",
        "PRAGMA journal_mode=OFF",
        "PRAGMA synchronous=OFF",
        "PRAGMA cache_size=-262144",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA user_version={NATIVE_USER_VERSION}",
        f"PRAGMA application_id={NATIVE_APPLICATION_ID}",
    ):
        run_script(conn, pragma)
    with conn:
        run_script(conn, NATIVE_SCHEMA)
        conn.executemany("INSERT INTO grdb_migrations(identifier) VALUES (?)", [(m,) for m in MIGRATIONS])
        conn.executemany(
            'INSERT INTO "folder"("id", "name", "createdAt") VALUES (?, ?, ?)',
            [(i, name, _stamp(BASE_TIME + i * 3600)) for i, name in enumerate(FOLDERS, 1)],
        )
        conn.executemany(
            'INSERT INTO "note"("id", "folderId", "title", "body", "tags", "isPinned", "createdAt", '
            '"updatedAt", "isSynced") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
            _note_rows(rng, notes, body_words, len(FOLDERS), progress),
        )
        conn.executemany(
            'INSERT INTO "attachment"("noteId", "mimeType", "data") VALUES (?, ?, ?)',
            _attachment_rows(rng, notes),
        )
        conn.executemany(
            'INSERT INTO "syncState"("recordName", "tableName", "lastKnownServerRecord", "modifiedAt") '
            "VALUES (?, ?, ?, ?)",
            _sync_rows(rng, notes, len(FOLDERS)),
        )
        # v5.fullTextSearch ran on a populated database: GRDB creates the table, triggers, then rebuilds.
        run_script(conn, NATIVE_FTS)

    # Life after the migrations: ~5% of the notes deleted (FTS kept right by the triggers), and the
    # newest note too, so sqlite_sequence stays ahead of max(id).
    deleted = sorted(set(rng.sample(range(1, notes), int((notes - 1) * DELETE_FRACTION))) | {notes})
    with conn:
        conn.executemany('DELETE FROM "note" WHERE "id" = ?', [(i,) for i in deleted])
        conn.executemany(
            'DELETE FROM "syncState" WHERE "recordName" = ?', [(_record_name("note", i),) for i in deleted]
        )

    run_script(conn, f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
    run_script(conn, "PRAGMA synchronous=FULL")
    # The last transaction a user made before the rollback: with WAL it stays in the -wal file.
    with conn:
        edited = [r[0] for r in conn.execute('SELECT "id" FROM "note" ORDER BY "id" DESC LIMIT ?', (EDITED_NOTES,))]
        now = _stamp(BASE_TIME + (notes + 1) * 600)
        conn.executemany(
            f'UPDATE "note" SET "title" = "title" || \' {EDIT_MARK}\', "updatedAt" = ?, "isSynced" = 0 WHERE "id" = ?',
            [(now, i) for i in edited],
        )
        conn.executemany(
            'UPDATE "syncState" SET "modifiedAt" = ? WHERE "recordName" = ?',
            [(now, _record_name("note", i)) for i in edited],
        )
    run_script(conn, """INSERT INTO "note_ft"("note_ft") VALUES('integrity-check')""")
    if wal:
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)

    def count(sql: str) -> int:
        return int(conn.execute(sql).get or 0)

    return {
        "notes": count('SELECT count(*) FROM "note"'),
        "folders": count('SELECT count(*) FROM "folder"'),
        "attachments": count('SELECT count(*) FROM "attachment"'),
        "deleted": len(deleted),
        "max_id": count('SELECT max("id") FROM "note"'),
        "seq": count("SELECT seq FROM sqlite_sequence WHERE name = 'note'"),
    }


def _note_rows(
    rng: random.Random,
    notes: int,
    body_words: int,
    folders: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[tuple[Any, ...]]:
    """Rows for ``note``: ids 1..notes; the text comes from slices of one pre-made word pool."""
    vocabulary = _vocabulary(rng)
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(vocabulary))]
    pool = rng.choices(vocabulary, weights, k=max(50_000, 8 * body_words))
    title_words = vocabulary[:400]
    tags = [_json_list(rng.sample(TAGS, k)) for k in (0, 1, 1, 2, 2, 3) for _ in range(4)]
    span = len(pool) - body_words
    step = max(1, notes // 100)
    rand = rng.random
    for i in range(1, notes + 1):
        start = int(rand() * span)
        body = " ".join(pool[start : start + body_words])
        if i % 10 == 0:
            body = f"{body} {SEARCH_WORD}"
        if i % 41 == 0:
            body = f"{SPECIAL_BODIES[i % len(SPECIAL_BODIES)]}\n{body}"
        t = int(rand() * len(title_words))
        title = f"{title_words[t].capitalize()} {title_words[(t * 7 + 3) % len(title_words)]}"
        if rand() < 1 / 3:
            title = f"{title} {MEETING_WORD}"
        if i % 97 == 5:
            title = f"{CAFE_WORD.capitalize()} {title}"
        created = BASE_TIME + i * 600
        folder = None if i % 9 == 0 else 1 + int(rand() * folders)
        yield (
            i,
            folder,
            title,
            body,
            tags[i % len(tags)],
            1 if i % 53 == 0 else 0,
            _stamp(created),
            _stamp(created + int(rand() * 86_400)),
            0 if i % PENDING_EVERY == 0 else 1,
        )
        if progress is not None and (i % step == 0 or i == notes):
            progress(i, notes)


def _attachment_rows(rng: random.Random, notes: int) -> Iterator[tuple[Any, ...]]:
    """About one small random BLOB per ``ATTACHMENT_EVERY`` notes, a few bytes to 8 KiB, some empty."""
    for n in range(max(1, notes // ATTACHMENT_EVERY)):
        note_id = 1 + int(rng.random() * notes)
        size = 0 if n % 17 == 0 else 1 + int(rng.random() ** 3 * 8191)
        yield (note_id, MIME_TYPES[n % len(MIME_TYPES)], rng.randbytes(size))


def _sync_rows(rng: random.Random, notes: int, folders: int) -> Iterator[tuple[Any, ...]]:
    """One sync record per folder and note; pending notes have no server record yet."""
    for i in range(1, folders + 1):
        name = _record_name("folder", i)
        yield (name, "folder", _server_record(rng, name), _stamp(BASE_TIME + i * 3600))
    for i in range(1, notes + 1):
        name = _record_name("note", i)
        record = None if i % PENDING_EVERY == 0 else _server_record(rng, name)
        yield (name, "note", record, _stamp(BASE_TIME + i * 600 + 30))


def _fill_premigration(src: apsw.Connection, dst: apsw.Connection, rng: random.Random) -> None:
    for pragma in (
        "PRAGMA page_size=4096",
        "PRAGMA journal_mode=DELETE",
        f"PRAGMA user_version={SQLJS_USER_VERSION}",
    ):
        run_script(dst, pragma)
    ids = [r[0] for r in src.execute('SELECT "id" FROM "note" ORDER BY "id"')]
    kept = ids[: max(1, int(len(ids) * PREMIGRATION_FRACTION))]
    cutoff = kept[-1] if kept else 0
    # The extra notes take ids the native database never used again: gaps left by deletions (or,
    # for tiny samples, ids past its sqlite_sequence).
    present = set(ids)
    gaps = [i for i in range(1, cutoff + 1) if i not in present]
    extra = sorted(rng.sample(gaps, EXTRA_NOTES)) if len(gaps) >= EXTRA_NOTES else []
    seq = int(src.execute("SELECT seq FROM sqlite_sequence WHERE name = 'note'").get or 0)
    extra += range(seq + 1, seq + 1 + EXTRA_NOTES - len(extra))
    with dst:
        run_script(dst, SQLJS_SCHEMA)
        dst.executemany(
            "INSERT INTO folder(id, name, createdAt) VALUES (?, ?, ?)",
            src.execute('SELECT "id", "name", "createdAt" FROM "folder" ORDER BY "id"'),
        )
        dst.executemany(
            "INSERT INTO note(id, folderId, title, body, tags, isPinned, createdAt, updatedAt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            src.execute(
                'SELECT "id", "folderId", "title", "body", "tags", "isPinned", "createdAt", "updatedAt" '
                'FROM "note" WHERE "id" <= ? ORDER BY "id"',
                (cutoff,),
            ),
        )
        dst.executemany(
            "INSERT INTO note(id, folderId, title, body, tags, isPinned, createdAt, updatedAt) "
            "VALUES (?, ?, ?, ?, '[]', 0, ?, ?)",
            [
                (
                    i,
                    1,
                    f"{EXTRA_TITLE} {n + 1} — jamais migré 📝",
                    f"Written in the browser on day {i}.\nΣημείωση, заметка, メモ: {rng.random():.6f}",
                    _stamp(BASE_TIME + i * 600),
                    _stamp(BASE_TIME + i * 600 + 60),
                )
                for n, i in enumerate(extra)
            ],
        )
        dst.executemany(
            "INSERT INTO attachment(id, noteId, mimeType, data) VALUES (?, ?, ?, ?)",
            src.execute(
                'SELECT "id", "noteId", "mimeType", "data" FROM "attachment" WHERE "noteId" <= ? ORDER BY "id"',
                (cutoff,),
            ),
        )


def _refuse_existing(path: Path) -> None:
    for p in (path, *_sides(path)):
        if os.path.lexists(p):
            raise FileExistsError(f"{p}: already exists; sample databases are only written to new paths")


def _sides(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in SIDE_FILES]


def _casefold_compare(a: str, b: str) -> int:
    """Stand-in for Swift's localizedCaseInsensitiveCompare."""
    fa, fb = a.casefold(), b.casefold()
    return (fa > fb) - (fa < fb)


def _vocabulary(rng: random.Random) -> list[str]:
    """Most frequent first: the fixed words, then ~1,500 made-up ones (never a reserved word)."""
    real = [w for w in WORDS if w.casefold() not in RESERVED]
    made_up = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(1600)} - set(real))
    rng.shuffle(real)
    rng.shuffle(made_up)
    return real + [w for w in made_up if w not in RESERVED]


def _json_list(items: Sequence[str]) -> str:
    return "[" + ",".join('"' + s + '"' for s in items) + "]"


def _stamp(epoch: int) -> str:
    """A date as GRDB stores it: UTC ``YYYY-MM-DD HH:MM:SS.SSS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime(epoch))


def _record_name(table: str, row_id: int) -> str:
    """A stable CloudKit record name (a UUID, as the app would generate) for a row."""
    digest = hashlib.blake2b(f"{table}:{row_id}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4)).upper()


def _server_record(rng: random.Random, name: str) -> bytes:
    """Archived CKRecord system fields: a constant skeleton, the record name and a random change tag."""
    return CKRECORD_HEAD + name.encode() + rng.randbytes(16)
