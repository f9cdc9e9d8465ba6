"""What `failback init` proposes from what it found (pure): search terms from FTS text, the app's provider
setting among its config's keys, and the commented failback.toml itself."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..config import AppConfig
from ..db.collations import target_for

TERMS = 5
WORD = re.compile(r"[^\W\d_]{4,}")
_STOPWORD_TEXT = (
    "about after again also because been before being between both could does doing down during each "
    "from further have having here into itself just more most must only other over same should some such "
    "than that their them then there these they this those through under until very were what when where "
    "which while will with would your "
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
ROLLBACK_VALUE = "sqljs"
PATH_SUFFIXES = (".sqlite", ".sqlite3", ".db")


@dataclass(frozen=True)
class FtsFound:
    """A full-text table: its module, where its text lives, and its most frequent words (with counts)."""

    name: str
    module: str
    content: str | None  # None: its own text; "": contentless; else the content table
    words: tuple[tuple[str, int], ...] = ()
    note: str = ""

    @property
    def terms(self) -> list[str]:
        """Its most frequent words: the search terms proposed for it."""
        return [word for word, _ in self.words]


@dataclass(frozen=True)
class AppFound:
    """The app's provider setting: the file, the key, its value now, and the key naming the sql.js file."""

    config: Path
    key: str
    value: str
    path_key: str | None = None
    path_value: str | None = None


@dataclass(frozen=True)
class SyncFound:
    """A known sync layout (assess's presets) and how many rows it finds unsynced now."""

    kind: str
    where: str
    pending: int


@dataclass(frozen=True)
class NativeSurvey:
    """What `failback init` found in a native database and beside it."""

    native: Path  # absolute
    grdb: bool
    tables: int
    fts: tuple[FtsFound, ...]
    collations: tuple[str, ...]
    sync: tuple[SyncFound, ...]
    app: AppFound | None

    def to_json(self) -> dict[str, object]:
        return {
            "native": str(self.native),
            "grdb": self.grdb,
            "tables": self.tables,
            "fts": [{"name": f.name, "module": f.module, "terms": f.terms, "note": f.note} for f in self.fts],
            "collations": list(self.collations),
            "sync": [vars(s) for s in self.sync],
            "app_config": str(self.app.config) if self.app else None,
        }


def frequent_words(texts: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """The most frequent words (4+ letters, lower-cased, no stop words) in ``texts``, most frequent first."""
    counts = Counter(w for text in texts for w in WORD.findall(text.lower()) if w not in STOPWORDS)
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TERMS])


def pick_app_setting(config: Path, settings: Mapping[str, str]) -> AppFound | None:
    """The provider key among an app config's settings (a key named like ``…PROVIDER`` holding a plain word the
    loader accepts), and a key naming the sql.js database file beside it; None when there is no such key."""
    for key, value in sorted(settings.items(), key=lambda kv: "provider" not in kv[0].lower().split(".")[-1]):
        if "provider" not in key.lower():
            continue
        native = value if value != ROLLBACK_VALUE else "native"
        try:
            AppConfig(config=config, key=key, native_value=native)
        except ValidationError:
            continue
        path_key = next(
            (k for k, v in sorted(settings.items()) if "sqljs" in k.lower() and v.lower().endswith(PATH_SUFFIXES)),
            None,
        )
        return AppFound(config, key, native, path_key, settings[path_key] if path_key else None)
    return None


def target_path(survey: NativeSurvey) -> Path:
    """Where the sql.js database goes: the file the app config names for sql.js, else ``<native>-sqljs`` beside
    the native database."""
    if survey.app and survey.app.path_value:
        return survey.app.config.parent / survey.app.path_value
    return survey.native.with_name(f"{survey.native.stem}-sqljs{survey.native.suffix or '.sqlite'}")


def _q(value: object) -> str:
    """A TOML value: JSON strings and arrays of strings are valid TOML basic strings and arrays."""
    return json.dumps(value, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def render_config(survey: NativeSurvey, base: Path, profile: str) -> str:
    """A commented failback.toml for ``survey``, its paths relative to ``base`` (the folder it is written to)."""
    lines = [
        f"# failback.toml written by `failback init` for {survey.native.name}; every key: docs/config.md.",
        "# Paths are relative to this file. Read it through, then run `failback assess -c <this file>`.",
        "",
        "[source]",
        f"path = {_q(_rel(survey.native, base))}  # the live native database (only ever read)"
        + ("; GRDB migrations found" if survey.grdb else ""),
        "",
        "[target]",
        f"path = {_q(_rel(target_path(survey), base))}  # the file the app loads under sql.js",
        f"profile = {_q(profile)}",
        "",
        "[app]",
    ]
    app = survey.app
    if app:
        lines += [
            f"config = {_q(_rel(app.config, base))}  # found beside the database",
            f"key = {_q(app.key)}",
            f"native_value = {_q(app.value)}",
            f"rollback_value = {_q(ROLLBACK_VALUE)}",
        ]
        if app.path_key:
            lines.append(f"path_key = {_q(app.path_key)}  # must name [target] path")
    else:
        lines += [
            "# NOT FOUND: no .env or .json beside the database names a provider key; set these before a rollback",
            f"config = {_q(_rel(survey.native.with_name('app.env'), base))}",
            'key = "DATABASE_PROVIDER"',
        ]
    lines += ["", "[convert]"]
    if survey.collations:
        lines.append("# collations the schema uses that sql.js lacks, and what the target uses instead:")
        for name in survey.collations:
            lines.append(f"#   {name} -> {target_for(name)[0]}: {target_for(name)[1]}")
        mapping = ", ".join(f"{_q(name)} = {_q(target_for(name)[0])}" for name in survey.collations)
        lines.append(f"collations = {{ {mapping} }}")
    fts5 = [f for f in survey.fts if f.module == "fts5"]
    if fts5:
        lines.append('# FTS5 tables (sql.js has no FTS5): "fts4" rebuilds an FTS4 index, "plain" keeps the text only')
        lines.append("fts = { " + ", ".join(f'{_q(f.name)} = "fts4"' for f in fts5) + " }")
    lines += ["allow_drop = []  # objects the target cannot hold that may be dropped", "", "[verify]"]
    for f in survey.fts:
        found = ", ".join(f"{w} ({n})" for w, n in f.words) or f.note or "no words found"
        lines.append(f"# {f.name} ({f.module}): {found}")
    queries = list(dict.fromkeys(w for f in survey.fts for w in f.terms))
    lines += [f"fts_queries = {_q(queries)}  # searched in both engines: the hits must be equal", "queries = []", ""]
    lines.append("[sync]")
    for s in survey.sync:
        lines.append(f"# {s.kind}: {s.where} — {s.pending} pending now")
    if not survey.sync:
        lines.append("# no known sync layout (outbox, CloudKit metadata, sync flags) found")
    lines += [
        "presets = true",
        'pending_sql = []  # your own count of unsynced changes, e.g. "SELECT count(*) FROM outbox"',
        "",
        "[backup]",
        'dir = ".failback/backups"',
        "mirrors = []  # add a folder on another disk",
        "",
    ]
    return "\n".join(lines)
