"""The streaming digest (fbd1): the batch encoder against the value-by-value definition, the byte-bounded
batches, and digests taken by several processes over rowid ranges (real files, real worker processes)."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path
from typing import Any

import apsw
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from failback.db.connect import connect, read_transaction, run_script
from failback.db.digest import (
    BATCH_BYTES,
    DigestSpec,
    TableDigest,
    database_digests,
    digest_rows,
    encode_columns,
    encode_value,
    table_digest,
)

from .conftest import apsw_digests, digest_specs_of

# A value as apsw returns it, and whether bytes are TEXT read raw (the flag column of DigestSpec.select_sql).
raw_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
)


# One column of a batch: (value, is-text flag) pairs of one storage class, maybe with NULLs, or of any.
CELLS = {
    "integer": st.tuples(st.integers(-(2**63), 2**63 - 1), st.just(0)),
    "real": st.tuples(st.floats(allow_nan=False), st.just(0)),
    "text": st.tuples(st.binary(max_size=40), st.just(1)),
    "blob": st.tuples(st.binary(max_size=40), st.just(0)),
    "null": st.tuples(st.none(), st.just(0)),
    "any": st.tuples(raw_values, st.integers(0, 1)),
}


@st.composite
def batches(draw: st.DrawFn) -> list[list[tuple[Any, int]]]:
    """A batch as columns: each column one kind of cell, some with NULLs mixed in."""
    rows, width = draw(st.integers(1, 30)), draw(st.integers(1, 6))
    columns = []
    for _ in range(width):
        cell = CELLS[draw(st.sampled_from(sorted(CELLS)))]
        if draw(st.booleans()):
            cell = cell | CELLS["null"]
        columns.append(draw(st.lists(cell, min_size=rows, max_size=rows)))
    return columns


@given(batches())
def test_batch_encoder_equals_the_value_by_value_definition(batch: list[list[tuple[Any, int]]]) -> None:
    """Columns of one storage class take the packed path, mixed ones the per-value path; both must give the
    bytes that encode_value defines, value after value."""
    columns = [tuple(v for v, _ in col) for col in batch]
    flags = [tuple(f for _, f in col) for col in batch]
    expected = [b"".join(encode_value(v, f) for v, f in row) for row in zip(*batch, strict=True)]
    assert list(encode_columns(columns, flags)) == expected


@given(st.lists(st.tuples(st.none() | st.text(max_size=20) | st.binary(max_size=5), raw_values), max_size=30))
def test_plain_rows_digest_as_defined(rows: list[tuple[Any, ...]]) -> None:
    """Rows of plain values (a query's): str is TEXT (as UTF-8), bytes are BLOBs."""
    total = sum(xxhash.xxh3_128_intdigest(b"".join(map(encode_value, row))) for row in rows) % (1 << 128)
    assert digest_rows(rows) == (len(rows), total)


def _notes(path: Path, rows: int, encoding: str = "UTF-8") -> Path:
    """A rowid table with gaps and negative rowids, a WITHOUT ROWID table, an empty table, a blob table."""
    conn = connect(path, create=True)
    run_script(
        conn,
        f"""PRAGMA encoding = '{encoding}';
        CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT, body TEXT, score REAL, folder INTEGER);
        CREATE TABLE tag(name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
        CREATE TABLE empty(a, b);
        CREATE TABLE file(data BLOB);
        WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < {rows})
        INSERT INTO note SELECT n * 3 - {rows}, 'title ' || n, printf('%.*c', n % 200, 'x'),
            iif(n % 7 = 0, NULL, n / 3.0), iif(n % 5 = 0, NULL, iif(n % 11 = 0, 'x' || n, n)) FROM i;
        INSERT INTO tag SELECT 'tag' || id, id FROM note WHERE id % 10 = 0;
        INSERT INTO file SELECT randomblob(id % 300) FROM note WHERE id % 4 = 0;
        INSERT INTO note(id, title)
            VALUES (9223372036854775807, CAST(x'ff00fe' AS TEXT)), (-9223372036854775808, x'00');""",
    )
    conn.close()
    return path


def _pairs(digests: dict[str, TableDigest]) -> dict[str, tuple[int, str]]:
    return {t: (d.rows, d.digest) for t, d in digests.items()}


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16le"])
def test_ranges_in_worker_processes_add_up_to_the_table(tmp_path: Path, encoding: str) -> None:
    db = _notes(tmp_path / "notes.sqlite", 3000, encoding)
    specs = digest_specs_of(db)
    whole = apsw_digests(db, specs)
    assert whole["note"][0] == 3002 and whole["empty"][0] == 0
    # the extreme rowids span the whole 64-bit range: the ranges must still cover it exactly
    assert _pairs(database_digests(db, specs, workers=2, chunk_rows=1 << 62)) == whole
    assert _pairs(database_digests(db, specs, workers=2, chunk_rows=500)) == whole
    assert _pairs(database_digests(db, specs, workers=1, chunk_rows=500)) == whole


def test_a_commit_during_the_parallel_digest_is_not_torn(tmp_path: Path) -> None:
    """A writer sets every row to its generation, one transaction per generation: a digest taken in ranges
    by several processes must still equal the digest of one whole generation."""
    db = tmp_path / "live.sqlite"
    writer = connect(db, create=True)
    run_script(
        writer,
        """PRAGMA journal_mode = wal; CREATE TABLE t(id INTEGER PRIMARY KEY, gen INTEGER);
        WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 2000)
        INSERT INTO t SELECT n, 0 FROM i;""",
    )
    stop, generations = threading.Event(), [0]

    def write() -> None:
        while not stop.wait(0.002):
            with writer:
                writer.execute("UPDATE t SET gen = ?", (generations[-1] + 1,))
            generations.append(generations[-1] + 1)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        results = [database_digests(db, digest_specs_of(db), workers=2, chunk_rows=50)["t"] for _ in range(4)]
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert len(generations) > 10  # the writer did commit while the digests ran
    whole = {f"{digest_rows([(i, i, g) for i in range(1, 2001)])[1]:032x}" for g in generations}
    assert all(d.rows == 2000 and d.digest in whole for d in results)


def test_a_corrupt_page_stops_the_workers_with_the_engine_error(tmp_path: Path) -> None:
    db = _notes(tmp_path / "notes.sqlite", 20000)
    specs = digest_specs_of(db)
    conn = connect(db, readonly=True)
    page_size = conn.execute("PRAGMA page_size").get
    leaf = conn.execute("SELECT max(pageno) FROM dbstat WHERE name = 'note' AND pagetype = 'leaf'").get
    conn.close()
    data = bytearray(db.read_bytes())
    data[(leaf - 1) * page_size : leaf * page_size] = b"\xa5" * page_size
    db.write_bytes(bytes(data))
    with pytest.raises(apsw.CorruptError):
        apsw_digests(db, specs)
    with pytest.raises(apsw.CorruptError):
        database_digests(db, specs, workers=2, chunk_rows=1000)


def test_batches_are_bounded_by_bytes(tmp_path: Path) -> None:
    """Python holds about one batch of rows at a time, however large the table."""
    db = _notes(tmp_path / "notes.sqlite", 120000)
    conn = connect(db, readonly=True)
    table_bytes = conn.execute("SELECT sum(octet_length(title) + octet_length(body) + 24) FROM note").get
    spec = DigestSpec("note", ("id", "title", "body", "score", "folder"), True)
    tracemalloc.start()
    try:
        d = table_digest(conn, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conn.close()
    assert d.rows == 120002
    assert table_bytes > 20 * BATCH_BYTES
    assert peak < 8 * BATCH_BYTES


def test_read_transaction_holds_one_view_and_ends_quietly(tmp_path: Path) -> None:
    """Reads inside ``read_transaction`` see one state of the file (a commit made meanwhile shows after it), an
    enclosing transaction is left as it is, and the end raises nothing after a read failed on a damaged page."""
    db = tmp_path / "wal.sqlite"
    writer = connect(db, create=True)
    run_script(writer, "PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    reader = connect(db, readonly=True)
    with read_transaction(reader):
        assert reader.execute("SELECT count(*) FROM t").get == 1
        writer.execute("INSERT INTO t VALUES (2)")
        assert reader.execute("SELECT count(*) FROM t").get == 1  # the view the transaction began with
    assert not reader.in_transaction
    assert reader.execute("SELECT count(*) FROM t").get == 2
    reader.execute("BEGIN")
    with read_transaction(reader):
        pass
    assert reader.in_transaction  # the caller's transaction is the caller's to end
    reader.execute("COMMIT")
    writer.close()
    reader.close()

    damaged = tmp_path / "damaged.sqlite"
    c = connect(damaged, create=True)
    run_script(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
    run_script(
        c,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
        " INSERT INTO t(body) SELECT printf('%.500c', 'x') FROM n",
    )
    c.close()
    with damaged.open("r+b") as fh:  # wreck a leaf page of t
        fh.seek(4096 * 20)
        fh.write(b"\x0d\x00\x00\xff\xff\xff\xff\xff" + b"\xab" * 64)
    conn = connect(damaged, readonly=True)
    with read_transaction(conn), pytest.raises(apsw.CorruptError):
        conn.execute("SELECT count(*), sum(length(body)) FROM t").fetchall()
    assert not conn.in_transaction
    conn.close()
