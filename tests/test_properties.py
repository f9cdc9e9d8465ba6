"""Property test: random schemas and data survive conversion identically, read back through apsw and sql.js."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failback.db.connect import quote
from failback.pipeline.export import export_database

from .conftest import apsw_digests, digest_specs_of, sqljs_digests

NAMES = ["a", "b c", 'q"uote', "it's", "select", "Ünïcødé", "日本", "x_1", "order", "group"]
TYPES = ["INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", "", "VARCHAR(10)", "BOOLEAN", "DATETIME"]

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1]),
    st.floats(allow_nan=False),
    st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), 1.0]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    st.sampled_from(["a\x00b", "😀🎉", "", "   ", "1", "1.0"]),
    st.binary(max_size=40),
    st.sampled_from([b"", b"\x00" * 3, bytes(range(256)) * 400]),
)


@st.composite
def tables(draw: Any) -> tuple[str, str, list[str], list[tuple[Any, ...]]]:
    cols = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    types = [draw(st.sampled_from(TYPES)) for _ in cols]
    kind = draw(st.sampled_from(["rowid", "ipk", "without_rowid"]))
    defs = [f"{quote(c)} {t}".strip() for c, t in zip(cols, types, strict=True)]
    if kind == "ipk":
        defs.insert(0, '"id" INTEGER PRIMARY KEY')
    if kind == "without_rowid":
        defs.insert(0, '"k" INTEGER NOT NULL PRIMARY KEY')
    rows = draw(st.lists(st.tuples(*[values for _ in cols]), max_size=12))
    return kind, ", ".join(defs), cols, rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(tables(), min_size=1, max_size=3), st.sampled_from(["UTF-8", "UTF-16le"]))
def test_random_schemas_and_data_survive_conversion(specs: list[Any], encoding: str) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        src = work / "src.sqlite"
        conn = apsw.Connection(str(src))
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        with conn:
            for n, (kind, defs, cols, rows) in enumerate(specs):
                name = f"t {n}" if n % 2 else f"T{n}"
                suffix = " WITHOUT ROWID" if kind == "without_rowid" else ""
                conn.execute(f"CREATE TABLE {quote(name)}({defs}){suffix}")
                names = ", ".join(quote(c) for c in cols)
                marks = ", ".join("?" for _ in cols)
                for i, row in enumerate(rows):
                    if kind == "without_rowid":
                        conn.execute(f"INSERT INTO {quote(name)}(k, {names}) VALUES (?, {marks})", (i, *row))
                    elif kind == "rowid":  # sparse, large rowids must survive too
                        conn.execute(
                            f"INSERT INTO {quote(name)}(rowid, {names}) VALUES (?, {marks})", (i * 7919 + 3, *row)
                        )
                    else:
                        conn.execute(f"INSERT INTO {quote(name)}({names}) VALUES ({marks})", row)
        conn.close()
        out = work / "out.sqlite"
        result = export_database(src, out)  # verifies snapshot = target = sql.js itself
        assert result.verification.ok, result.verification.problems
        # and independently: digests of the source (apsw) equal the target's as sql.js reads it
        specs = digest_specs_of(src)
        assert sqljs_digests(out, specs) == apsw_digests(src, specs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
