"""The collations failback knows, by what they do (pure data and decisions).

An app registers its own collations (GRDB: the Swift/Foundation ones; Anki: ``unicase``; Android: ``LOCALIZED``,
``UNICODE``); no other engine has them. Two things follow from what a collation does, never from a word in its
name:

* the collation the target uses instead (``target_for``): a case-sensitive collation becomes BINARY, a
  case-insensitive one NOCASE. BINARY never makes two distinct values equal, so it cannot merge rows under a
  UNIQUE key or make ``name = 'apple'`` match 'Apple'; NOCASE folds ASCII letters only, so it treats as equal
  no more values than a case-insensitive app collation does. An unknown collation becomes BINARY (the mapping
  that can merge nothing) and is reported, so a person can map it to NOCASE when the app's one ignores case;
* the stand-in failback registers to read a database that uses it (``stand_in``). A stand-in only
  approximates the app's order, so an index on such a collation is never judged by it (see
  ``sqlite.check_integrity``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BUILTIN = frozenset({"BINARY", "NOCASE", "RTRIM"})


@dataclass(frozen=True)
class KnownCollation:
    """A collation some app registers: what it does, and what that means in a target without it."""

    name: str
    does: str
    case_sensitive: bool
    number_aware: bool = False

    @property
    def target(self) -> str:
        return "BINARY" if self.case_sensitive else "NOCASE"

    @property
    def why(self) -> str:
        """Why ``target`` is the right stand-in, and what still differs."""
        if self.case_sensitive:
            why = "case-sensitive, as BINARY is: never merges 'apple' and 'Apple'; sql.js orders by code point"
        else:
            why = "case-insensitive: NOCASE ignores the case of ASCII letters only ('É' and 'é' differ in sql.js)"
        if self.number_aware:
            why += "; number-aware in the app ('report 2' before 'report 10'), not in sql.js"
        return why


KNOWN = {
    c.name.lower(): c
    for c in (
        KnownCollation("swiftCompare", "GRDB: Swift String < and == (Unicode canonical order)", True),
        KnownCollation("swiftCaseInsensitiveCompare", "GRDB: Foundation caseInsensitiveCompare (not localized)", False),
        KnownCollation("swiftLocalizedCompare", "GRDB: Foundation localizedCompare (locale order)", True),
        KnownCollation(
            "swiftLocalizedCaseInsensitiveCompare", "GRDB: Foundation localizedCaseInsensitiveCompare", False
        ),
        KnownCollation(
            "swiftLocalizedStandardCompare",
            "GRDB: Foundation localizedStandardCompare (Finder order: case-insensitive, numbers by value)",
            False,
            number_aware=True,
        ),
        KnownCollation("unicase", "Anki: Unicode case folding", False),
        KnownCollation("LOCALIZED", "Android: ICU collator of the device locale at primary strength", False),
        KnownCollation("UNICODE", "Android: ICU root collator at tertiary strength (case-sensitive)", True),
    )
}


def known(name: str) -> KnownCollation | None:
    """The known collation named ``name`` (SQLite compares collation names case-insensitively)."""
    return KNOWN.get(name.lower())


def is_approximated(name: str) -> bool:
    """Whether failback reads ``name`` through a stand-in (every collation SQLite itself lacks)."""
    return name.upper() not in BUILTIN


def target_for(name: str) -> tuple[str, str]:
    """(collation the target uses for ``name`` when the target lacks it, why)."""
    if (k := known(name)) is not None:
        return k.target, f"{k.does}; {k.why}"
    return "BINARY", (
        "unknown collation: BINARY never treats two distinct values as equal (no rows merged under a UNIQUE key); "
        "if the app's collation ignores case, map it to NOCASE in [convert] collations"
    )


def _casefolded(a: str, b: str) -> int:
    x, y = a.casefold(), b.casefold()
    return (x > y) - (x < y)


def _code_points(a: str, b: str) -> int:
    return (a > b) - (a < b)


def stand_in(name: str) -> Callable[[str, str], int]:
    """The comparison failback registers for ``name``: case-folded for a known case-insensitive collation,
    code points otherwise (as the target's mapping, ``target_for``)."""
    k = known(name)
    return _casefolded if k is not None and not k.case_sensitive else _code_points


@dataclass(frozen=True)
class CollationMerge:
    """Rows a unique key keeps apart in the source that the target's collation would make equal."""

    table: str
    index: str
    mapped: tuple[tuple[str, str], ...]  # (source collation, the target's) of the key's mapped columns
    groups: tuple[tuple[str, ...], ...]  # keys that collide, each as its rows' values

    def message(self) -> str:
        how = ", ".join(f"{src} → {dst}" for src, dst in self.mapped)
        shown = "; ".join(" = ".join(g) for g in self.groups)
        return (
            f"unique index {self.index} on {self.table}: with {how} the target treats as equal keys the source "
            f"keeps apart ({shown}): the build would fail or ON CONFLICT would drop rows"
        )

    def fix(self) -> str:
        names = ", ".join(sorted({src for src, _ in self.mapped}))
        return f"map {names} to BINARY in [convert] collations: the app's collation tells these keys apart"
