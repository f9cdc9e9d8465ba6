"""Waves and the failure budget, as pure functions.

A wave spec is a count (``"5"``) or a percentage of the tenants not yet in a wave (``"10%"``, rounded up, at least
one); the tenants left after the last spec form one more wave. The failure budget of a wave (``max_failures``) is
a count or a percentage of the wave's size (rounded down); each failed tenant weighs 1, a data-safety refusal or a
verification failure 2, and a wave halts the fleet when its weight exceeds the budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..errors import ConfigError

DEFAULT_WAVES = ("1", "1%", "10%", "100%")  # a canary tenant first
DEFAULT_MAX_FAILURES = "2%"
_SPEC = re.compile(r"(\d+)(%?)")
# exit codes of a tenant's run that weigh double: verification failed (1), refused by a data-safety check (3:
# risk gate, damaged source, unsupported schema), source changed during the run (5)
DOUBLE_WEIGHT = frozenset({1, 3, 5})


def _parse(spec: str, what: str) -> tuple[int, bool]:
    m = _SPEC.fullmatch(spec.strip())
    if m is None or (m.group(2) and not 0 < int(m.group(1)) <= 100):
        raise ConfigError(f"{what} {spec!r} is not a count (5) or a percentage (1% to 100%)")
    return int(m.group(1)), bool(m.group(2))


def wave_sizes(total: int, specs: Sequence[str] = DEFAULT_WAVES) -> list[int]:
    """How many tenants each wave takes, in order (they add up to ``total``; no empty wave)."""
    sizes: list[int] = []
    left = total
    for spec in specs:
        n, percent = _parse(spec, "wave")
        size = min(left, max(1, math.ceil(left * n / 100)) if percent else n)
        if size > 0:
            sizes.append(size)
            left -= size
    if left:
        sizes.append(left)
    return sizes


def split_waves(tenants: Sequence[str], specs: Sequence[str] = DEFAULT_WAVES) -> list[list[str]]:
    """``tenants`` (in manifest order) cut into waves."""
    waves, start = [], 0
    for size in wave_sizes(len(tenants), specs):
        waves.append(list(tenants[start : start + size]))
        start += size
    return waves


def failure_budget(spec: str, wave_size: int) -> int:
    """The failure weight a wave of ``wave_size`` tenants may reach without halting the fleet."""
    n, percent = _parse(spec, "max_failures")
    return wave_size * n // 100 if percent else n


def failure_weight(exit_code: int) -> int:
    """What one tenant's outcome weighs against the budget: 0 done, 2 a data-safety refusal or a verification
    failure, 1 any other failure."""
    if exit_code == 0:
        return 0
    return 2 if exit_code in DOUBLE_WEIGHT else 1


def failure_total(exit_codes: Sequence[int]) -> int:
    """The weight of a wave's outcomes so far."""
    return sum(map(failure_weight, exit_codes))


def over_budget(exit_codes: Sequence[int], budget: int) -> bool:
    """Whether a wave's outcomes so far exceed its budget."""
    return failure_total(exit_codes) > budget
