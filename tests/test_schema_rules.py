"""SQLite's own rules, not guesses: which column aliases the rowid, the rowid under reserved column names, and
SQLite's limits (2,000 columns, thousands of tables) — each export + verify checked against SQLite's own reading
of source and target (apsw), and a hypothesis test drawing schemas across all of these rules.

Profiles of the property test: CI (derandomized, a few small examples, run by `make test`); FAILBACK_SOAK=1
(`make soak`) draws many more, larger ones (wide tables up to SQLite's limit, thousands of tables) with a printed
FAILBACK_SOAK_SEED that replays a run."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from failback.db.connect import connect, quote
from failback.db.digest import MAX_COLUMNS, database_digests
from failback.db.schema import read_schema
from failback.pipeline.export import export_database

from .conftest import apsw_digests, digest_specs_of, file_hashes, sqljs_digests
from .test_verify_sources import make_db

ROWID_NAMES = ("_rowid_", "rowid", "oid")


def typed(row: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """A row as SQLite returned it, storage classes kept apart (1, 1.0 and '1' differ; so do 0.0 and -0.0)."""
    return tuple((type(v).__name__, repr(v)) for v in row)


def sqlite_reading(db: Path) -> dict[str, list[tuple[tuple[str, str], ...]]]:
    """Every user table as a reader sees it, in SQLite's own words: ``SELECT _rowid_, rowid, oid, *`` (each name
    reads the rowid, or the column that takes that name; as many as SQLite's 2,000 result columns leave room for)
    for rowid tables, ``SELECT *`` otherwise; sorted rows."""
    conn = connect(db, readonly=True)
    try:
        out = {}
        for _, name, kind, ncol, without_rowid, _strict in conn.execute("PRAGMA main.table_list"):
            if kind != "table" or name.startswith("sqlite_"):
                continue
            keys = "" if without_rowid else "".join(f"{n}, " for n in ROWID_NAMES[: MAX_COLUMNS - ncol])
            out[name] = sorted(typed(r) for r in conn.execute(f"SELECT {keys}* FROM {quote(name)}"))
        return out
    finally:
        conn.close()


def assert_exports_faithfully(src: Path, out: Path, cli: Callable[..., Any] | None = None) -> None:
    """Export (through the real CLI when given) verifies; then SQLite reads the same rows in source and target,
    and sql.js digests the target as apsw digests the source."""
    before = file_hashes(src)
    if cli is None:
        result = export_database(src, out)
        assert result.verification.ok, result.verification.problems
    else:
        res = cli("export", str(src), str(out))
        assert res.returncode == 0, res.stderr
        check = cli("verify", str(src), str(out), "-c", str(out.parent / "none.toml"))
        assert check.returncode == 0, check.stdout[-2000:]
    assert sqlite_reading(out) == sqlite_reading(src)
    specs = digest_specs_of(src)
    assert sqljs_digests(out, specs) == apsw_digests(src, specs)
    assert file_hashes(src) == before


# -- the rowid alias -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("definition", "alias"),
    [
        ("x INTEGER PRIMARY KEY, y", "x"),
        ("x integer primary key asc, y", "x"),
        ("x INTEGER PRIMARY KEY DESC, y", None),  # the DESC quirk: an ordinary key with an index of its own
        ("x INTEGER, y, PRIMARY KEY(x DESC)", "x"),  # as a table constraint, DESC does not matter
        ("x INT PRIMARY KEY, y", None),  # exactly INTEGER
        ("x INTEGER(8) PRIMARY KEY, y", None),
        ("x UNSIGNED INTEGER PRIMARY KEY, y", None),
        ("x INTEGER, y, PRIMARY KEY(x, y)", None),
    ],
)
def test_rowid_alias_is_what_sqlite_makes_it(definition: str, alias: str | None) -> None:
    conn = apsw.Connection(":memory:")
    conn.execute(f"CREATE TABLE t({definition}); INSERT INTO t(x, y) VALUES (5, 'five')")
    assert read_schema(conn).tables["t"].rowid_alias == alias
    is_alias = conn.execute("SELECT rowid = x FROM t").get == 1  # SQLite's answer: x holds the rowid
    assert is_alias == (alias is not None)


def test_integer_primary_key_desc_exports_with_its_rowids(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """``x INTEGER PRIMARY KEY DESC`` is not a rowid alias: taken for one, the rows were copied without their
    rowids and the export of this valid database failed verification (exit 1)."""
    src = make_db(
        tmp_path / "src.sqlite",
        "CREATE TABLE t(x INTEGER PRIMARY KEY DESC, y, z AS (y || '!'));"
        "INSERT INTO t(x, y) VALUES (10, 'a'), (20, 'b'), (30, 'c'); DELETE FROM t WHERE x = 10;",
    )
    assert_exports_faithfully(src, tmp_path / "out.sqlite", cli)


# -- reserved and odd column names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "columns",
    [
        ['"_rowid_" TEXT', "v"],  # exit 70 before: the digest read the column as the rowid
        ['"rowid" TEXT', "v"],
        ['"OID" TEXT', "v"],
        ['"_rowid_" TEXT', '"rowid" TEXT', '"oid" TEXT', "v"],  # no name reads the rowid: no reader sees it
        ['"_rowid_" TEXT', '"rowid" TEXT', '"oid" TEXT', "v", "w AS (v || _rowid_)"],  # generated: not copied
        ['"_rowid_" INTEGER PRIMARY KEY', '"rowid" TEXT', "v"],  # the alias is the column named _rowid_
    ],
)
def test_rowid_names_as_real_columns(tmp_path: Path, cli: Callable[..., Any], columns: list[str]) -> None:
    src = make_db(
        tmp_path / "src.sqlite",
        f"CREATE TABLE t({', '.join(columns)});"
        "INSERT INTO t(v) VALUES ('a'), ('b'), ('c'), ('d'); DELETE FROM t WHERE v = 'b';"
        + "".join(f"UPDATE t SET {quote(n)} = 'n' || v;" for n in ROWID_NAMES if f'"{n}" TEXT' in columns),
    )
    assert_exports_faithfully(src, tmp_path / "out.sqlite", cli)


# -- SQLite's limits -----------------------------------------------------------------------------------------
def wide_table(path: Path, columns: int, rows: int, without_rowid: bool = False) -> Path:
    """A table of ``columns`` columns of every storage class, ``rows`` rows with sparse rowids."""
    names = [f"c{i}" for i in range(columns)]
    suffix = ", PRIMARY KEY(c0)) WITHOUT ROWID" if without_rowid else ")"
    full = columns >= MAX_COLUMNS and not without_rowid
    conn = apsw.Connection(str(path))
    conn.execute(f"CREATE TABLE wide({', '.join(names)}{suffix}")
    values = [lambda r, i: r, lambda r, i: f"t{r}.{i}", lambda r, i: r * i * 1.5, lambda r, i: bytes([r, i % 256])]
    with conn:
        for r in range(rows):
            row = [None if (r + i) % 7 == 0 and i else values[i % 4](r, i) for i in range(columns)]
            key = [] if without_rowid or full else [r * 13 + 1]
            marks = ", ".join("?" * (len(key) + columns))
            conn.execute(f"INSERT INTO wide({'rowid, ' if key else ''}{', '.join(names)}) VALUES ({marks})", key + row)
        if full:  # no room for the rowid in a column list: sparse rowids set afterwards
            conn.execute("UPDATE wide SET rowid = (rowid - 1) * 13 + 1 + ?", (rows,))
    conn.close()
    return path


@pytest.mark.parametrize(
    ("columns", "without_rowid"), [(1000, False), (1999, False), (MAX_COLUMNS, True), (MAX_COLUMNS, False)]
)
def test_wide_tables_are_digested_exported_and_verified(
    tmp_path: Path, cli: Callable[..., Any], columns: int, without_rowid: bool
) -> None:
    """The digest read two result columns per column (value and is-text flag): 1,000 columns exceeded SQLite's
    2,000 and nothing — backup digests, export, verify — worked. Now wide tables are read in column groups."""
    src = wide_table(tmp_path / "src.sqlite", columns, rows=12, without_rowid=without_rowid)
    specs = digest_specs_of(src)
    many = database_digests(src, specs, workers=2, chunk_rows=4)  # a backup's digests: rowid ranges in workers
    assert many == database_digests(src, specs, workers=1)
    assert_exports_faithfully(src, tmp_path / "out.sqlite", cli)


def test_the_longest_rows_survive(tmp_path: Path) -> None:
    """Rows of several MB (TEXT and BLOB) are copied, digested in both engines and verified."""
    src = tmp_path / "src.sqlite"
    conn = apsw.Connection(str(src))
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, t TEXT, b BLOB)")
    conn.execute("INSERT INTO big VALUES (1, ?, ?), (2, ?, NULL)", ("é" * 3_000_000, os.urandom(8 << 20), "x"))
    conn.close()
    assert_exports_faithfully(src, tmp_path / "out.sqlite")


def many_tables(path: Path, n: int) -> Path:
    """``n`` small tables (every tenth with an index and a trigger)."""
    conn = apsw.Connection(str(path))
    with conn:
        for i in range(n):
            conn.execute(
                f"CREATE TABLE t{i}(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t{i}(v) VALUES ('a{i}'), (NULL)"
            )
            if i % 10 == 0:
                conn.execute(
                    f"CREATE INDEX t{i}_v ON t{i}(v); CREATE TRIGGER t{i}_ai AFTER INSERT ON t{i} BEGIN SELECT 1; END"
                )
    conn.close()
    return path


@pytest.mark.timeout(900)
def test_many_tables(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Hundreds of tables: export and verify compare every one."""
    assert_exports_faithfully(many_tables(tmp_path / "src.sqlite", 400), tmp_path / "out.sqlite", cli)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("FAILBACK_SOAK") != "1", reason="the long profile: FAILBACK_SOAK=1 (make soak)")
