"""`failback init`: survey a native database (read-only) and what lies beside it, then write a commented
failback.toml proposed from it (``propose``, pure), never over an existing file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import apsw

from ..assess.pending import count_pending, sync_probes
from ..config import Config
from ..db.connect import open_source, quote
from ..db.schema import Schema, Table, read_schema
from ..errors import FailbackError, InputError
from ..files import write_new_text
from ..pipeline.switch import app_settings
from .propose import AppFound, FtsFound, NativeSurvey, SyncFound, frequent_words, pick_app_setting, render_config

SAMPLE_ROWS = 2000
BUILTIN_COLLATIONS = frozenset({"BINARY", "NOCASE", "RTRIM"})
FTS_MODULES = ("fts3", "fts4", "fts5")
APP_CONFIG_PATTERNS = (".env", "*.env", "*.json")
APP_CONFIG_MAX_BYTES = 1 << 20
SQLITE_MAGIC = b"SQLite format 3\x00"


def find_native(folder: Path) -> Path:
    """The one SQLite database in ``folder`` (by its header), for `failback init` without NATIVE_DB."""
    found = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal")):
            with p.open("rb") as fh:
                if fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                    found.append(p)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise InputError(f"{folder}: {len(found)} SQLite databases found ({names})", "name the native database")
    return found[0]


def _fts_found(conn: apsw.Connection, t: Table) -> FtsFound:
    content = t.fts_content
    if content == "":
        return FtsFound(t.name, t.module or "", content, note="contentless: its text cannot be read back")
    columns = ", ".join(quote(c.name) for c in t.visible_columns)
    try:
        rows = conn.execute(f"SELECT {columns} FROM {quote(t.name)} LIMIT {SAMPLE_ROWS}").fetchall()
    except apsw.Error as err:
        return FtsFound(t.name, t.module or "", content, note=f"cannot be read ({err})")
    words = frequent_words(v for row in rows for v in row if isinstance(v, str))
    return FtsFound(t.name, t.module or "", content, words)


def _survey_schema(conn: apsw.Connection, schema: Schema) -> tuple[tuple[FtsFound, ...], tuple[SyncFound, ...]]:
    fts = tuple(_fts_found(conn, t) for t in schema.user_tables() if t.module in FTS_MODULES)
    sync = []
    for probe in sync_probes(schema):
        pending = count_pending(conn, schema, probe)
        sync.append(SyncFound(probe.kind, probe.where, pending.count or 0))
    return fts, tuple(sync)


def find_app_config(folder: Path) -> AppFound | None:
    """The first .env or .json file in ``folder`` holding a provider key (files that cannot be read are passed)."""
    candidates = sorted({p for pattern in APP_CONFIG_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    for path in candidates:
        if path.stat().st_size > APP_CONFIG_MAX_BYTES:
            continue
        try:
            found = pick_app_setting(path, app_settings(path))
        except FailbackError:
            continue
        if found:
            return found
    return None


def survey_native(native: Path) -> NativeSurvey:
    """Read ``native`` (read-only: the file is never written) and look beside it for the app's config."""
    native = native.resolve()
    conn = open_source(native)
    try:
        schema = read_schema(conn)
        fts, sync = _survey_schema(conn, schema)
    finally:
        conn.close()
    return NativeSurvey(
        native=native,
        grdb="grdb_migrations" in schema.tables,
        tables=sum(t.kind == "table" for t in schema.tables.values()),
        fts=fts,
        collations=tuple(sorted(c for c in schema.collations() if c.upper() not in BUILTIN_COLLATIONS)),
        sync=sync,
        app=find_app_config(native.parent),
    )


def init_config(native: Path | None, out: Path, profile: str) -> NativeSurvey:
    """Survey ``native`` (default: the one database in the current folder) and write ``out``; the text is
    checked with the config loader's model before it is written, and an existing ``out`` is never replaced."""
    survey = survey_native(native if native is not None else find_native(Path.cwd()))
    text = render_config(survey, out.resolve().parent, profile)
    Config.model_validate(tomllib.loads(text))  # a proposal the loader refuses is a bug: fail before writing
    write_new_text(out, text, 0o644)
    return survey


__all__ = ["NativeSurvey", "find_app_config", "find_native", "init_config", "survey_native"]
