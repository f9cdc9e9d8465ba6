"""Pruning: delete the backups the retention policy no longer keeps, never one a run still needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, from_os_error
from .keep import run_needs
from .manifest import created_at
from .retention import Item, Policy, Verdict, decide, must_keep
from .sets import list_backups, verify_folder
from .store import StoredSet, config_stores

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["PruneResult", "protected_backups", "prune_backups"]


# -- pruning ------------------------------------------------------------------------------------
@dataclass
class PruneResult:
    """What prune decided for each backup (keep, with why, or delete), the folders it removed, what failed, and
    the leftovers of backups killed while being built that it removed."""

    dry_run: bool
    verdicts: list[Verdict]
    folders: dict[str, list[str]]
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # temp folders of backups killed while being built

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "backups": [
                {
                    "id": v.id,
                    "created": v.created.isoformat(),
                    "action": "keep" if v.keep else "delete",
                    "reasons": list(v.reasons),
                    "folders": self.folders[v.id],
                }
                for v in self.verdicts
            ],
            "removed": self.removed,
            "errors": self.errors,
            "leftovers_removed": self.leftovers,
        }


def protected_backups(entries: list[dict[str, Any]], state_dir: Path) -> dict[str, tuple[str, ...]]:
    """What no retention rule may delete, with the reasons (``retention.must_keep``): ``entries`` are
    ``list_backups``' answer, the runs' needs are read from ``state_dir``."""
    copies = {e["manifest"]["id"]: e["folders"] for e in entries}
    return must_keep(
        [_item(e["manifest"]) for e in entries],
        run_needs(state_dir),
        verified=lambda bid: any(not verify_folder(c) for c in copies[bid]),
    )


def _item(manifest: dict[str, Any]) -> Item:
    return Item(manifest["id"], created_at(manifest), manifest["label"])


def prune_backups(cfg: Config, dry_run: bool = False) -> PruneResult:
    """Delete the backups (all of their folders) that neither the retention rules of ``cfg.backup`` nor
    ``protected_backups`` keep, and what backups killed while being built left in the layers."""
    b = cfg.backup
    try:
        policy = Policy(b.keep_last, b.keep_within, b.keep_daily)
    except ValueError as err:
        raise ConfigError(f"backup.keep_within: {err}") from None
    stores = config_stores(cfg)
    entries = list_backups(stores)
    items = [_item(e["manifest"]) for e in entries]
    verdicts = decide(items, policy, datetime.now(UTC), protected_backups(entries, cfg.state_path))
    copies: dict[str, list[StoredSet]] = {e["manifest"]["id"]: e["folders"] for e in entries}
    result = PruneResult(dry_run, verdicts, {bid: [str(c) for c in found] for bid, found in copies.items()})
    doomed = [] if dry_run else [c for v in verdicts if not v.keep for c in copies[v.id]]
    if not dry_run:
        result.leftovers = [where for store in stores for where in store.clean()]
    for stored in doomed:
        try:
            stored.store.delete(stored.id)
            result.removed.append(str(stored))
        except OSError as err:
            result.errors.append(str(from_os_error(err, f"cannot delete {stored}")))
    return result