def test_thousands_of_tables(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """3,000 tables (`make soak`): export and verify compare every one."""
    assert_exports_faithfully(many_tables(tmp_path / "src.sqlite", 3000), tmp_path / "out.sqlite", cli)


# -- the property test ---------------------------------------------------------------------------------------
ODD_NAMES = ["rowid", "_rowid_", "oid", "ROWID", 'q"uote', "it's", "a b", "Ünïcødé", "日本", "select", " ", "[x]", "x"]
KEYS = {  # how a table is keyed: (column definition of "k", table constraint, table option)
    "none": ("", "", ""),
    "alias": ("k INTEGER PRIMARY KEY", "", ""),
    "alias asc": ("k integer primary key asc", "", ""),
    "desc quirk": ("k INTEGER PRIMARY KEY DESC", "", ""),
    "constraint desc": ("k INTEGER", "PRIMARY KEY(k DESC)", ""),
    "int key": ("k INT PRIMARY KEY", "", ""),
    "without rowid": ("k INTEGER NOT NULL PRIMARY KEY", "", " WITHOUT ROWID"),
}
values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12),
    st.binary(max_size=12),
)


@st.composite
def table_sql(draw: Any, name: str, wide: bool) -> str:
    """CREATE + INSERTs of one drawn table: a keying (rowid alias variants, WITHOUT ROWID), odd and reserved
    column names, generated columns, STRICT, and rows with sparse, negative and huge rowids."""
    key = draw(st.sampled_from(sorted(KEYS)))
    column_def, constraint, option = KEYS[key]
    strict = draw(st.booleans())
    if wide:
        names = [f"w{i}" for i in range(draw(st.integers(MAX_COLUMNS - 10, MAX_COLUMNS - 2)))]
    else:
        names = draw(st.lists(st.sampled_from(ODD_NAMES), max_size=4, unique_by=str.lower))
    names = [n for n in names if n.lower() != "k"]
    typ = " ANY" if strict else ""
    defs = [column_def] if column_def else []
    defs += [f"{quote(n)}{typ}" for n in names]
    generated = draw(st.sampled_from(["", "VIRTUAL", "STORED"])) if names and not wide else ""
    if generated:
        defs.append(f"g{typ} AS (typeof({quote(names[0])})) {generated}")
    if not defs:
        defs = [f"v{typ}"]
        names = ["v"]
    options = ", ".join(o for o in (option.strip(), "STRICT" if strict else "") if o)
    create = f"CREATE TABLE {quote(name)}({', '.join(defs + ([constraint] if constraint else []))}) {options}"
    keyed = bool(column_def)
    rowid = "" if key == "without rowid" else next((n for n in ROWID_NAMES if n not in {x.lower() for x in names}), "")
    targets = (["k"] if keyed else []) + ([rowid] if rowid and not keyed else []) + [quote(n) for n in names]
    keys = draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 50), unique=True, max_size=6))
    inserts = []
    for k in keys:
        row = [i if i % 2 else f"s{k}.{i}" for i in range(len(names))] if wide else [draw(values) for _ in names]
        literals = ([str(k)] if keyed or rowid else []) + [_literal(v) for v in row]
        inserts.append(f"INSERT INTO {quote(name)}({', '.join(targets)}) VALUES ({', '.join(literals)})")
    return ";\n".join([create, *inserts])


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return f"x'{v.hex()}'"
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else ("9e999" if v > 0 else "-9e999")
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("'", "''") + "'"


