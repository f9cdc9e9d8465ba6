"""What a rollback mode means, decided once: ``standard`` proves everything before the switch; ``emergency``
switches sooner and records what it deferred as verification debt (paid later by ``verify --debt``).

Every step reads the run's ``ModePolicy``; nothing else compares a mode's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError


@dataclass(frozen=True)
class ModePolicy:
    """The behaviours that differ between modes (None: the config's own setting)."""

    name: str
    all_layers: bool  # back up to every layer (else the first one only)
    min_layers: int | None  # backup layers that must verify
    zstd_level: int | None  # compression level of the backup
    backup_digests: bool  # the backup computes content digests (else the verification debt does, from the backup)
    verify_level: Literal["quick", "standard"]  # what quick skips is recorded as verification debt
    calibrate: bool  # assess measures this machine's throughput when none is cached
    dbstat: bool  # assess reads table and index sizes from dbstat
    quick_check: bool  # assess runs quick_check on the snapshot

    def layers(self, configured: list[Path]) -> list[Path]:
        """The backup layers a run in this mode writes, of the ``configured`` ones."""
        return configured if self.all_layers else configured[:1]

    def skipped_facts(self) -> list[str]:
        """The slow assessment facts this mode does not read (calibration is told apart: it may be cached)."""
        return [name for name, read in (("dbstat", self.dbstat), ("quick_check", self.quick_check)) if not read]


STANDARD = ModePolicy(
    "standard",
    all_layers=True,
    min_layers=None,
    zstd_level=None,
    backup_digests=True,
    verify_level="standard",
    calibrate=True,
    dbstat=True,
    quick_check=True,
)
EMERGENCY = ModePolicy(
    "emergency",
    all_layers=False,
    min_layers=1,
    zstd_level=1,
    backup_digests=False,
    verify_level="quick",
    calibrate=False,
    dbstat=False,
    quick_check=False,
)
MODES = {m.name: m for m in (STANDARD, EMERGENCY)}


def mode_policy(name: str) -> ModePolicy:
    """The policy of mode ``name``; ConfigError (exit 2) for an unknown mode."""
    try:
        return MODES[name]
    except KeyError:
        raise ConfigError(f"unknown mode {name!r}", f"use one of: {', '.join(MODES)}") from None
