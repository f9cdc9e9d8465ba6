"""The faithful rule: a view or trigger that fails the same way in the source engine as in the target is broken
in the source itself, and is kept as it is with a warning; only a difference between the engines blocks."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from failback.api import export
from failback.db.connect import open_source
from failback.errors import UnsupportedSchemaError
from failback.plan.model import Action

BROKEN = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);"
    "CREATE TABLE log (id INTEGER PRIMARY KEY, what TEXT);"
    "INSERT INTO t VALUES (1, 'x'), (2, 'y');"
    # a GeoPackage-style typo: the body reads a column that does not exist, in every engine
    "CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN INSERT INTO log(what) VALUES (NEW.column_nameIS); END;"
    "CREATE TRIGGER log_ai AFTER INSERT ON log BEGIN SELECT 1; END;"
)


def _db(path: Path, script: str) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA legacy_alter_table = ON")
    conn.execute(script)
    conn.close()
    return path


def _schema(path: Path) -> dict[str, str]:
    conn = open_source(path)
    try:
        return dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL"))
    finally:
        conn.close()


def test_a_trigger_broken_in_the_source_is_kept_with_a_warning(tmp_path: Path) -> None:
    src = _db(tmp_path / "src.sqlite", BROKEN)
    out = tmp_path / "out.sqlite"
    result = export(src, out)
    [d] = [d for d in result.decisions if d.name == "t_ai"]
    assert (d.action, d.severity) == (Action.KEEP, "warn")
    assert "fails the same way in the source" in d.reason and "column_nameIS" in d.reason
    assert _schema(out)["t_ai"] == _schema(src)["t_ai"]  # kept exactly as it is
    [ok] = [d for d in result.decisions if d.name == "log_ai"]
    assert "prepares in" in ok.reason  # its neighbour is proved as usual


def test_a_view_broken_in_the_source_is_kept_and_one_broken_by_the_conversion_is_refused(tmp_path: Path) -> None:
    # a view whose table was renamed away under legacy_alter_table: it fails in the source too
    src = _db(
        tmp_path / "src.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');"
        "CREATE VIEW v AS SELECT a FROM t; ALTER TABLE t RENAME TO t2;",
    )
    result = export(src, tmp_path / "out.sqlite")
    [d] = [d for d in result.decisions if d.name == "v"]
    assert (d.action, d.severity) == (Action.KEEP, "warn") and "no such table: main.t" in d.reason
    # FTS5's rank column: the view works in the source, and not on the FTS4 table the conversion makes
    fts = _db(
        tmp_path / "fts.sqlite",
        "CREATE VIRTUAL TABLE ft USING fts5(a); INSERT INTO ft VALUES ('x');"
        "CREATE VIEW ranked AS SELECT rowid FROM ft ORDER BY rank;",
    )
    with pytest.raises(UnsupportedSchemaError, match="ranked"):
        export(fts, tmp_path / "fts-out.sqlite")
    assert not (tmp_path / "fts-out.sqlite").exists()
