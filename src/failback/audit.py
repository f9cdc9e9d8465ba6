"""A tamper-evident audit log: JSON lines, each carrying the SHA-256 of the previous line's record.

Each record is ``{"seq", "time", "run", "event", "data", "prev", "hash"}`` where ``hash`` is the SHA-256 of
the canonical JSON (sorted keys, no spaces) of the record without ``hash``. Editing, removing or reordering
a line breaks the chain at that line. Appends rewrite the file under a temp name (fsync, rename), so a crash
never leaves a torn line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .files import ensure_dir, write_bytes

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    """The hash of a record (its ``hash`` field excluded)."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class AuditLog:
    """Append-only, hash-chained log at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []

    def append(self, event: str, data: dict[str, Any] | None = None, run: str | None = None) -> dict[str, Any]:
        """Add one event; returns the record written."""
        lines = self._lines()
        last = json.loads(lines[-1]) if lines else None
        record: dict[str, Any] = {
            "seq": (last["seq"] + 1) if last else 1,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run": run,
            "event": event,
            "data": data or {},
            "prev": last["hash"] if last else GENESIS,
        }
        record["hash"] = record_hash(record)
        ensure_dir(self.path.parent)
        body = b"".join(line + b"\n" for line in lines) + _canonical(record) + b"\n"
        write_bytes(self.path, body)
        return record

    def records(self, run: str | None = None) -> list[dict[str, Any]]:
        """All records (of one run when ``run`` is given)."""
        out = [json.loads(line) for line in self._lines() if line.strip()]
        return [r for r in out if run is None or r.get("run") == run]


@dataclass
class ChainCheck:
    ok: bool
    records: int
    problem: str = ""


def verify_chain(path: Path) -> ChainCheck:
    """Check every line's hash and link; the first broken line is named."""
    prev = GENESIS
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return ChainCheck(True, 0)
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            return ChainCheck(False, n - 1, f"line {n}: not valid JSON")
        if not isinstance(rec, dict) or rec.get("prev") != prev:
            return ChainCheck(False, n - 1, f"line {n}: does not follow line {n - 1} (removed or reordered)")
        if rec.get("hash") != record_hash(rec):
            return ChainCheck(False, n - 1, f"line {n}: content does not match its hash (edited)")
        prev = rec["hash"]
    return ChainCheck(True, len(lines))
