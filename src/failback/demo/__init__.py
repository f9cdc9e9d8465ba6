"""``failback demo``: a sample app folder — a GRDB-style native database, the app's provider config, the
pre-migration sql.js file and a failback.toml describing them."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import DEFAULT_PROFILE
from ..errors import InputError
from ..files import ensure_dir, write_text
from .sample import build_native, build_sqljs_premigration

MARKER = ".failback-demo"

APP_ENV = """\
# The app's provider configuration (read at start-up).
DATABASE_PROVIDER=native
NATIVE_DATABASE_PATH=native.sqlite
SQLJS_DATABASE_PATH=app-sqljs.sqlite
"""

CONFIG = f"""\
# failback.toml for the demo app. Paths are relative to this file.
[source]
path = "native.sqlite"            # the live GRDB database (only ever read)

[target]
path = "app-sqljs.sqlite"         # the file the app loads under sql.js
profile = "{DEFAULT_PROFILE}"

[app]
config = "app.env"
key = "DATABASE_PROVIDER"
native_value = "native"
rollback_value = "sqljs"
path_key = "SQLJS_DATABASE_PATH"  # the file the app loads under sql.js: must be [target] path
statements = [                    # the old sql.js app's own statements: each must run on the result
  "SELECT id, title, body FROM note WHERE folderId = ? ORDER BY updatedAt DESC",
  "INSERT INTO note(folderId, title, body, tags, isPinned, createdAt, updatedAt) VALUES (?, ?, ?, ?, ?, ?, ?)",
  "UPDATE note SET title = :title, updatedAt = :updatedAt WHERE id = :id",
  "INSERT INTO folder(name, createdAt) VALUES (?, ?)",
  "DELETE FROM attachment WHERE noteId = ?",
]

[backup]
dir = "backups/primary"
mirrors = ["backups/mirror"]
min_layers = 2
zstd_level = 3

[convert]
collations = {{ swiftLocalizedCaseInsensitiveCompare = "NOCASE" }}

[assess]
liveness_seconds = LIVENESS        # how long to watch the source for an active writer

[verify]
fts_queries = ["zebra", "cafe", "meeting AND zebra", "zeb*"]
queries = [
  "SELECT count(*), max(id) FROM note",
  "SELECT id, title FROM note WHERE isPinned ORDER BY updatedAt DESC LIMIT 20",
  "SELECT f.name, count(n.id) FROM folder f LEFT JOIN note n ON n.folderId = f.id GROUP BY f.id",
]

[benchmark]                       # the app's hot queries: baseline before, post-check after
queries = [
  "SELECT id, title FROM note WHERE folderId = 3 ORDER BY updatedAt DESC LIMIT 50",
  "SELECT count(*) FROM note WHERE title LIKE '%meeting%'",
]
runs = 20
max_regression = 1.5
"""


def create_demo(directory: Path, notes: int = 3000, liveness: float = 0.5) -> Path:
    """Create (or re-create) the demo folder and return the path of its failback.toml (``liveness``: the seconds
    a rollback watches the source for an active writer)."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a folder", "pass a new folder for the demo")
    if directory.exists():
        if not (directory / MARKER).exists() and any(directory.iterdir()):
            raise InputError(
                f"{directory} exists and is not a failback demo folder; refusing to touch it",
                "pass another DIRECTORY",
            )
        shutil.rmtree(directory)
    ensure_dir(directory)
    write_text(directory / MARKER, "created by `failback demo`; safe to delete\n")
    native = directory / "native.sqlite"
    build_native(native, notes=notes)
    build_sqljs_premigration(directory / "app-sqljs.sqlite", native)
    write_text(directory / "app.env", APP_ENV)
    write_text(directory / "failback.toml", CONFIG.replace("LIVENESS", str(liveness)))
    return directory / "failback.toml"
