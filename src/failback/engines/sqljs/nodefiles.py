"""The Node packages' files the sql.js runner loads, named once for the build and for the engine.

``setup.py`` copies each package's files from ``node_modules/<package>/`` (installed by ``npm ci`` from
``package-lock.json``) into the wheel, flat in ``vendor/<package>/`` with the package's LICENSE; the engine looks
for them there, then in a checkout's ``node_modules`` (see :func:`failback.engines.sqljs.runner_modules`).
This module imports nothing: setup.py loads it by path, before failback is installed.
"""

from __future__ import annotations

VENDOR_DIR = "vendor"
LOCKFILE = "package-lock.json"
# package -> the files of it the runner loads (sql-wasm.js loads the sql-wasm.wasm beside it)
NODE_FILES: dict[str, tuple[str, ...]] = {
    "sql.js": ("dist/sql-wasm.js", "dist/sql-wasm.wasm"),
    "hash-wasm": ("dist/xxhash128.umd.min.js",),
}
