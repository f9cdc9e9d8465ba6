"""as_fields gives what dataclasses.asdict gives, on a real plan and on every kind of value asdict handles."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from failback.db.connect import connect
from failback.db.schema import read_schema
from failback.fields import as_fields
from failback.plan.planner import plan_conversion
from failback.profiles import load_profile


class Kind(StrEnum):
    A = "a"


class Pair(NamedTuple):
    x: int
    y: list[int]


@dataclass
class Inner:
    name: str
    values: tuple[float, ...] = (1.5, 2.0)


@dataclass
class Outer:
    kind: Kind
    inner: Inner
    items: list[Inner]
    by_key: dict[tuple[str, int], Inner]
    pair: Pair
    tags: set[str] = field(default_factory=lambda: {"t"})
    blob: bytes = b"\x00"
    nothing: None = None
    flag: bool = True
    extra: Any = field(default_factory=lambda: [{"k": [1, Inner("deep")]}])


def test_every_kind_of_value_as_asdict_gives_it() -> None:
    value = Outer(Kind.A, Inner("i"), [Inner("j", (3.0,))], {("k", 1): Inner("v")}, Pair(1, [2]))
    got = as_fields(value)
    assert got == asdict(value)
    assert type(got["pair"]) is Pair and got["kind"] is Kind.A
    assert got["tags"] is not value.tags and got["pair"].y is not value.pair.y  # copies, as asdict makes
    got["items"][0]["name"] = "changed"
    assert value.items[0].name == "j"


def test_a_real_plan_dumps_as_asdict_dumps_it(native_db: Path) -> None:
    conn = connect(native_db, readonly=True)
    try:
        plan = plan_conversion(read_schema(conn), load_profile("sqljs-1.16.0"))
    finally:
        conn.close()
    assert plan.decisions and plan.copies
    assert json.dumps(plan.dump(), indent=2) == json.dumps(asdict(plan), indent=2)
