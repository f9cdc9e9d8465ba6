"""Down-conversion to the old app's schema (pure): what of each source table goes where.

``convert.schema = "previous"``: the target takes the schema the old sql.js app knows (the drift's old schema);
whatever the old app does not know (a table, or a table's columns) goes to the carry-over database beside the
run's backup, with each row's key (its rowid, or the PRIMARY KEY of a WITHOUT ROWID table), so roll-forward can
put it back. An old NOT NULL column without a default that the source lacks needs a value from
``[convert] fill``; without one the down-conversion is refused. Nothing here touches a file:
:mod:`failback.pipeline.downconvert` writes and proves what ``plan_down`` decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..db.schema import Schema, Table, digest_spec
from ..errors import UnsupportedSchemaError
from .model import Action, Decision

FillValue = int | float | str


@dataclass(frozen=True)
class TableSplit:
    """One source table split between the target and the carry-over database: ``key`` joins the two halves (the
    rowid when empty, else the PRIMARY KEY columns of a WITHOUT ROWID table); ``kept``: the columns copied into
    the target's table of the same name (empty with ``in_target`` False: the whole table is carried);
    ``carried``: the columns saved in the carry-over; ``fill``: old columns given a value."""

    table: str
    columns: tuple[str, ...]  # the source's columns, in its order (what its digest covers)
    rowid: bool
    key: tuple[str, ...]
    in_target: bool
    kept: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()
    fill: dict[str, FillValue] = field(default_factory=dict)
    target_rowid: str | None = None  # the name reading the rowid of the target's table (when the key is the rowid)
    copy_rowid: bool = False  # the copy names the rowid (no kept column aliases it in the old table)

    @property
    def carry_columns(self) -> tuple[str, ...]:
        """The carry-over table's columns: the key columns first (a rowid key is the table's own rowid), then
        every carried column not already among them."""
        return (*self.key, *(c for c in self.carried if c not in self.key))


@dataclass
class DownPlan:
    """The old schema's statements to build the target, each source table's split, and the decisions."""

    old_sql: list[str]  # tables, then indexes, views and triggers (created after the data)
    old_tables: list[str]
    user_version: int
    application_id: int
    splits: list[TableSplit] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def refused(self) -> list[Decision]:
        return [d for d in self.decisions if d.action is Action.REFUSE]

    @property
    def carried(self) -> list[TableSplit]:
        """The splits with something in the carry-over database."""
        return [s for s in self.splits if s.carried]

    def dump(self) -> dict[str, Any]:
        """Everything in the plan, for the run directory (``load_down`` reads it back)."""
        return {**asdict(self), "decisions": [d.to_json() for d in self.decisions]}


def load_down(data: dict[str, Any]) -> DownPlan:
    """A plan saved with ``DownPlan.dump``."""
    splits = [
        TableSplit(
            **{**x, **{k: tuple(x[k]) for k in ("columns", "key", "kept", "carried")}},
        )
        for x in data["splits"]
    ]
    decisions = [Decision.from_json(x) for x in data["decisions"]]
    return DownPlan(**{**data, "splits": splits, "decisions": decisions})


def _key(src: Table, old: Table | None) -> tuple[str, ...] | None:
    """The join key of ``src`` (() for the rowid), None when the old table cannot hold the same key."""
    if src.has_rowid:
        return () if old is None or old.has_rowid else None
    pk = tuple(c.name for c in sorted((c for c in src.columns if c.pk), key=lambda c: c.pk))
    if old is not None and {c.name for c in old.columns if c.pk} != set(pk):
        return None
    return pk


def plan_down(source: Schema, old: Schema, fill: dict[str, FillValue] | None = None) -> DownPlan:
    """Decide, for every source table, what the target (at ``old``'s schema) keeps and what is carried over;
    ``fill``: ``"table.column"`` -> the value of an old NOT NULL column the source lacks."""
    fill = {k.lower(): v for k, v in (fill or {}).items()}
    old_tables = {t.name.lower(): t for t in old.user_tables() if t.kind == "table"}
    plan = DownPlan(
        old_sql=[t.sql for t in old_tables.values()]
        + [i.sql for i in old.indexes.values() if i.sql]
        + [v.sql for v in old.views.values()]
        + [t.sql for t in old.triggers.values()],
        old_tables=[t.name for t in old_tables.values()],
        user_version=old.user_version,
        application_id=old.application_id,
    )
    decide = plan.decisions.append
    for src in source.user_tables():
        spec = digest_spec(src)
        if spec is None:
            continue  # no data of its own (external-content or contentless FTS): rebuilt from what it indexes
        o = old_tables.get(src.name.lower())
        key = _key(src, o)
        if key is None:
            decide(Decision("table", src.name, Action.REFUSE, "the old table keys its rows differently", "high"))
            continue
        if o is None or src.kind != "table":
            plan.splits.append(TableSplit(src.name, spec.columns, spec.rowid, key, False, carried=spec.columns))
            why = "the old app does not know it: its rows, with their keys, are saved in the carry-over database"
            decide(Decision("table", src.name, Action.CARRY, why, "warn"))
            continue
        old_cols = {c.name.lower(): c for c in o.visible_columns if not c.generated}
        kept = tuple(c for c in spec.columns if c.lower() in old_cols)
        carried = tuple(c for c in spec.columns if c.lower() not in old_cols)
        for col in carried:
            why = "the old app does not know it: its values, with each row's key, are saved in the carry-over database"
            decide(Decision("column", f"{src.name}.{col}", Action.CARRY, why, "warn"))
        filled: dict[str, FillValue] = {}
        kept_lower = {k.lower() for k in kept}
        for name, oc in old_cols.items():
            if name in kept_lower or not oc.notnull or oc.default is not None or o.rowid_alias == oc.name:
                continue
            where = f"{o.name}.{oc.name}"
            if where.lower() in fill:
                filled[oc.name] = fill[where.lower()]
                why = (
                    f"NOT NULL without a default in the old schema, not in the source: filled with {filled[oc.name]!r}"
                )
                decide(Decision("column", where, Action.FILL, why + " ([convert] fill)", "warn"))
            else:
                why = "NOT NULL without a default in the old schema, not in the source: give it a [convert] fill value"
                decide(Decision("column", where, Action.REFUSE, why, "high"))
        alias = o.rowid_alias
        copy_rowid = spec.rowid and not key and (alias is None or alias.lower() not in {k.lower() for k in kept})
        plan.splits.append(
            TableSplit(src.name, spec.columns, spec.rowid, key, True, kept, carried, filled, o.rowid_name, copy_rowid)
        )
        if not carried:
            decide(Decision("table", src.name, Action.KEEP, "the old app knows every column"))
    for name in old_tables.keys() - {t.name.lower() for t in source.user_tables()}:
        decide(Decision("table", old_tables[name].name, Action.KEEP, "in the old schema only: created empty"))
    return plan


def check_down(plan: DownPlan) -> None:
    """Raise the one-line refusal (exit 3) naming every refused table or column."""
    if plan.refused:
        names = ", ".join(d.name for d in plan.refused)
        raise UnsupportedSchemaError(
            f"cannot down-convert to the old schema: {names}: {plan.refused[0].reason}",
            'set [convert] fill = {"table.column" = value} for each old NOT NULL column, or convert.schema = "source"',
        )
