"""The state folder (``state_dir`` in failback.toml), named once: every file and folder failback keeps there.

::

    audit.jsonl       the hash-chained audit log (``audit.head`` and ``audit.lock`` beside it: see failback.audit)
    lock              one run at a time per app (journal.RunLock)
    runs/<id>/        one folder per run (journal.RunDir)
    hold.json         automatic rollbacks held until released (autorollback.hold)
    cooldown.json     automatic rollbacks wait after one ran (autorollback.hold)
    baseline.json     the app's hot-query timings before a rollback (pipeline.postcheck)
    calibration.json  this machine's throughput, cached (assess.calibration)
    metrics.prom      failback's own metrics (failback.metrics), unless [metrics] textfile names another file
    tmp/              work space of restores

failback's temp folders inside it (a calibration's sample, a debt payment's restored snapshot) are named by
their prefixes in failback.guard, which alone removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    """The paths of the state folder ``root``."""

    root: Path

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> Path:
        """The folder of run ``run_id``."""
        return self.runs / run_id

    @property
    def hold(self) -> Path:
        return self.root / "hold.json"

    @property
    def cooldown(self) -> Path:
        return self.root / "cooldown.json"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.prom"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"
