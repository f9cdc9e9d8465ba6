"""Engines: one small interface, run by native SQLite (apsw, in-process) and by sql.js (Node + WebAssembly).

An engine loads a database file WHOLE into memory (as the browser app loads its sql.js file), runs a list of
actions against that copy and reports one result per action. Nothing is ever written back to the file.

Actions and their results (a failing action gives ``{"ok": False, "error": "<engine's message>"}`` and the
following actions still run):

* ``{"op": "exec", "sql": script}`` → ``{"ok": True}``
* ``{"op": "query", "sql": one statement, "params": [typed], "limit": n, "keep": {"column": i, "prefix": text}}``
  → ``{"ok": True, "columns": [...], "rows": [[typed, ...], ...], "count": n, "digest": "<32 hex>"}``;
  ``rows`` holds at most ``limit`` rows, ``count`` and the order-independent fbd1 ``digest`` cover them all;
  with ``keep`` (optional), only the rows whose value in column ``i`` is TEXT starting with ``text`` (e.g. the
  trigger programs of an ``EXPLAIN``).
* ``{"op": "digest", "tables": [spec, ...]}`` → ``{"ok": True, "tables": [{"table", "rows", "digest"}]}``,
  equal to :func:`failback.db.digest.table_digest`; a spec is ``{"table", "columns": [...], "rowid": bool}``.
* ``{"op": "row_hashes", "table": spec, "order_by": [...] | None}`` → ``{"ok": True, "rows": [[key, hash]]}``
  ordered by rowid (or ``order_by``); compare two with :func:`first_difference`.

Values cross the boundary as typed JSON (:func:`encode_typed` / :func:`decode_typed`): NULL ``None`` ·
INTEGER ``{"int": "<decimal>"}`` · REAL ``{"real": "<text>"}`` · TEXT ``str`` · BLOB ``{"blob": "<hex>"}``.

An engine may also have ``warm()``: start what its first run needs (sql.js: the Node process, the WebAssembly
module); a run calls it in the background beside the snapshot (:func:`warm`).

Engines are found by name in a registry: ``register(name, factory)`` adds one, or an installed package declares
it as an entry point (group ``failback.engines``: ``name = "module:factory"``); ``get_engine(name)`` builds
it, and a capability profile's ``engine`` names the one its target runs in (:func:`failback.profiles.engine_for`).
The built-ins, "sqlite" (apsw), "sqljs" (Node + sql.js), "sqljs-browser" (the same sql.js and actions in
headless Chromium) and "sqlite-wasm" (Node + the official SQLite WASM build, @sqlite.org/sqlite-wasm, through an
adapter giving actions.js sql.js's API), register below and are imported only when first
used; nothing outside this package names their classes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol

from ..db.connect import check_database_file
from ..errors import ConfigError, InputError

__all__ = [
    "BROWSER_ENGINE",
    "SOURCE_ENGINE",
    "Action",
    "Engine",
    "EngineFactory",
    "EngineRun",
    "Result",
    "TypedValue",
    "browser_twin",
    "check_engine_input",
    "decode_typed",
    "encode_typed",
    "first_difference",
    "get_engine",
    "names",
    "register",
    "warm",
    "with_build",
]

Action = dict[str, Any]
Result = dict[str, Any]
TypedValue = None | str | dict[str, str]


@dataclass
class EngineRun:
    """What one engine run produced: one result per action, in order, and how it went."""

    results: list[Result]
    version: str
    peak_rss_bytes: int | None
    seconds: float
    peak_js_heap_bytes: int | None = None  # a browser engine's tab: its JS heap (WebAssembly memory apart)


class Engine(Protocol):
    """A SQLite engine that runs actions against an in-memory copy of a database file."""

    name: str

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        """Load ``database`` (``None``: a fresh empty database) into memory and run ``actions`` on it."""
        ...

    def with_stand_ins(self, functions: Sequence[str]) -> Engine:
        """The same engine with app functions ("name/arity", -1: any arity) registered as stand-ins returning
        NULL, as the app registers the real ones: objects calling them prepare (their values mean nothing)."""
        ...

    def identity(self) -> tuple[str, str]:
        """The name a probe gives this engine's profile and the engine's own version, e.g. ("sqljs-1.16.0",
        "1.16.0")."""
        ...


def warm(engine: Engine) -> None:
    """Let ``engine`` start what its first run needs, in a background thread, if it has such a step (an optional
    ``warm()`` method: sql.js starts its Node process and loads the WebAssembly module); else nothing."""
    start = getattr(engine, "warm", None)
    if callable(start):  # not a daemon: a process ending meanwhile waits for it (~0.2 s), then stops the engine
        threading.Thread(target=start, name=f"failback-{engine.name}-warm").start()


EngineFactory = Callable[[], Engine]
SOURCE_ENGINE = "sqlite"  # the engine that reads the source side (the snapshot) as a native reader does
BROWSER_ENGINE = "sqljs-browser"  # the target engine's job run again in a real browser ([verify] browser)
PLUGIN_GROUP = "failback.engines"  # entry points of installed engine plugins: name = "module:factory"

_FACTORIES: dict[str, EngineFactory] = {}


def register(name: str, factory: EngineFactory) -> None:
    """Make ``factory`` (called with no arguments, once per use) the engine called ``name``: a profile whose
    ``engine`` is ``name`` is proved and verified in it. Registering a name again replaces the factory."""
    _FACTORIES[name] = factory


@functools.cache
def _declare_plugins() -> None:
    """Register each engine an installed package declares in PLUGIN_GROUP (its module is imported when the
    engine is first built); a name already registered keeps its factory."""
    for point in entry_points(group=PLUGIN_GROUP):
        _FACTORIES.setdefault(point.name, functools.partial(_load_plugin, point))


def _load_plugin(point: EntryPoint) -> Engine:
    factory: EngineFactory = point.load()
    return factory()


def names() -> list[str]:
    """The names of the registered engines (plugins included), sorted."""
    _declare_plugins()
    return sorted(_FACTORIES)


def get_engine(name: str) -> Engine:
    """A new engine called ``name``, with default settings; ConfigError naming the known ones when none is."""
    _declare_plugins()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(
            f"no engine named {name!r}",
            f"known engines: {', '.join(names())}; add one with failback.engines.register(name, factory) or "
            f"a {PLUGIN_GROUP!r} entry point",
        )
    return factory()


def with_build(engine: Engine, folder: Path, configured: bool = False) -> Engine:
    """``engine`` running the build in ``folder`` (e.g. a sql.js dist/ folder): its ``with_build(folder)``;
    ``configured``: ``folder`` is ``[target] engine_path``, run unless the engine's own build or its variable
    (FAILBACK_SQLJS_DIR) names one (its ``with_configured_build``). ConfigError for an engine that runs only its
    own build."""
    build = getattr(engine, "with_configured_build" if configured else "with_build", None)
    if build is None:
        where = "[target]" if configured else "the profile"
        raise ConfigError(
            f"engine {engine.name} runs no other build: an engine path is for sql.js engines",
            f"remove engine_path from {where}, or use a sql.js engine",
        )
    result: Engine = build(folder)
    return result


def browser_twin(engine: Engine) -> Engine:
    """The browser engine (BROWSER_ENGINE) running the same build as ``engine`` (e.g. a profile's engine_path);
    ConfigError for an engine the browser page cannot run (its ``browser_harness`` is False)."""
    if not getattr(engine, "browser_harness", True):
        raise ConfigError(
            f"engine {engine.name} has no browser check: the browser page runs sql.js builds",
            "verify it in Node (set [verify] browser = false), or use a sql.js profile",
        )
    browser = get_engine(BROWSER_ENGINE)
    build = getattr(engine, "build", None)
    folder = build() if build else None
    return with_build(browser, folder) if folder else browser


def _sqlite() -> Engine:
    from .sqlite import SqliteEngine

    return SqliteEngine()


def _sqljs() -> Engine:
    from .sqljs import SqlJsEngine

    return SqlJsEngine()


def _sqljs_browser() -> Engine:
    from .sqljs.browser import SqlJsBrowserEngine

    return SqlJsBrowserEngine()


register("sqlite", _sqlite)
register("sqljs", _sqljs)


def _sqlite_wasm() -> Engine:
    from .sqljs.sqlitewasm import SqliteWasmEngine

    return SqliteWasmEngine()


register(BROWSER_ENGINE, _sqljs_browser)
register("sqlite-wasm", _sqlite_wasm)


def check_engine_input(path: Path) -> bool:
    """Check ``path`` is a database file an engine can load whole; return True if its header says WAL.

    Raises InputError/NotADatabaseError for a missing or non-database file, and InputError when a non-empty
    ``-wal`` file lies beside it: loading only the main file would silently drop the commits in it.
    """
    check_database_file(path)
    wal = Path(str(path) + "-wal")
    try:
        wal_size = os.stat(wal).st_size
    except FileNotFoundError:
        wal_size = 0
    if wal_size:
        raise InputError(
            f"{path}: has a non-empty -wal file ({wal_size} bytes); loading the main file alone would drop "
            "the commits in it",
            hint="checkpoint it first (PRAGMA wal_checkpoint(TRUNCATE)) or run the engine on a snapshot",
        )
    with open(path, "rb") as fh:
        header = fh.read(20)
    return header[18] == 2 or header[19] == 2


def encode_typed(v: object) -> TypedValue:
    """Typed JSON for one SQLite value as apsw gives it (None, int, float, str, bytes)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int):  # bool too: SQLite has no boolean
        return {"int": str(int(v))}
    if isinstance(v, float):
        if math.isinf(v):
            return {"real": "Infinity" if v > 0 else "-Infinity"}
        return {"real": "NaN" if math.isnan(v) else repr(v)}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"blob": bytes(v).hex()}
    raise TypeError(f"not a SQLite value: {type(v).__name__}")


