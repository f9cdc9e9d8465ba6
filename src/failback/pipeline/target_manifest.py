"""The target's manifest, ``<target>.manifest.json`` beside it: what a web app checks before it takes the file in.

The browser module (``web/`` in the repository) fetches the target and this manifest, checks the size and the
SHA-256, opens the file in the app's sql.js and checks each table's fbd1 digest (as the engines' ``digest``
action computes it) before it stores the file and switches the app's provider to ``provider``. Written by export
and by a rollback's switch, after the target is in place; a manifest that does not describe the file beside it
(an older one, a tampered file) is refused by the module, never trusted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..db.connect import connect
from ..db.digest import DigestSpec, TableDigest, database_digests
from ..db.schema import digest_specs, read_schema
from ..files import sha256_file, write_text

MANIFEST_FORMAT = "failback-target/1"


def manifest_path(target: Path) -> Path:
    """Where the manifest of ``target`` is written: ``<target>.manifest.json``."""
    return target.with_name(target.name + ".manifest.json")


def write_target_manifest(target: Path, provider: str, proved: Sequence[tuple[DigestSpec, TableDigest]] = ()) -> Path:
    """Write the manifest of ``target`` (size, SHA-256, every table's digest spec, rows and fbd1 digest, the
    provider value the app switches to) beside it, atomically; return its path. ``proved``: digests a
    verification of this very file computed (``VerifyReport.proved``), taken for the tables whose spec they
    match; the other tables are digested here."""
    conn = connect(target, readonly=True)
    try:
        specs = digest_specs(read_schema(conn))
    finally:
        conn.close()
    known = dict(proved)
    missing = [s for s in specs if s not in known]
    digests = database_digests(target, missing) if missing else {}
    digests |= {s.table: known[s] for s in specs if s in known}
    doc = {
        "format": MANIFEST_FORMAT,
        "file": target.name,
        "size": target.stat().st_size,
        "sha256": sha256_file(target),
        "provider": provider,
        "tables": [s.to_json() | digests[s.table].to_json() for s in specs],
    }
    path = manifest_path(target)
    write_text(path, json.dumps(doc, indent=1) + "\n")
    return path
