"""Which backups to keep: pure rules over backups (id, label, created) — no files, no clock.

``must_keep`` is the one place that decides what no rule may delete (prune, retention and ``failback status``
all read it), each with its reasons:

* the newest *verified* backup of each label (``source``, ``previous-target``, ``manual``, …). Verified means one
  stored copy passes its manifest's SHA-256 now — a manifest is written only after the copy read back from disk
  matched, so this is the same proof, repeated. The caller passes the check; it is asked newest first, per label,
  only until one passes;
* every backup a resume needs: the snapshot (``source``) of a run that is ``running`` or ``interrupted``;
* every backup an abort restores: the ``previous_target`` of a run ``failback abort`` still accepts;
* the ``carry_over`` of a down-conversion (``convert.schema = "previous"``) that switched or still may: what the old
  schema lacks, which roll-forward puts back;
* every backup an unpaid verification debt is paid from.

``decide`` then applies the retention rules; a backup is kept when any rule keeps it, and every reason is
recorded:

* ``keep_last``: the N newest backups;
* ``keep_within``: every backup younger than a duration (``12h``, ``30d``, ``8w``) at ``now``;
* ``keep_daily``: the newest backup of each of the N most recent days (UTC) that have backups — days
  without a backup do not use up the count;
* ``protected``: what ``must_keep`` returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_DURATION = re.compile(r"\s*(\d+)\s*([hdw])\s*")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
RESUMABLE = ("running", "interrupted")  # run statuses `failback resume` continues
ABORTABLE = (*RESUMABLE, "failed", "source-changed", "refused")  # run statuses `failback abort` undoes
NEEDED_BY = {  # a run's backup role → (what it is to the run, the statuses in which the run still needs it)
    "source": ("the snapshot a resume of", RESUMABLE),
    "previous_target": ("the previous target an abort of", ABORTABLE),
    "carry_over": ("the carry-over (what the old schema lacks, for roll-forward) of", (*ABORTABLE, "done")),
}


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
    label: str = ""


@dataclass(frozen=True)
class RunNeeds:
    """What one run refers to in the backups: its status, its backups by role (``source``,
    ``previous_target``) and the backup its unpaid verification debt is paid from, if any."""

    run: str
    status: str
    backups: Mapping[str, str]
    debt: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What happens to one backup, and why (no reason: it is deleted)."""

    id: str
    created: datetime
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def _newest_first(items: Iterable[Item]) -> list[Item]:
    return sorted(items, key=lambda i: (i.created, i.id), reverse=True)


def must_keep(
    items: Iterable[Item], runs: Iterable[RunNeeds], verified: Callable[[str], bool]
) -> dict[str, tuple[str, ...]]:
    """Every backup id no rule may delete, with its reasons. An id a run needs is listed even when no such
    backup exists (any more): the caller can tell that it is missing."""
    keep: dict[str, list[str]] = {}
    ordered = _newest_first(items)
    for label in dict.fromkeys(i.label for i in ordered):
        newest = next((i for i in ordered if i.label == label and verified(i.id)), None)
        if newest is not None:
            keep.setdefault(newest.id, []).append(f"newest verified backup labelled {label!r}")
    for run in runs:
        for role, bid in run.backups.items():
            what, statuses = NEEDED_BY.get(role, (f"the {role} backup of", RESUMABLE))
            if run.status in statuses:
                keep.setdefault(bid, []).append(f"{what} {run.status} run {run.run} needs")
        if run.debt is not None:
            keep.setdefault(run.debt, []).append(f"the unpaid verification debt of run {run.run} needs")
    return {bid: tuple(reasons) for bid, reasons in keep.items()}


def decide(
    items: Iterable[Item], policy: Policy, now: datetime, protected: Mapping[str, Sequence[str]] | None = None
) -> list[Verdict]:
    """A verdict for every backup, newest first."""
    protected = protected or {}
    within = parse_duration(policy.keep_within)
    days: set[date] = set()
    verdicts = []
    for rank, item in enumerate(_newest_first(items)):
        reasons = []
        if rank < policy.keep_last:
            reasons.append(f"one of the {policy.keep_last} newest")
        if now - item.created < within:
            reasons.append(f"younger than {policy.keep_within}")
        day = item.created.astimezone(UTC).date()
        if day not in days and len(days) < policy.keep_daily:
            days.add(day)
            reasons.append(f"newest of {day.isoformat()}")
        reasons += protected.get(item.id, ())
        verdicts.append(Verdict(item.id, item.created, tuple(reasons)))
    return verdicts


__all__ = ["ABORTABLE", "RESUMABLE", "Item", "Policy", "RunNeeds", "Verdict", "decide", "must_keep", "parse_duration"]
