"""The conversion plan's data: actions, decisions, copies, search pairs, proofs; read back from a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..db.digest import DigestSpec
from ..fields import as_fields


class Action(StrEnum):
    KEEP = "keep"
    CONVERT = "convert"
    DROP = "drop"
    SKIP = "skip"
    REFUSE = "refuse"
    CARRY = "carry"  # down-conversion: saved in the carry-over database (the old app does not know it)
    FILL = "fill"  # down-conversion: an old NOT NULL column the source lacks, given a [convert] fill value


@dataclass(frozen=True)
class Decision:
    """What happens to one schema object, and why."""

    kind: str
    name: str
    action: Action
    reason: str
    severity: str = "info"  # info, warn, high, critical

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action.value,
            "reason": self.reason,
            "severity": self.severity,
        }

    @classmethod
    def from_json(cls, x: dict[str, str]) -> Decision:
        """A decision saved with ``to_json``."""
        return cls(x["kind"], x["name"], Action(x["action"]), x["reason"], x["severity"])


@dataclass(frozen=True)
class Copy:
    """Move one table's rows from the attached source (``src``) into the target, inside SQLite."""

    table: str
    sql: str
    xfer: bool


@dataclass(frozen=True)
class SearchPair:
    """An FTS table in the source and its searchable counterpart in the target; ``content`` is the table
    whose sync triggers keep the target's index right (None when nothing syncs it)."""

    source: str
    target: str
    columns: tuple[str, ...]
    content: str | None = None
    content_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proof:
    """A statement whose preparation in the target engine compiles a view or a table's triggers."""

    kind: str
    name: str
    sql: str


@dataclass
class Plan:
    """Everything export needs, in execution order, plus the decisions for the report."""

    profile: str
    decisions: list[Decision] = field(default_factory=list)
    pragmas: dict[str, int | str] = field(default_factory=dict)
    create_tables: list[str] = field(default_factory=list)
    early_indexes: list[str] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    after_data: list[str] = field(default_factory=list)
    late_indexes: list[str] = field(default_factory=list)
    virtual_tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    digests: list[DigestSpec] = field(default_factory=list)
    search: list[SearchPair] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)
    collation_map: dict[str, str] = field(default_factory=dict)  # source collation -> the target's (as SQL)
    stand_ins: list[str] = field(default_factory=list)  # declared app functions ("name/arity") kept objects call

    @property
    def refused(self) -> list[Decision]:
        """The objects the target cannot hold and that may not be dropped: a plan with any cannot be built."""
        return [d for d in self.decisions if d.action is Action.REFUSE]

    def findings(self) -> list[Decision]:
        """Decisions a person must know about (anything above info)."""
        return [d for d in self.decisions if d.severity != "info"]

    def dump(self) -> dict[str, Any]:
        """Everything in the plan, for the run directory (``load_plan`` reads it back)."""
        return as_fields(self)

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "decisions": [d.to_json() for d in self.decisions],
            "pragmas": self.pragmas,
            "tables_digested": [s.table for s in self.digests],
        }


def load_plan(data: dict[str, Any]) -> Plan:
    """A plan saved with ``Plan.dump``."""
    d = dict(data)
    d["decisions"] = [Decision.from_json(x) for x in d["decisions"]]
    d["copies"] = [Copy(**x) for x in d["copies"]]
    d["digests"] = [DigestSpec(x["table"], tuple(x["columns"]), x["rowid"]) for x in d["digests"]]
    d["search"] = [
        SearchPair(x["source"], x["target"], tuple(x["columns"]), x["content"], tuple(x["content_columns"]))
        for x in d["search"]
    ]
    d["proofs"] = [Proof(**x) for x in d["proofs"]]
    return Plan(**d)
