"""Risk assessment: gather facts (effects), then the pure ``evaluate`` turns them into findings — severity
info/warn/high/critical, a message and a fix — and a level. Low and medium proceed; high needs --yes (or a
confirmation); critical needs --force --reason.

Facts:

* size: files, free pages, rows and bytes per table (dbstat), and each step's duration estimated from the
  throughput measured once on this machine (``measure_throughput``, cached in the state folder);
* disk: free space on every file system the rest of the rollback writes to, against the bytes it writes;
* schema complexity, the conversion plan's findings, and target fit (memory budget, the profile's limits);
* pending changes: ``sync.pending_sql`` probes and presets for known sync layouts;
* liveness of the live source, read without writing anything: stat, its header, ``data_version`` on a
  read-only connection and /proc/locks. Its files are never opened outside SQLite: closing a plain file
  descriptor would drop the locks this process's SQLite connections hold on them;
* ``quick_check`` of the snapshot, per B-tree: the FTS indexes' own consistency, the slow part on SQLite 3.54,
  does not matter because the target rebuilds every search index from the text;
* migration state: ``grdb_migrations``, and rows only the old sql.js file holds.

Emergency mode skips the slow facts (calibration unless cached, dbstat, quick_check), never pending changes,
disk or liveness.
"""

from .facts import Assessment, Facts, Finding, Pending
from .gather import gather
from .rules import evaluate, gate

__all__ = ["Assessment", "Facts", "Finding", "Pending", "evaluate", "gate", "gather"]