def decode_typed(j: object) -> int | float | str | bytes | None:
    """The Python value of typed JSON (the inverse of :func:`encode_typed`)."""
    if j is None or isinstance(j, str):
        return j
    if isinstance(j, dict) and len(j) == 1:
        ((kind, text),) = j.items()
        if isinstance(text, str):
            if kind == "int":
                return int(text)
            if kind == "real":
                return float(text)  # also "Infinity", "-Infinity", "NaN", "-0.0", "1e+21"
            if kind == "blob":
                return bytes.fromhex(text)
    raise ValueError(f"not a typed value: {j!r}")


def _key_label(key: object) -> str:
    if isinstance(key, list):
        return "key (" + ", ".join(repr(decode_typed(k)) for k in key) + ")"
    return f"rowid {decode_typed(key)!r}"


def _groups(rows: list[list[Any]]) -> list[tuple[str, Any, list[str]]]:
    """Consecutive rows with the same key, as (canonical key, key, sorted row hashes)."""
    out: list[tuple[str, Any, list[str]]] = []
    for key, digest in rows:
        canon = json.dumps(key, sort_keys=True)
        if out and out[-1][0] == canon:
            out[-1][2].append(digest)
        else:
            out.append((canon, key, [digest]))
    return [(canon, key, sorted(hashes)) for canon, key, hashes in out]


