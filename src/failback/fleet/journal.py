"""The fleet journal: which tenant is in which state, in ``<fleet state>/fleet.json`` (written atomically), beside
the fleet's hash-chained audit log, the approvals file and the coordinator's lock.

A tenant is ``pending`` (in no wave yet), ``dispatched`` (handed to a worker since ``since``: a run of it started
after that belongs to this fleet), ``switched``, ``refused`` (a data-safety check said no; nothing switched),
``failed`` or ``lost`` (its worker died, or a run of it was still going: the next ``fleet resume`` runs it again,
through the per-database resume when its run was interrupted). Exactly once holds because the task a worker runs
looks at the tenant's own run directories first: a run since ``since`` that is done is reported, not repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..errors import ConfigError, InputError
from ..files import ensure_dir, write_text
from ..journal import RunLock
from .manifest import load_manifest, plan_fleet
from .waves import failure_budget, split_waves

FINAL = ("switched", "refused", "failed")  # a fleet never runs these tenants again
TO_RUN = ("pending", "dispatched", "lost")


@dataclass
class TenantEntry:
    """One tenant's state in the fleet, and its run's outcome once known."""

    config: str
    wave: int
    state: str = "pending"
    since: str = ""
    run: str = ""
    exit_code: int | None = None
    error: str = ""
    seconds: float | None = None
    worker: str = ""


@dataclass
class FleetState:
    """The whole fleet: its settings, its waves (tenant ids), every tenant's entry, and where the run stands
    (``status``: running, awaiting-approval, halted, done; ``wave``: the wave under way or next)."""

    manifest: str
    created: str
    wave_specs: list[str]
    max_failures: str
    pause_between: bool
    yes: bool
    waves: list[list[str]]
    tenants: dict[str, TenantEntry]
    status: str = "running"
    wave: int = 0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The state as JSON data, sharing this object's lists and values (serialize it, do not keep it): no
        copy of 10,000 entries on every save (a save of 10,000 tenants: ~50 ms instead of ~90)."""
        return {**vars(self), "tenants": {t: vars(e) for t, e in self.tenants.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FleetState:
        tenants = {t: TenantEntry(**e) for t, e in data.pop("tenants").items()}
        return cls(tenants=tenants, **data)

    def counts(self, wave: int | None = None) -> dict[str, int]:
        """How many tenants (of ``wave``, or of the fleet) are in each state."""
        ids = self.waves[wave] if wave is not None else list(self.tenants)
        out = dict.fromkeys(("switched", "refused", "failed", "lost", "dispatched", "pending"), 0)
        for t in ids:
            out[self.tenants[t].state] += 1
        return out


def dispatch_marker() -> str:
    """Now, in the form run ids begin with (a run whose id sorts at or after it started later)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


@dataclass
class FleetJournal:
    """The fleet state folder ``root``: fleet.json, audit.jsonl (+ head), approved.json, lock."""

    root: Path
    lock: RunLock = field(init=False)
    audit: AuditLog = field(init=False)  # one object: it knows which of its records await a sync

    def __post_init__(self) -> None:
        self.lock = RunLock(self.root)
        self.audit = AuditLog(self.root / "audit.jsonl")

    @property
    def path(self) -> Path:
        return self.root / "fleet.json"

    @property
    def metrics(self) -> Path:
        """The fleet's metrics textfile, rewritten after every wave."""
        return self.root / "metrics.prom"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> FleetState:
        """The fleet's state; InputError when this folder holds no fleet."""
        try:
            return FleetState.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(
                f"{self.root} holds no fleet run", "start one with `failback fleet run MANIFEST --state DIR`"
            ) from None

    def save(self, state: FleetState) -> None:
        """Write fleet.json, the audit records appended unsynced before it made durable first."""
        ensure_dir(self.root)
        self.audit.sync()
        write_text(self.path, json.dumps(state.to_json(), separators=(",", ":")) + "\n")

    def start(self, state: FleetState) -> None:
        """Write the journal of a new fleet run and record its start in the fleet audit log."""
        self.save(state)
        self.audit.append("fleet.start", {"manifest": state.manifest, "tenants": len(state.tenants)})

    def approved(self) -> set[int]:
        """The waves (numbered from 1) an operator approved: to start after a pause, or to go on over budget."""
        try:
            return set(json.loads((self.root / "approved.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            return set()

    def approve(self, wave: int) -> None:
        """Approve ``wave`` (numbered from 1) and record it in the fleet audit log."""
        state = self.load()
        if not 1 <= wave <= len(state.waves):
            raise InputError(f"the fleet has waves 1 to {len(state.waves)}, not {wave}", "see `failback fleet status`")
        write_text(self.root / "approved.json", json.dumps(sorted(self.approved() | {wave})) + "\n")
        self.audit.append("fleet.approve", {"wave": wave})


def new_fleet(
    journal: FleetJournal, manifest: Path, wave_specs: list[str], max_failures: str, pause_between: bool, yes: bool
) -> FleetState:
    """Check the manifest (`fleet plan`) and cut it into waves: the state of a new fleet run, not yet written
    (``FleetJournal.start``); refuses when a plan check fails or the folder already holds an unfinished fleet."""
    tenants = load_manifest(manifest)
    failure_budget(max_failures, 1)  # a bad spec is a ConfigError before anything is written
    plan = plan_fleet(tenants)
    if not plan.ok:
        first = plan.problems[0]
        raise ConfigError(
            f"{len(plan.problems)} tenant(s) fail the fleet plan; first: {first.tenant}: {first.problems[0]}",
            f"`failback fleet plan {manifest}` lists them all; fix or remove those rows",
        )
    if journal.exists() and journal.load().status != "done":
        raise InputError(
            f"{journal.root} holds an unfinished fleet run",
            "`failback fleet resume` finishes it; or pass another --state",
        )
    waves = split_waves([t.id for t in tenants], wave_specs)
    wave_of = {t: n for n, wave in enumerate(waves) for t in wave}
    entries = {t.id: TenantEntry(str(t.config), wave_of[t.id]) for t in tenants}
    state = FleetState(
        str(manifest.resolve()),
        datetime.now(UTC).isoformat(timespec="seconds"),
        list(wave_specs),
        max_failures,
        pause_between,
        yes,
        waves,
        entries,
    )
    return state
