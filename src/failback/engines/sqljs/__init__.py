"""The target engine: real sql.js 1.16.0 (SQLite compiled to WebAssembly) run by Node on a copy of the file.

``runner.js`` beside this file does the work, in a Node process kept for the next run (:mod:`.session`); its
header comment describes the JSON protocol. The Node packages are pinned in ``package.json``/``package-lock.json``;
the wheel carries the files the runner loads (:mod:`.nodefiles`), a checkout installs them with ``make deps``.
Another sql.js build (a folder holding ``sql-wasm.js`` and ``sql-wasm.wasm``) is run when named, first found first:
the profile's ``engine_path`` (the build it was probed in), ``FAILBACK_SQLJS_DIR``, ``[target] engine_path``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import EngineError, FailbackError, NodeNotFound, NotADatabaseError
from .. import Action, EngineRun, check_engine_input
from . import session
from .nodefiles import NODE_FILES, VENDOR_DIR

RUNNER_DIR = Path(__file__).resolve().parent
RUNNER = RUNNER_DIR / "runner.js"
SQLJS_DIR_VARIABLE = "FAILBACK_SQLJS_DIR"


def build_dir(folder: Path | None = None, configured: Path | None = None) -> Path | None:
    """The sql.js build to run instead of the pinned one: ``folder``, else ``FAILBACK_SQLJS_DIR``, else
    ``configured`` (``[target] engine_path``); None: none."""
    named = folder or os.environ.get(SQLJS_DIR_VARIABLE) or configured
    return Path(named) if named else None


def package_file(package: str) -> Path:
    """The first file the runner loads of a pinned Node package (:data:`NODE_FILES`): the copy vendored in the
    wheel (``vendor/<package>/``), else a checkout's ``node_modules``; EngineError when neither holds them."""
    names = NODE_FILES[package]
    vendored = [RUNNER_DIR / VENDOR_DIR / package / Path(name).name for name in names]
    checkout = [RUNNER_DIR / "node_modules" / package / name for name in names]
    files = vendored if all(f.is_file() for f in vendored) else checkout
    if not all(f.is_file() for f in files):
        raise EngineError(
            f"the Node package {package} is missing: neither vendor/ nor node_modules/ beside {RUNNER} holds its files",
            hint="reinstall failback from its wheel (it ships them); in a checkout run `make deps`; or set "
            "FAILBACK_SQLJS_DIR to a sql.js build",
        )
    return files[0]


def runner_modules(folder: Path | None = None, configured: Path | None = None) -> dict[str, Path]:
    """The file the runner loads of each Node package (sql.js: ``sql-wasm.js``, the ``.wasm`` beside it).

    Looked up in order: sql.js in the folder :func:`build_dir` gives, then :func:`package_file`. Raises
    EngineError when none holds a package's files.
    """
    modules: dict[str, Path] = {}
    override = build_dir(folder, configured)
    for package, names in NODE_FILES.items():
        if package == "sql.js" and override:
            files = [Path(override, Path(name).name) for name in names]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                named = f"{SQLJS_DIR_VARIABLE}={override}"
                if override in (folder, configured):
                    named = f"engine path {override}"
                raise EngineError(
                    f"{named} is not a sql.js build: no {' and no '.join(missing)} in it",
                    hint="point it at a folder holding sql-wasm.js and sql-wasm.wasm (sql.js's dist/), or unset it to "
                    "use the sql.js failback ships",
                )
            modules[package] = files[0]
        else:
            modules[package] = package_file(package)
    return modules


