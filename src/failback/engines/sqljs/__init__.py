"""The target engine: real sql.js 1.16.0 (SQLite compiled to WebAssembly) run by Node on a copy of the file.

``runner.js`` beside this file does the work; its header comment describes the JSON protocol. The Node
packages are pinned in ``package.json``/``package-lock.json`` and installed with ``make deps``.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import EngineError, NotADatabaseError
from .. import Action, EngineRun, check_engine_input

RUNNER_DIR = Path(__file__).resolve().parent
RUNNER = RUNNER_DIR / "runner.js"
INSTALL_HINT = f"run `make deps`, or `npm ci --prefix {RUNNER_DIR}`"


class SqlJsEngine:
    """Runs engine actions inside sql.js under Node (see :mod:`failback.engines`), one process per run."""

    name: str = "sqljs"

    def __init__(
        self,
        node: str = "node",
        timeout: float | None = None,
        legacy_functions: bool = False,
        stand_ins: Sequence[str] = (),
    ) -> None:
        """``node``: the Node executable (name on PATH or a path); ``timeout``: seconds per run (None: no
        limit); ``legacy_functions``: load sql.js 1.x's deprecated extension functions, as an app that
        initialises sql.js with its defaults has them (they also change some native ones: ``log(x)`` is ln);
        ``stand_ins``: app functions ("name/arity") registered as the app does, each returning NULL.
        """
        self.node = node
        self.timeout = timeout
        self.legacy_functions = legacy_functions
        self.stand_ins = tuple(stand_ins)

    def with_stand_ins(self, functions: Sequence[str]) -> SqlJsEngine:
        """A copy of this engine (a subclass stays one) with ``functions`` registered as stand-ins too."""
        clone = copy.copy(self)
        clone.stand_ins += tuple(f for f in functions if f not in self.stand_ins)
        return clone

    def identity(self) -> tuple[str, str]:
        """("sqljs-1.16.0", "1.16.0"): the pinned sql.js package's version."""
        version = json.loads((RUNNER_DIR / "package.json").read_text())["dependencies"]["sql.js"]
        return f"{self.name}-{version}", str(version)

    def _command(self) -> list[str]:
        node = shutil.which(self.node)
        if node is None:
            raise EngineError(
                f"Node.js not found ({self.node!r} is not on PATH); the sql.js engine needs node >= 18",
                hint=f"install Node.js 18 or newer, then {INSTALL_HINT}",
            )
        if not (RUNNER_DIR / "node_modules" / "sql.js").is_dir():
            raise EngineError(f"sql.js is not installed beside {RUNNER.name}", hint=INSTALL_HINT)
        return [node, str(RUNNER)]

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        """Load ``database`` (``None``: empty) into sql.js and run ``actions``; the file is never written."""
        start = time.perf_counter()
        if database is not None:
            database = Path(database)
            check_engine_input(database)
            database = database.resolve()
        command = self._command()
        job = json.dumps(
            {
                "database": None if database is None else str(database),
                "actions": actions,
                "legacy_functions": self.legacy_functions,
                "stand_ins": list(self.stand_ins),
            }
        )
        try:
            proc = subprocess.run(
                command,
                input=job,
                capture_output=True,
                encoding="utf-8",
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(f"the sql.js runner did not finish within {self.timeout} s") from None
        except OSError as err:
            raise EngineError(f"cannot start {command[0]}: {err.strerror}", hint=INSTALL_HINT) from None
        doc = _output(proc)
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
        )


def _output(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The runner's one JSON document, or an EngineError naming the exit status and stderr's last line."""
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or (proc.returncode != 0 and doc.get("ok")):
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise EngineError(f"the sql.js runner failed (exit status {proc.returncode}): {last}")
    return doc
