"""The sample databases: GRDB-like native file (FTS5, AUTOINCREMENT gaps, WAL) and the sql.js-era file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import apsw
import pytest

from failback.db.connect import connect
from failback.demo import sample
from failback.demo.sample import NativeStats, build_native, build_sqljs_premigration

NOTES = 600


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NativeStats]:
    """A native sample that tests only read (read-only connections keep its -wal as it is)."""
    path = tmp_path_factory.mktemp("native") / "notes.sqlite"
    return path, build_native(path, notes=NOTES, body_words=30)


@pytest.fixture(scope="module")
def premigration(native: tuple[Path, NativeStats]) -> Path:
    path = native[0].parent / "old-sqljs.sqlite"
    build_sqljs_premigration(path, native[0])
    return path


def ro(path: Path) -> apsw.Connection:
    return connect(path, readonly=True)


def ids(conn: apsw.Connection, sql: str, *args: object) -> set[int]:
    return {r[0] for r in conn.execute(sql, args)}


def test_stats_match_the_database(native: tuple[Path, NativeStats]) -> None:
    path, stats = native
    wal_size = Path(f"{path}-wal").stat().st_size  # before any connection could create an empty one
    assert wal_size > 0
    conn = ro(path)
    assert stats.notes == conn.execute("SELECT count(*) FROM note").get
    assert stats.folders == conn.execute("SELECT count(*) FROM folder").get == len(sample.FOLDERS)
    assert stats.attachments == conn.execute("SELECT count(*) FROM attachment").get > 0
    assert stats.max_id == conn.execute("SELECT max(id) FROM note").get
    assert stats.seq == conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'note'").get == NOTES
    assert stats.deleted == NOTES - stats.notes
    assert 0.04 * NOTES <= stats.deleted <= 0.06 * NOTES
    assert stats.bytes == path.stat().st_size + wal_size


def test_sequence_is_ahead_of_max_id(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'note'").get
    assert seq > conn.execute("SELECT max(id) FROM note").get
    gaps = conn.execute("SELECT ? - count(*) FROM note", (seq,)).get
    assert gaps == native[1].deleted


def test_schema_is_grdb_shaped(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    assert conn.execute("PRAGMA user_version").get == sample.NATIVE_USER_VERSION
    assert conn.execute("PRAGMA application_id").get != 0
    assert conn.execute("PRAGMA page_size").get == 4096
    assert conn.execute("PRAGMA journal_mode").get == "wal"
    assert [r[0] for r in conn.execute("SELECT identifier FROM grdb_migrations")] == list(sample.MIGRATIONS)
    objects = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL"))
    assert "COLLATE swiftLocalizedCaseInsensitiveCompare" in objects["folder"]
    assert "COLLATE swiftLocalizedCaseInsensitiveCompare" in objects["note_on_title"]
    assert objects["folder_on_name"] == 'CREATE UNIQUE INDEX "folder_on_name" ON "folder"("name")'
    assert 'WHERE "isPinned"' in objects["note_on_updatedAt_pinned"]
    assert objects["syncState"].endswith("WITHOUT ROWID")
    assert objects["note_ft"] == (
        'CREATE VIRTUAL TABLE "note_ft" USING fts5(title, body, '
        "tokenize='unicode61 remove_diacritics 2', content='note', content_rowid='id')"
    )
    assert objects["__note_ft_ad"] == (
        'CREATE TRIGGER "__note_ft_ad" AFTER DELETE ON "note" BEGIN\n'
        '    INSERT INTO "note_ft"("note_ft", "rowid", "title", "body") '
        'VALUES(\'delete\', old."id", old."title", old."body");\nEND'
    )
    assert {"__note_ft_ai", "__note_ft_au"} <= objects.keys()
    assert conn.execute("PRAGMA integrity_check").get == "ok"
    assert list(conn.execute("PRAGMA foreign_key_check")) == []


def test_sync_state_has_pending_records(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    total, pending = conn.execute(
        "SELECT count(*), sum(lastKnownServerRecord IS NULL) FROM syncState WHERE tableName = 'note'"
    ).get
    assert total == native[1].notes
    assert 0 < pending < total / 10


def test_wal_holds_the_last_commits(native: tuple[Path, NativeStats]) -> None:
    path = native[0]
    wal = Path(f"{path}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    edited = f"SELECT count(*) FROM note WHERE title LIKE '%{sample.EDIT_MARK}'"
    assert ro(path).execute(edited).get == sample.EDITED_NOTES
    # The main file alone (immutable=1 ignores the -wal) does not have them: they live in the -wal only.
    main_only = apsw.Connection(path.as_uri() + "?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    assert main_only.execute(edited).get == 0
    main_only.close()


def test_fts_finds_zebra_in_exactly_the_ids_divisible_by_ten(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    found = ids(conn, "SELECT rowid FROM note_ft WHERE note_ft MATCH 'zebra'")
    expected = ids(conn, "SELECT id FROM note WHERE id % 10 = 0")
    assert found == expected
    assert len(expected) > 0.8 * NOTES / 10


def test_fts_removes_diacritics(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    found = ids(conn, "SELECT rowid FROM note_ft WHERE note_ft MATCH 'cafe'")
    assert found == ids(conn, "SELECT id FROM note WHERE instr(lower(title), 'café')")
    assert found
    assert ids(conn, "SELECT id FROM note WHERE instr(lower(title || body), 'cafe')") == set()


def test_titles_and_bodies_are_varied(native: tuple[Path, NativeStats]) -> None:
    conn = ro(native[0])
    meeting = conn.execute("SELECT avg(instr(title, 'meeting') > 0) FROM note").get
    assert 0.25 < meeting < 0.42
    text = "".join(r[0] for r in conn.execute("SELECT title || body FROM note"))
    for sample_char in ("é", "ñ", "ü", "λ", "и", "東", "🦊"):
        assert sample_char in text
    assert '"' in text and "\n" in text and "'" in text
    sizes = [r[0] for r in conn.execute("SELECT length(data) FROM attachment")]
    assert 0 in sizes and max(sizes) > 1000


def test_fts_integrity_check_passes(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    build_native(path, notes=200)
    conn = connect(path)
    conn.execute("""INSERT INTO note_ft(note_ft) VALUES('integrity-check')""")
    assert conn.execute("PRAGMA integrity_check").get == "ok"


def test_triggers_keep_fts_in_sync(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    build_native(path, notes=200)
    conn = connect(path)
    conn.execute("PRAGMA foreign_keys=ON")

    def match(word: str) -> set[int]:
        return ids(conn, "SELECT rowid FROM note_ft WHERE note_ft MATCH ?", word)

    zebras = match("zebra")
    gone, edited = sorted(zebras)[:2]
    conn.execute("DELETE FROM note WHERE id = ?", (gone,))
    conn.execute("UPDATE note SET body = 'a quokka instead' WHERE id = ?", (edited,))
    conn.execute("UPDATE note SET title = 'Quokka café' WHERE id = 1")
    conn.execute("INSERT INTO note(title, body, createdAt, updatedAt) VALUES ('new', 'zebra quokka', '2024', '2024')")
    new_id = conn.last_insert_rowid()
    assert new_id == 201  # sqlite_sequence, not max(id) + 1
    assert match("zebra") == zebras - {gone, edited} | {new_id}
    assert match("quokka") == {1, edited, new_id}
    conn.execute("""INSERT INTO note_ft(note_ft) VALUES('integrity-check')""")


def test_premigration_file(native: tuple[Path, NativeStats], premigration: Path) -> None:
    old, new = ro(premigration), ro(native[0])
    assert old.execute("PRAGMA journal_mode").get == "delete"
    assert old.execute("PRAGMA user_version").get == sample.SQLJS_USER_VERSION
    assert not Path(f"{premigration}-wal").exists()
    schema = " ".join(r[0] for r in old.execute("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL"))
    assert "VIRTUAL" not in schema.upper() and "fts" not in schema.lower() and "swift" not in schema
    assert {r[0] for r in old.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")} == {
        "folder",
        "note",
        "attachment",
        "sqlite_sequence",
    }
    old_ids = ids(old, "SELECT id FROM note")
    new_ids = ids(new, "SELECT id FROM note")
    only_old = old_ids - new_ids
    assert len(only_old) == sample.EXTRA_NOTES
    assert ids(old, "SELECT id FROM note WHERE title LIKE 'Lost draft%'") == only_old
    carried = old_ids & new_ids
    assert abs(len(carried) - 0.8 * len(new_ids)) <= 1
    assert max(carried) < max(new_ids)
    cols = "id, folderId, title, body, tags, isPinned, createdAt, updatedAt"
    same = f"SELECT {cols} FROM note WHERE id <= {max(carried)} ORDER BY id"
    assert [r for r in old.execute(same) if r[0] in carried] == list(new.execute(same))
    assert old.execute("PRAGMA integrity_check").get == "ok"
    assert list(old.execute("PRAGMA foreign_key_check")) == []


def test_build_is_deterministic(tmp_path: Path) -> None:
    def digest(path: Path) -> str:
        conn = ro(path)
        h = hashlib.sha256()
        for table in ("folder", "note", "attachment", "syncState"):
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                h.update(repr(row).encode())
        return h.hexdigest()

    build_native(tmp_path / "a.sqlite", notes=150, seed=3)
    build_native(tmp_path / "b.sqlite", notes=150, seed=3)
    build_native(tmp_path / "c.sqlite", notes=150, seed=4)
    assert digest(tmp_path / "a.sqlite") == digest(tmp_path / "b.sqlite") != digest(tmp_path / "c.sqlite")


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    build_native(tmp_path / "n.sqlite", notes=1000, progress=lambda done, total: calls.append((done, total)))
    assert 90 <= len(calls) <= 101
    assert calls[-1] == (1000, 1000)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_without_wal(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    stats = build_native(path, notes=100, wal=False)
    assert not Path(f"{path}-wal").exists()
    conn = ro(path)
    assert conn.execute("PRAGMA journal_mode").get == "delete"
    assert stats.bytes == path.stat().st_size


@pytest.mark.parametrize("which", ["native", "premigration"])
def test_refuses_an_existing_path(tmp_path: Path, which: str) -> None:
    source = tmp_path / "source.sqlite"
    build_native(source, notes=50)
    before = sorted(os.listdir(tmp_path))
    target = tmp_path / "taken.sqlite"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        if which == "native":
            build_native(target, notes=50)
        else:
            build_sqljs_premigration(target, source)
    assert target.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "taken.sqlite"])


def test_refuses_a_stale_wal_beside_the_path(tmp_path: Path) -> None:
    target = tmp_path / "n.sqlite"
    Path(f"{target}-wal").write_bytes(b"stale")
    with pytest.raises(FileExistsError):
        build_native(target, notes=10)
    assert not target.exists()
