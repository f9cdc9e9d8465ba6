"""Risk assessment's facts: what is true before anything changes, the findings and the assessment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..db.collations import CollationMerge
from ..fields import as_fields
from .drift import Drift

MB = 1_000_000


# -- facts ----------------------------------------------------------------------------------------
@dataclass
class TableSize:
    """One table: rows (tables only), bytes of its B-trees with their indexes and largest cell (dbstat)."""

    rows: int | None = None
    bytes: int | None = None
    max_payload: int | None = None


@dataclass
class DiskNeed:
    """One file system written by the rest of the rollback: its folders, free bytes and what goes there."""

    folders: list[str]
    free: int
    parts: dict[str, int]

    @property
    def needed(self) -> int:
        return sum(self.parts.values())


@dataclass
class LimitCheck:
    """A value of the database against one of the target profile's limits."""

    limit: str
    allowed: int
    value: int
    where: str


@dataclass
class Pending:
    """Unsynced changes found by a preset (outbox, cloudkit, flag) or a ``sync.pending_sql`` probe."""

    kind: str
    where: str
    count: int | None
    oldest: str | None = None
    error: str = ""


@dataclass(frozen=True)
class SideFiles:
    """What lies beside the live database: -wal and -journal sizes (None when absent), whether -shm exists."""

    wal_bytes: int | None
    journal_bytes: int | None
    shm: bool


@dataclass
class Liveness:
    """What a short watch of the live source saw."""

    seconds: float = 0.0
    wal_mode: bool = False
    writes_seen: int = 0  # watch intervals in which something was committed
    evidence: list[str] = field(default_factory=list)
    wal_growth: int = 0
    writer_pids: list[int] = field(default_factory=list)
    open_pids: list[int] = field(default_factory=list)
    locks_known: bool = False
    hot_journal: int = 0  # bytes of a -journal no writer holds
    wal_without_shm: int = 0  # bytes of a -wal with no -shm beside it
    error: str = ""


@dataclass
class Calibration:
    """Throughput of each step's work on this machine, in MB of snapshot per second."""

    key: dict[str, Any]
    mb_per_s: dict[str, float]
    seconds: float


@dataclass
class Facts:
    """What is true about the source, the snapshot, the target and the machine, before anything changes."""

    mode: str = "standard"
    source_bytes: int = 0
    wal_bytes: int = 0
    snapshot_bytes: int = 0
    target_bytes: int = 0  # estimated size of the converted database
    zstd_ratio: float = 1.0  # zstd at the backup's settings, measured on samples of the snapshot
    zstd_mb_per_s: float = 0.0
    page_size: int = 4096
    free_pages: int = 0
    tables: dict[str, TableSize] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    plan_findings: list[dict[str, str]] = field(default_factory=list)
    memory_warn_bytes: int = 256 * MB
    memory_critical_bytes: int = 1024 * MB
    limits: list[LimitCheck] = field(default_factory=list)
    disk: list[DiskNeed] = field(default_factory=list)
    calibration: Calibration | None = None
    estimates: dict[str, float] = field(default_factory=dict)  # seconds per step
    pending: list[Pending] = field(default_factory=list)
    liveness: Liveness = field(default_factory=Liveness)
    integrity: list[str] | None = None  # quick_check problems; None when not run
    migrations: list[str] = field(default_factory=list)
    old_only_rows: dict[str, int] = field(default_factory=dict)
    collation_merges: list[CollationMerge] = field(default_factory=list)
    shared_disk_mirrors: list[str] = field(default_factory=list)  # backup mirrors on the primary's file system
    big_integers: list[str] = field(default_factory=list)  # table.column holding integers beyond ±(2^53−1)
    drift: list[Drift] = field(default_factory=list)  # the result against the schema the old app knows
    drift_from: str = ""  # where that schema came from ([app] schema or the previous target); "" when unknown
    errors: list[str] = field(default_factory=list)  # facts that could not be read
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One thing the person deciding must know, and what to do about it."""

    severity: str  # info, warn, high, critical
    code: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return as_fields(self)


@dataclass
class Assessment:
    """The findings, the level they add up to, and the facts behind them."""

    level: str
    findings: list[Finding]
    facts: Facts

    @property
    def go(self) -> bool:
        """The gate lets the run proceed without confirmation (risk low or medium)."""
        return self.level in ("low", "medium")

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "go": self.go,
            "findings": as_fields(self.findings),
            "facts": as_fields(self.facts),
        }
