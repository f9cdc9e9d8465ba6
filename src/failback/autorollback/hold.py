"""Hold and release: ``hold.json`` blocks automatic rollbacks until released."""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..audit import AuditLog
from ..config import Config
from ..errors import ConfigError, FailbackError
from ..files import ensure_dir, fsync_dir, remove_quietly, write_text

__all__ = ["Hold", "place_hold", "read_hold", "release_hold"]


@dataclass
class Hold:
    """Automatic rollbacks blocked: why, since when (UTC), and by whom on which host."""

    reason: str
    since: str
    user: str
    host: str


# -- hold -------------------------------------------------------------------------------------------
def read_hold(cfg: Config) -> Hold | None:
    """The current hold; an unreadable hold.json still holds (fail safe)."""
    path = cfg.state.hold
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Hold(str(data["reason"]), str(data["since"]), str(data["user"]), str(data["host"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return Hold(f"{path} is unreadable ({err}); remove it with `failback release`", "?", "?", "?")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def place_hold(cfg: Config, reason: str) -> Hold:
    """Block automatic rollbacks until ``release_hold``; audited."""
    if not reason.strip():
        raise ConfigError("a hold needs a reason", "pass --reason '…' (it is shown on every evaluation)")
    current = read_hold(cfg)
    if current is not None:
        raise FailbackError(
            f"already held by {current.user} since {current.since}: {current.reason}",
            "run `failback release` first to replace the hold",
        )
    hold = Hold(reason.strip(), _now(), _user(), socket.gethostname())
    ensure_dir(cfg.state_path)
    write_text(cfg.state.hold, json.dumps(asdict(hold), indent=2) + "\n")
    AuditLog(cfg.state.audit_log).append("hold", asdict(hold))
    return hold


def release_hold(cfg: Config) -> Hold | None:
    """Remove the hold (None when there was none); audited."""
    hold = read_hold(cfg)
    if hold is None:
        return None
    path = cfg.state.hold
    remove_quietly(path)
    fsync_dir(path.parent)
    AuditLog(cfg.state.audit_log).append("release", {"hold": asdict(hold), "by": _user()})
    return hold


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