def first_difference(
    a_rows: list[list[Any]], b_rows: list[list[Any]], a_name: str = "a", b_name: str = "b"
) -> str | None:
    """Describe the first key whose rows differ between two ``row_hashes`` results; None if they agree.

    Both lists must be in the order ``row_hashes`` gives (by rowid or by its ``order_by`` columns); rows that
    share a key (a non-unique ``order_by``) are compared as a multiset.
    """
    a, b = _groups(a_rows), _groups(b_rows)
    a_keys, b_keys = {g[0] for g in a}, {g[0] for g in b}
    i = j = 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and a[i][0] not in b_keys):
            return f"{_key_label(a[i][1])}: in {a_name}, missing in {b_name}"
        if i == len(a) or b[j][0] not in a_keys:
            return f"{_key_label(b[j][1])}: in {b_name}, missing in {a_name}"
        (ca, key, ha), (cb, _, hb) = a[i], b[j]
        if ca != cb:
            return f"{_key_label(key)}: rows come in a different order in {a_name} and {b_name}"
        if ha != hb:
            if len(ha) != len(hb):
                return f"{_key_label(key)}: {len(ha)} row(s) in {a_name}, {len(hb)} in {b_name}"
            hashes = f" (row hash {a_name} {ha[0]}, {b_name} {hb[0]})" if len(ha) == 1 else ""
            return f"{_key_label(key)}: values differ{hashes}"
        i += 1
        j += 1
    return None