class SqlJsEngine:
    """Runs engine actions inside sql.js under Node (see :mod:`failback.engines`), in a kept Node process."""

    name: str = "sqljs"

    def __init__(
        self,
        node: str = "node",
        timeout: float | None = None,
        legacy_functions: bool = False,
        stand_ins: Sequence[str] = (),
        sqljs_dir: Path | None = None,
        configured_dir: Path | None = None,
    ) -> None:
        """``node``: the Node executable (name on PATH or a path); ``timeout``: seconds per run (None: no
        limit); ``legacy_functions``: load sql.js 1.x's deprecated extension functions, as an app that
        initialises sql.js with its defaults has them (they also change some native ones: ``log(x)`` is ln);
        ``stand_ins``: app functions ("name/arity") registered as the app does, each returning NULL;
        ``sqljs_dir``: a sql.js build to run (a folder with sql-wasm.js and .wasm; default: FAILBACK_SQLJS_DIR,
        else the pinned sql.js); ``configured_dir``: ``[target] engine_path``, the build run when neither
        ``sqljs_dir`` nor FAILBACK_SQLJS_DIR names one.
        """
        self.node = node
        self.timeout = timeout
        self.legacy_functions = legacy_functions
        self.stand_ins = tuple(stand_ins)
        self.sqljs_dir = sqljs_dir
        self.configured_dir = configured_dir

    def with_stand_ins(self, functions: Sequence[str]) -> SqlJsEngine:
        """A copy of this engine (a subclass stays one) with ``functions`` registered as stand-ins too."""
        clone = copy.copy(self)
        clone.stand_ins += tuple(f for f in functions if f not in self.stand_ins)
        return clone

    def with_build(self, folder: Path) -> SqlJsEngine:
        """A copy of this engine running the sql.js build in ``folder`` (sql-wasm.js and sql-wasm.wasm)."""
        clone = copy.copy(self)
        clone.sqljs_dir = Path(folder)
        return clone

    def with_configured_build(self, folder: Path) -> SqlJsEngine:
        """A copy of this engine whose ``configured_dir`` is ``folder`` (``[target] engine_path``)."""
        clone = copy.copy(self)
        clone.configured_dir = Path(folder)
        return clone

    def build(self) -> Path | None:
        """The folder of the build this engine runs (:func:`build_dir`); None: the pinned one."""
        return build_dir(self.sqljs_dir, self.configured_dir)

    def modules(self) -> dict[str, Path]:
        """The runner's ``modules``: the file it loads of each package (:func:`runner_modules`)."""
        return runner_modules(self.sqljs_dir, self.configured_dir)

    def identity(self) -> tuple[str, str]:
        """("sqljs-1.16.0", "1.16.0"): the pinned sql.js package's version; for another build, its npm package's
        name and version when a package.json lies above its files (sql.js-fts5 1.4.0: "sqljs-fts5-1.4.0")."""
        folder = self.build()
        if folder is None:
            version = json.loads((RUNNER_DIR / "package.json").read_text())["dependencies"]["sql.js"]
            return f"{self.name}-{version}", str(version)
        for manifest in (folder / "package.json", folder.parent / "package.json"):
            if manifest.is_file():
                package = json.loads(manifest.read_text())
                name = str(package.get("name", "sql.js")).replace("sql.js", self.name).replace("/", "-")
                return f"{name}-{package.get('version', '')}", str(package.get("version", ""))
        return f"{self.name}-build", ""

    def _command(self) -> list[str]:
        """Node (found on PATH) running runner.js, with gc() exposed and collecting on its own thread (the runner
        frees a big job's garbage, array buffers included, before the next one's peak is measured); NodeNotFound
        when there is no such program."""
        node = shutil.which(self.node)
        if node is None:
            raise NodeNotFound(
                f"Node.js not found ({self.node!r} is not on PATH): the sql.js engine needs Node.js >= 18"
            )
        return [node, "--expose-gc", "--single-threaded-gc", str(RUNNER)]

    def job(self, database: Path | None, actions: list[Action]) -> dict[str, Any]:
        """The job document actions.js runs (``database`` checked loadable and resolved; runner.js's protocol)."""
        if database is not None:
            database = Path(database)
            check_engine_input(database)
            database = database.resolve()
        return {
            "database": None if database is None else str(database),
            "actions": actions,
            "legacy_functions": self.legacy_functions,
            "stand_ins": list(self.stand_ins),
        }

    def warm(self) -> None:
        """Start this engine's kept Node process and load sql.js now, unless this process has one (ready, starting or
        running a job), so that the next run does not wait for them (a run asking meanwhile takes this one); a
        failure is left to that run to report."""
        with contextlib.suppress(FailbackError):
            session.warm(self._command(), self._job(None, []), self.timeout)

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        """Load ``database`` (``None``: empty) into sql.js and run ``actions``; the file is never written. The job
        runs in a Node process this Python process keeps for later runs (:mod:`.session`)."""
        start = time.perf_counter()
        return engine_run(session.run_job(self._command(), self._job(database, actions), self.timeout), start)

    def _job(self, database: Path | None, actions: list[Action]) -> dict[str, Any]:
        """The job the kept runner runs: :meth:`job` and the files of the Node packages it loads."""
        job = self.job(database, actions)
        job["modules"] = {package: str(path.resolve()) for package, path in self.modules().items()}
        return job


def engine_run(doc: dict[str, Any], start: float) -> EngineRun:
    """The EngineRun of a result document of actions.js (run since ``start``, a perf_counter)."""
    if not doc.get("ok"):
        error = str(doc.get("error", "unknown error"))
        if doc.get("kind") == "database":
            raise NotADatabaseError(f"sql.js cannot read {error}")
        raise EngineError(f"the sql.js runner failed: {error}")
    return EngineRun(
        results=doc["results"],
        version=str(doc["version"]),
        peak_rss_bytes=doc.get("peak_rss"),
        seconds=time.perf_counter() - start,
        peak_js_heap_bytes=doc.get("peak_js_heap"),
    )
