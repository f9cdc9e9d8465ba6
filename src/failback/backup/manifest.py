"""A backup's manifest: written last into its set, read back and checked field by field.

A manifest is data: it is parsed as JSON and checked field by field; no path in it is ever used — the data
always is the object ``DATA`` of the set the manifest sits in, and that set must be named by the manifest's id
(in a LocalStore: a real folder, not a symlink, directly inside a layer).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BackupError
from ..snapshot import _mb
from .store import MANIFEST, StoredSet, stored_set

__all__ = ["read_manifest"]

DATA = "snapshot.sqlite.zst"
FORMAT = 1
MANIFEST_MAX = 16 << 20
KINDS = ("raw", "compressed")  # the two forms a manifest records a checksum and a size for
ID_PATTERN = re.compile(r"\d{8}T\d{6}-[A-Za-z0-9_-]{1,40}-[0-9a-f]{6}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _manifest(bid: str, label: str, source: Path, raw_sha: str, zsha: str, raw: int, zsize: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "id": bid,
        "label": label,
        "created": datetime.now(UTC).isoformat(timespec="microseconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "tool": f"failback {__version__}",
        "source": str(source),
        "file": DATA,
        "sha256": {"raw": raw_sha, "compressed": zsha},
        "bytes": {"raw": raw, "compressed": zsize},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """A manifest as stored (sorted keys, indented JSON)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


# -- reading backups back -----------------------------------------------------------------------
def read_manifest(copy: StoredSet | str | os.PathLike[str]) -> dict[str, Any]:
    """The checked manifest of one stored copy (or backup folder); a missing or invalid one means the backup does
    not exist there."""
    stored = stored_set(copy)
    try:
        with stored.open(MANIFEST) as fh:
            text = fh.read(MANIFEST_MAX + 1)
    except FileNotFoundError:
        raise BackupError(f"{stored}: no manifest: not a complete backup") from None
    except OSError as err:
        raise BackupError(f"{stored}: unreadable manifest ({err.strerror or err})") from None
    if len(text) > MANIFEST_MAX:
        raise BackupError(f"{stored}: invalid manifest (larger than {_mb(MANIFEST_MAX)})")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise BackupError(f"{stored}: unreadable manifest ({str(err)[:200] or type(err).__name__})") from None
    problem = _manifest_problem(data, stored.id)
    if problem:
        raise BackupError(f"{stored}: invalid manifest ({problem})")
    return dict(data)


def _manifest_problem(m: Any, folder_name: str) -> str | None:
    """Why ``m`` is not a manifest this version can trust, or None."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        return f"not a format {FORMAT} manifest"
    if not isinstance(m.get("id"), str) or not ID_PATTERN.fullmatch(m["id"]) or m["id"] != folder_name:
        return "its id is not the name of its folder"
    if m.get("file") != DATA:
        return f"the data file must be {DATA}"
    sha, size = m.get("sha256"), m.get("bytes")
    if not isinstance(sha, dict) or not all(isinstance(sha.get(k), str) and _HEX64.fullmatch(sha[k]) for k in KINDS):
        return "bad sha256"
    if not isinstance(size, dict) or not all(type(size.get(k)) is int and size[k] >= 0 for k in KINDS):
        return "bad bytes"
    if not isinstance(m.get("label"), str) or not isinstance(m.get("tables"), dict):
        return "bad label or tables"
    found = m.get("quick_check", [])
    if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
        return "bad quick_check"
    try:
        if not isinstance(m.get("created"), str) or datetime.fromisoformat(m["created"]).tzinfo is None:
            return "created is not a time with a zone"
    except ValueError:
        return "created is not a time"
    return None


def created_at(manifest: dict[str, Any]) -> datetime:
    """When a (checked) backup was made."""
    return datetime.fromisoformat(manifest["created"])
