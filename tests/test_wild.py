"""Databases nobody on the team wrote: each either converts with identical content or stops with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyproj

from failback.pipeline.export import export_database

from .conftest import file_hashes


def test_proj_db_from_the_pyproj_wheel_converts_with_identical_content(tmp_path: Path) -> None:
    """PROJ's proj.db: 38 tables, 21 indexes, 7 views, 36 triggers (INSTEAD OF triggers on views, RAISE)."""
    src = Path(pyproj.datadir.get_data_dir()) / "proj.db"
    db = tmp_path / "proj.db"
    shutil.copyfile(src, db)
    before = file_hashes(db)
    result = export_database(db, tmp_path / "proj.sqljs.sqlite")
    v = result.verification
    assert v.ok, v.problems
    assert len(v.tables) >= 37 and all(t.ok for t in v.tables)
    proofs = [c for c in v.checks if c.kind.endswith("prepares in sql.js")]
    assert len(proofs) == 43 and all(c.ok for c in proofs)
    assert file_hashes(db) == before
