"""Hold and release: ``hold.json`` blocks automatic rollbacks until released; ``cooldown.json`` blocks them for
``[triggers] cooldown`` seconds after an automatic rollback (kept in the state folder, so a restarted watch waits
too)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..config import Config
from ..errors import ConfigError, FailbackError
from ..files import ensure_dir, fsync_dir, remove_quietly, write_text
from .notify import audit_log

__all__ = ["Hold", "cooldown_note", "cooldown_until", "place_hold", "read_hold", "release_hold", "start_cooldown"]


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
    audit_log(cfg).append("hold", asdict(hold))
    return hold


def release_hold(cfg: Config) -> Hold | None:
    """Remove the hold (None when there was none); audited."""
    hold = read_hold(cfg)
    if hold is None:
        return None
    path = cfg.state.hold
    remove_quietly(path)
    fsync_dir(path.parent)
    audit_log(cfg).append("release", {"hold": asdict(hold), "by": _user()})
    return hold


# -- cooldown ---------------------------------------------------------------------------------------
def start_cooldown(cfg: Config, run: str, status: str) -> None:
    """An automatic rollback ran (whatever its outcome): none again for ``[triggers] cooldown`` seconds."""
    if cfg.triggers.cooldown <= 0:
        return
    until = time.time() + cfg.triggers.cooldown
    data = {"until": until, "run": run, "status": status, "since": _now()}
    ensure_dir(cfg.state_path)
    write_text(cfg.state.cooldown, json.dumps(data, indent=2) + "\n")


def cooldown_until(cfg: Config) -> tuple[float, str]:
    """Until when automatic rollbacks wait (epoch seconds; 0: no cooldown) and after which run; an unreadable
    cooldown.json waits a whole cooldown from its mtime (fail safe)."""
    path = cfg.state.cooldown
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return float(data["until"]), f"run {data['run']} ({data['status']}) at {data['since']}"
    except FileNotFoundError:
        return 0.0, ""
    except (OSError, ValueError, KeyError, TypeError) as err:
        with contextlib.suppress(OSError):
            return path.stat().st_mtime + cfg.triggers.cooldown, f"{path} is unreadable ({err})"
        return 0.0, ""


def cooldown_note(cfg: Config) -> str:
    """Why automatic rollbacks wait now, or ""."""
    until, after = cooldown_until(cfg)
    if until <= time.time():
        return ""
    when = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
    return f"cooling down until {when} after the automatic rollback {after}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
