"""``failback fleet demo``: a fleet of sample tenants (each a demo app folder) and its manifest, ``fleet.csv``."""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw

from ..demo import create_demo
from ..errors import InputError
from ..files import ensure_dir, write_text

MARKER = ".failback-fleet-demo"
MANIFEST = "fleet.csv"


def tenant_id(n: int) -> str:
    """The id of the demo fleet's ``n``-th tenant."""
    return f"tenant-{n:05d}"


def damaged_tenants(tenants: int, corrupt: int) -> set[str]:
    """The ids of the ``corrupt`` tenants a demo fleet of ``tenants`` damages, spread evenly (the last one too)."""
    return {tenant_id(round(k * tenants / corrupt) - 1) for k in range(1, corrupt + 1)}


def create_fleet(directory: Path, tenants: int, *, notes: int = 300, corrupt: int = 0) -> Path:
    """Create (or re-create) a demo fleet of ``tenants`` apps in ``directory``/tenants/<id>/, ``corrupt`` of them
    (``damaged_tenants``) with a damaged source database; returns the manifest's path."""
    if tenants < 1 or not 0 <= corrupt <= tenants:
        raise InputError("a demo fleet needs at least one tenant, and at most as many corrupt ones", "")
    if directory.exists():
        if not (directory / MARKER).exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise InputError(
                f"{directory} exists and is not a fleet demo folder; refusing to touch it", "pass another DIRECTORY"
            )
        shutil.rmtree(directory)
    ensure_dir(directory)
    write_text(directory / MARKER, "created by `failback fleet demo`; safe to delete\n")
    damaged = damaged_tenants(tenants, corrupt)
    rows = ["tenant,config"]
    for n in range(tenants):
        config = create_demo(directory / "tenants" / tenant_id(n), notes=notes, liveness=0)
        if tenant_id(n) in damaged:
            damage_database(config.parent / "native.sqlite")
        rows.append(f"{tenant_id(n)},{config.relative_to(directory)}")
    write_text(directory / MANIFEST, "\n".join(rows) + "\n")
    return directory / MANIFEST


def damage_database(path: Path) -> None:
    """Fold the WAL into ``path`` and overwrite the middle of its b-tree pages: the file still opens, its
    quick_check fails."""
    conn = apsw.Connection(str(path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE").fetchall()
        page = int(conn.execute("PRAGMA page_size").get)
        pages = int(conn.execute("PRAGMA page_count").get)
    finally:
        conn.close()
    with path.open("r+b") as fh:
        for n in range(pages // 2, pages - 1, 3):
            fh.seek(n * page + 8)
            fh.write(b"\xa5" * (page // 2))
