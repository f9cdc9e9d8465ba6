"""Which backups to keep: pure rules over (id, created) pairs — no files, no clock.

A backup is kept when any rule keeps it, and every reason is recorded:

* ``keep_last``: the N newest backups;
* ``keep_within``: every backup younger than a duration (``12h``, ``30d``, ``8w``) at ``now``;
* ``keep_daily``: the newest backup of each of the N most recent days (UTC) that have backups — days
  without a backup do not use up the count;
* ``protected``: ids the caller must keep whatever the rules say (the newest verified backup, backups an
  unfinished run refers to), with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_DURATION = re.compile(r"\s*(\d+)\s*([hdw])\s*")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str) -> timedelta:
    """``12h``, ``30d`` or ``8w`` as a timedelta; ValueError for anything else."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use a whole number and h, d or w, e.g. 12h, 30d, 8w)")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Policy:
    """The retention rules (``[backup]`` keep_last, keep_within, keep_daily)."""

    keep_last: int
    keep_within: str
    keep_daily: int

    def __post_init__(self) -> None:
        parse_duration(self.keep_within)  # a bad duration fails here, before anything is decided
        if self.keep_last < 0 or self.keep_daily < 0:
            raise ValueError("keep_last and keep_daily must not be negative")


@dataclass(frozen=True)
class Item:
    """One backup as the rules see it; ``created`` must be timezone-aware."""

    id: str
    created: datetime


@dataclass(frozen=True)
class Verdict:
    """What happens to one backup, and why (no reason: it is deleted)."""

    id: str
    created: datetime
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def decide(
    items: Iterable[Item], policy: Policy, now: datetime, protected: Mapping[str, str] | None = None
) -> list[Verdict]:
    """A verdict for every backup, newest first."""
    protected = protected or {}
    within = parse_duration(policy.keep_within)
    days: set[date] = set()
    verdicts = []
    for rank, item in enumerate(sorted(items, key=lambda i: (i.created, i.id), reverse=True)):
        reasons = []
        if rank < policy.keep_last:
            reasons.append(f"one of the {policy.keep_last} newest")
        if now - item.created < within:
            reasons.append(f"younger than {policy.keep_within}")
        day = item.created.astimezone(UTC).date()
        if day not in days and len(days) < policy.keep_daily:
            days.add(day)
            reasons.append(f"newest of {day.isoformat()}")
        if item.id in protected:
            reasons.append(protected[item.id])
        verdicts.append(Verdict(item.id, item.created, tuple(reasons)))
    return verdicts


__all__ = ["Item", "Policy", "Verdict", "decide", "parse_duration"]
