"""One exception hierarchy. Each class carries the exit code the CLI returns and a hint for the user.

Exit codes (also in docs/ROLLBACK-PROCEDURES.md):
  0 done · 1 verification failed (nothing switched) · 2 usage, config or input error · 3 refused (risk gate,
  unsupported schema object) · 4 interrupted (resumable) · 5 source changed during the run (nothing switched)
  · 6 environment failure: disk full, permission denied, I/O error (nothing changed) · 70 internal error, a bug
  (not a FailbackError: the CLI prints one line; FAILBACK_DEBUG=1 shows the traceback)
"""

from __future__ import annotations


class FailbackError(Exception):
    """Base class: a one-line message, a hint saying what to do, and an exit code."""

    exit_code = 2
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class ConfigError(FailbackError):
    """failback.toml (or a command-line value) is missing, unreadable or invalid."""

    exit_code = 2
    default_hint = "fix failback.toml (see docs/config.md) and run the command again"


class InputError(FailbackError):
    """A path given to failback does not exist or is not what it must be."""

    exit_code = 2
    default_hint = "check the path and run the command again"


class NotADatabaseError(InputError):
    """A file is not a readable SQLite database (empty, corrupt, truncated, encrypted, …)."""

    default_hint = "point failback at a valid SQLite database; restore one with `failback backup restore`"


class UnsupportedSchemaError(FailbackError):
    """The target engine cannot hold a schema object and the config does not allow dropping it."""

    exit_code = 3
    default_hint = "add the object to [convert] allow_drop in failback.toml, or convert it by hand first"


class RiskRefused(FailbackError):
    """The risk gate refused the run."""

    exit_code = 3
    default_hint = "read `failback assess`; re-run with --yes (high) or --force --reason '…' (critical)"


class SourceDamaged(FailbackError):
    """The source fails quick_check; the run refuses to convert it (only FTS index damage may be repaired)."""

    exit_code = 3
    default_hint = "restore the source from a backup or recover it (sqlite3 .recover) first"


class VerificationFailed(FailbackError):
    """The converted database does not hold the same data as the snapshot; nothing was switched."""

    exit_code = 1
    default_hint = "nothing was switched; read the verification report in the run directory"


class BackupError(FailbackError):
    """A backup could not be written, verified or restored."""

    exit_code = 1
    default_hint = "run `failback backup verify --all`; check the backup folders named in failback.toml"


class Interrupted(FailbackError):
    """The run was stopped (signal); it can be resumed."""

    exit_code = 4
    default_hint = "run `failback resume` to continue, or `failback abort` to clean up"


class SourceChanged(FailbackError):
    """The source database was written after the snapshot; nothing was switched."""

    exit_code = 5
    default_hint = "stop the app's writers (or let them finish), then run the rollback again: it snapshots anew"


class LockedError(FailbackError):
    """Another failback run holds the lock."""

    exit_code = 2
    default_hint = "wait for the other run (`failback status`); a lock whose process died is free already"


class EnvironmentFailure(FailbackError):
    """The machine refused a write: disk full, permission denied, I/O error. Nothing was changed."""

    exit_code = 6
    default_hint = "free disk space or fix permissions on the folder named, then run again"


class EngineError(FailbackError):
    """The target engine (Node + sql.js) could not be run: sql.js files missing, Node.js < 18, a runner failure."""

    exit_code = 2
    default_hint = "the sql.js engine needs Node.js 18 or newer on PATH; check it with `failback probe --engine sqljs`"


class NodeNotFound(EngineError):
    """Node.js, which runs the sql.js engine, is not installed or not on PATH."""

    default_hint = (
        "install Node.js 18 or newer (https://nodejs.org/en/download, or the system's package manager: "
        "`apt-get install nodejs`, `brew install node`) and put `node` on PATH"
    )


def from_os_error(err: OSError, what: str) -> EnvironmentFailure:
    """Turn an OSError raised while writing into a one-line EnvironmentFailure."""
    import errno

    reason = {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
    }.get(err.errno or 0, err.strerror or str(err))
    return EnvironmentFailure(f"{what}: {reason}")
