"""The official SQLite WASM build (npm ``@sqlite.org/sqlite-wasm``) as a target engine, run by Node.

The same runner and actions as sql.js (:mod:`failback.engines.sqljs`): ``sqlite-wasm.js`` beside the runner gives
actions.js the part of sql.js's API it uses over the build's oo1 API, the database deserialized into memory.
failback ships no copy of the package: its folder (the package, holding ``dist/node.mjs``, or that ``dist/``) is
the engine's build, named by ``failback probe --engine sqlite-wasm --engine-path DIR`` (the profile records it) or
``[target] engine_path``. Tested with 3.53.4-build2 (pinned in tests/engines) on Node 20; no browser check.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import EngineError
from . import SqlJsEngine, package_file

PACKAGE = "@sqlite.org/sqlite-wasm"
ENTRY = "node.mjs"  # the package's Node entry point (its "node" export)


def entry_point(folder: Path | None) -> Path:
    """The Node entry of the sqlite-wasm package in ``folder`` (the package or its dist/); EngineError if none."""
    if folder is None:
        raise EngineError(
            f"the sqlite-wasm engine runs the {PACKAGE} package the app ships, and none is named",
            hint=f"name its folder: failback probe --engine sqlite-wasm --engine-path node_modules/{PACKAGE} (or "
            "[target] engine_path)",
        )
    for entry in (folder / "dist" / ENTRY, folder / ENTRY):
        if entry.is_file():
            return entry
    raise EngineError(
        f"engine path {folder} is not the {PACKAGE} package: no dist/{ENTRY} or {ENTRY} in it",
        hint=f"point it at node_modules/{PACKAGE} (npm install {PACKAGE})",
    )


class SqliteWasmEngine(SqlJsEngine):
    """Runs engine actions in the official SQLite WASM build under Node, through the sql.js runner's adapter."""

    name: str = "sqlite-wasm"
    browser_harness = False

    def build(self) -> Path | None:
        """The package folder this engine runs: its own build, else ``[target] engine_path`` (FAILBACK_SQLJS_DIR
        names sql.js builds only)."""
        return self.sqljs_dir or self.configured_dir

    def modules(self) -> dict[str, Path]:
        """The runner's ``modules``: the package's Node entry (run through sqlite-wasm.js) and hash-wasm."""
        return {"sqlite-wasm": entry_point(self.build()), "hash-wasm": package_file("hash-wasm")}

    def identity(self) -> tuple[str, str]:
        """("sqlite-wasm-3.53.4-build2", "3.53.4-build2"): the package's version from its package.json."""
        entry = entry_point(self.build())
        for manifest in (entry.parent / "package.json", entry.parent.parent / "package.json"):
            if manifest.is_file():
                version = str(json.loads(manifest.read_text()).get("version", ""))
                return f"{self.name}-{version}", version
        return f"{self.name}-build", ""
