"""The provider switch: rewrite one key of the app's configuration atomically (.env or .json).

Pure part: ``read_provider`` / ``render_switched`` (text in, text out). Effect: ``switch_provider`` writes the
new text under a temp name, fsyncs, renames and fsyncs the folder, after saving the previous bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import ConfigError, InputError, from_os_error
from .files import write_bytes

_ENV_LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.]*)(?P<eq>\s*=\s*)(?P<value>.*)$")


def _kind(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "env"


def _unquote(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v.split(" #", 1)[0].strip()


def read_provider(text: str, key: str, kind: str = "env") -> str | None:
    """The provider value currently set in ``text`` (None when the key is absent)."""
    if kind == "json":
        data = _json(text)
        value = data.get(key)
        return None if value is None else str(value)
    found = None
    for line in text.splitlines():
        m = _ENV_LINE.match(line)
        if m and m["key"] == key:
            found = _unquote(m["value"])
    return found


def render_switched(text: str, key: str, value: str, kind: str = "env") -> str:
    """``text`` with ``key`` set to ``value``; every other line and key kept byte for byte."""
    if kind == "json":
        data = _json(text)
        data[key] = value
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    lines = text.splitlines(keepends=True)
    done = False
    for i, line in enumerate(lines):
        m = _ENV_LINE.match(line.rstrip("\r\n"))
        if m and m["key"] == key:
            ending = line[len(line.rstrip("\r\n")) :]
            lines[i] = f"{m['lead']}{key}{m['eq']}{value}{ending}"
            done = True
    if not done:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def _json(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"app config is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError("app config JSON must be an object")
    return data


def read_app_config(path: Path) -> str:
    """The app config's text, with clean errors."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"app config {path}: no such file", "set [app] config in failback.toml") from None
    except PermissionError:
        raise InputError(f"app config {path}: permission denied", "run as the app's user or fix permissions") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"app config {path}: cannot read ({err})") from None


def current_provider(path: Path, key: str) -> str | None:
    return read_provider(read_app_config(path), key, _kind(path))


def switch_provider(path: Path, key: str, value: str, keep: Path) -> tuple[str | None, str]:
    """Save the current config to ``keep``, then set ``key`` = ``value`` atomically. Returns (old, new)."""
    text = read_app_config(path)
    kind = _kind(path)
    old = read_provider(text, key, kind)
    write_bytes(keep, text.encode("utf-8"))
    new_text = render_switched(text, key, value, kind)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as err:
        raise from_os_error(err, f"cannot stat {path}") from err
    write_bytes(path, new_text.encode("utf-8"), mode)
    return old, value