@st.composite
def schemas(draw: Any, soak: bool) -> list[str]:
    """A few tables; now and then one near SQLite's 2,000 columns, or (soak) thousands of small tables."""
    n = draw(st.integers(1, 4))
    wide = draw(st.integers(0, 9)) == 0
    tables = [draw(table_sql(f"t{i}", wide and i == 0)) for i in range(n)]
    if soak and draw(st.integers(0, 19)) == 0:
        tables += [f"CREATE TABLE m{i}(v); INSERT INTO m{i} VALUES ({i})" for i in range(3000)]
    return tables


def check_schema(tables: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="failback-rules-"))
    try:
        src = make_db(work / "src.sqlite", ";\n".join(tables))
        assert_exports_faithfully(src, work / "out.sqlite")
    finally:
        shutil.rmtree(work, ignore_errors=True)


CI = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
SOAK = settings(CI, max_examples=int(os.environ.get("FAILBACK_SOAK_EXAMPLES", "200")), derandomize=False)


@pytest.mark.timeout(300)
@CI
@given(schemas(soak=False))
def test_drawn_schemas_export_as_sqlite_reads_them(tables: list[str]) -> None:
    check_schema(tables)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("FAILBACK_SOAK") != "1", reason="the long profile: FAILBACK_SOAK=1 (make soak)")
def test_drawn_schemas_soak() -> None:
    """Many larger examples; FAILBACK_SOAK_SEED=<printed seed> replays a run."""
    chosen = int(os.environ.get("FAILBACK_SOAK_SEED") or random.randrange(1 << 32))
    print(f"\nFAILBACK_SOAK_SEED={chosen}", flush=True)
    test = seed(chosen)(SOAK(given(schemas(soak=True))(check_schema)))
    try:
        test()
    except BaseException as err:
        err.add_note(f"replay with: FAILBACK_SOAK_SEED={chosen} make soak")
        raise
