"""The switch and its undo: the converted target renamed over the app's database (the previous one kept), then
one key of the app's configuration rewritten atomically (.env or .json); ``undo_switch`` puts both back.

The file half (``switch_app``, ``undo_switch``): every act passes through the run's ``Guard``. The previous
target keeps its inode (a hard link, else a copy) in the run folder with its side files, and a marker
(``target-replaced``, holding the converted file's XXH3) is written just before the rename, so an abort undoes
only what this run replaced. Each part is skipped when already done, so a resumed switch finishes a killed one.

The config half: rewrite one key of the app's configuration atomically (.env or .json).

Pure part: ``read_provider`` / ``render_switched`` (text in, text out). Effect: ``switch_provider`` writes the
new text under a temp name, fsyncs, renames and fsyncs the folder, after saving the previous bytes. Files are
read and written as bytes decoded as UTF-8 (no newline translation), so CRLF files stay CRLF.

.env (shell rules): ``[export] KEY=value``, the value unquoted, 'single' or "double" quoted (quotes may span
lines); an inline comment starts at a ``#`` after whitespace. The key is literal (a dotted key is a name).
When a key is assigned more than once the last assignment wins, as in a shell; a rewrite sets every
assignment, so a loader that takes the first one reads the same value. Only the value's characters change
(its quotes, ``export``, spacing, comment and line ending stay); a missing key is appended on a new line.

.json: a dotted key names a nested setting (``database.provider`` → ``{"database": {"provider": …}}``); the
last of duplicate keys wins, as in ``JSON.parse``. An existing value is rewritten by a targeted textual
replacement of the value's span (found by walking the objects on the key path with the stdlib decoder), so
every other byte — key order, indentation, escapes, number spelling — stays; the result is re-parsed and must
equal the old document with only that value changed. A missing key is added by re-serialising with the
detected indentation and the original key order (only possible with --force: a rollback needs the key).

Not python-dotenv: its ``set_key`` rewrites the whole line (dropping the inline comment and quote style) and it
reads ``KEY= # note`` as a value, unlike a shell; the grammar above fits in two regular expressions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputError, SourceChanged, from_os_error
from ..files import file_xxh3, tmp_name, write_bytes, write_text
from ..journal import RunDir, crash_point

if TYPE_CHECKING:  # guard uses this module's config half
    from ..config import AppConfig
    from ..guard import Guard, SourceEvidence

_ENV_KEY = r"[A-Za-z_][A-Za-z0-9_.-]*"
# an unquoted value: words separated by blanks; a word after a blank cannot start a comment (#)
_ENV_ENTRY = re.compile(
    rf"""[ \t]*(?:export[ \t]+)?(?P<key>{_ENV_KEY})[ \t]*=(?P<pad>[ \t]*)
    (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|(?:(?<==)|(?!\#))[^\s'"]\S*(?:[ \t]+[^\s\#]\S*)*|)
    [ \t]*(?:\#[^\r\n]*)?(?:\r\n|\n|\r|\Z)""",
    re.VERBOSE,
)
_ENV_ASSIGN = re.compile(rf"[ \t]*(?:export[ \t]+)?(?P<key>{_ENV_KEY})[ \t]*=")
_EOL = re.compile(r"\r\n|\n|\r")
_DQ_ESCAPE = re.compile(r'\\([\\"$`])')
_WS = re.compile(r"[ \t\n\r]*")
_JSON_HINT = "fix the app's config file ([app] config), or point [app] key at a setting holding one value"


def _kind(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "env"


# -- .env ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EnvAssignment:
    key: str
    at: int  # where the line starts
    span: tuple[int, int] | None  # the value's characters, quotes included; None: not readable


def _env_assignments(text: str) -> Iterator[_EnvAssignment]:
    """Every ``KEY=value`` in ``text`` (a quoted value spanning lines is one assignment, not several lines)."""
    pos = 0
    while pos < len(text):
        m = _ENV_ENTRY.match(text, pos)
        if m:
            # an empty value is set right after the "=", so that a comment after it stays a comment
            yield _EnvAssignment(m["key"], pos, m.span("value") if m["value"] else (m.start("pad"),) * 2)
            pos = m.end()
            continue
        loose = _ENV_ASSIGN.match(text, pos)
        if loose:
            yield _EnvAssignment(loose["key"], pos, None)
        eol = _EOL.search(text, pos)
        pos = eol.end() if eol else len(text)


def _env_spans(text: str, key: str) -> list[tuple[int, int]]:
    """The value spans of every assignment of ``key``; an assignment that cannot be read is an error."""
    spans = []
    for a in _env_assignments(text):
        if a.key != key:
            continue
        if a.span is None:
            line = text.count("\n", 0, a.at) + 1
            raise ConfigError(
                f"app config line {line}: cannot read the value of {key} (an unclosed quote or text after it?)",
                "write it as KEY=value, KEY='value' or KEY=\"value\", optionally followed by a # comment",
            )
        spans.append(a.span)
    return spans


def _env_read(text: str, key: str) -> str | None:
    spans = _env_spans(text, key)
    if not spans:
        return None
    raw = text[spans[-1][0] : spans[-1][1]]
    if raw[:1] == "'":
        return raw[1:-1]
    if raw[:1] == '"':
        return _DQ_ESCAPE.sub(r"\1", raw[1:-1])
    return raw


def _env_render(text: str, key: str, value: str) -> str:
    spans = _env_spans(text, key)
    if not spans:
        eol = "\r\n" if "\r\n" in text else "\n"
        sep = eol if text and not text.endswith(("\n", "\r")) else ""
        return f"{text}{sep}{key}={value}{eol}"
    for start, end in reversed(spans):
        quote = text[start] if end > start and text[start] in "\"'" else ""
        text = f"{text[:start]}{quote}{value}{quote}{text[end:]}"
    return text


# -- .json --------------------------------------------------------------------------------------------
def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"app config is not valid JSON ({err})", _JSON_HINT) from None
    if not isinstance(data, dict):
        raise ConfigError("app config JSON must be an object", _JSON_HINT)
    return data


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


def _parent(data: dict[str, Any], path: list[str], create: bool) -> dict[str, Any] | None:
    """The object holding the last key of ``path`` (None when absent and not ``create``d)."""
    node = data
    for i, name in enumerate(path[:-1]):
        child = node.get(name)
        if child is None and create:
            child = node[name] = {}
        if child is None:
            return None
        if not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            what = f"{where} is {_json_type(child)}, not an object: cannot hold {path[-1]}"
            raise ConfigError(f"app config: {what}", _JSON_HINT)
        node = child
    return node


def _json_value(data: dict[str, Any], key: str) -> str | None:
    path = key.split(".")
    parent = _parent(data, path, create=False)
    value = None if parent is None else parent.get(path[-1])
    if isinstance(value, dict | list):
        raise ConfigError(f"app config: {key} is {_json_type(value)}, not a single value", _JSON_HINT)
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _json_spans(text: str, path: list[str]) -> list[tuple[int, int]]:
    """The text spans of every value at ``path`` (duplicate keys included) in valid JSON ``text``."""
    decoder = json.JSONDecoder()

    def ws(i: int) -> int:
        m = _WS.match(text, i)
        return m.end() if m else i

    def walk(i: int, depth: int) -> Iterator[tuple[int, int]]:  # text[i] == "{"
        i = ws(i + 1)
        while text[i] != "}":
            name, i = decoder.raw_decode(text, i)
            start = ws(ws(i) + 1)  # past the ":"
            _, end = decoder.raw_decode(text, start)
            if name == path[depth]:
                if depth == len(path) - 1:
                    yield start, end
                elif text[start] == "{":
                    yield from walk(start, depth + 1)
            i = ws(end)
            i = ws(i + 1) if text[i] == "," else i

    return list(walk(ws(0), 0))


def _indent(text: str) -> str | None:
    """The indentation unit of ``text`` (its first indented line), None for a one-line document."""
    m = re.search(r"[\r\n]([ \t]+)\S", text)
    return m[1] if m else None


def _json_render(text: str, key: str, value: str) -> str:
    path = key.split(".")
    expected = _json(text)
    _json_value(expected, key)  # rejects a path through a non-object, or an object/array value
    parent = _parent(expected, path, create=True)
    assert parent is not None  # created
    parent[path[-1]] = value
    spans = _json_spans(text, path)
    new = text
    for start, end in reversed(spans):
        new = f"{new[:start]}{json.dumps(value, ensure_ascii=False)}{new[end:]}"
    if not spans:
        eol = "\r\n" if "\r\n" in text else "\n"
        new = json.dumps(expected, indent=_indent(text), ensure_ascii=False).replace("\n", eol)
        new += eol if text.endswith(("\n", "\r")) else ""
    if json.loads(new) != expected:  # the proof failed: nothing is written
        raise ConfigError(f"app config: cannot rewrite {key} alone (the same key twice on its path?)", _JSON_HINT)
    return new


# -- the face -----------------------------------------------------------------------------------------
def read_provider(text: str, key: str, kind: str = "env") -> str | None:
    """The provider value currently set in ``text`` (None when the key is absent)."""
    return _json_value(_json(text), key) if kind == "json" else _env_read(text, key)


def render_switched(text: str, key: str, value: str, kind: str = "env") -> str:
    """``text`` with ``key`` set to ``value`` (a plain word, as AppConfig guarantees); every other byte kept."""
    return _json_render(text, key, value) if kind == "json" else _env_render(text, key, value)


def read_app_config(path: Path) -> str:
    """The app config's text (UTF-8, line endings as they are), with clean errors."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"app config {path}: no such file", "set [app] config in failback.toml") from None
    except PermissionError:
        raise InputError(f"app config {path}: permission denied", "run as the app's user or fix permissions") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"app config {path}: cannot read ({err})") from None


def app_settings(path: Path) -> dict[str, str]:
    """Every single-valued setting of an app config, by the key [app] key would name (dotted in JSON)."""
    text = read_app_config(path)
    if _kind(path) == "env":
        return {a.key: value for a in _env_assignments(text) if (value := _env_read(text, a.key)) is not None}
    found: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            elif not isinstance(value, list):
                found[prefix + name] = value if isinstance(value, str) else json.dumps(value)

    walk(_json(text), "")
    return found


def current_provider(path: Path, key: str) -> str | None:
    return read_provider(read_app_config(path), key, _kind(path))


def switch_provider(path: Path, key: str, value: str, keep: Path) -> tuple[str | None, str]:
    """Save the current config to ``keep``, then set ``key`` = ``value`` atomically. Returns (old, new)."""
    text = read_app_config(path)
    kind = _kind(path)
    old = read_provider(text, key, kind)
    new_text = render_switched(text, key, value, kind)
    write_bytes(keep, text.encode("utf-8"))
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as err:
        raise from_os_error(err, f"cannot stat {path}") from err
    write_bytes(path, new_text.encode("utf-8"), mode)
    return old, value


# -- the file half, and the undo ----------------------------------------------------------------------
REPLACED = "target-replaced"  # written just before a run renames its converted file over the target
BEFORE = "app-config.before"  # the app config's bytes before the switch, in the run folder
KEPT = "previous-target.sqlite"  # the replaced target (and its side files), in the run folder
Event = Callable[[str, dict[str, Any]], None]  # an audit event of the run


def temp_target(target: Path, run_id: str) -> Path:
    """The name run ``run_id`` builds its converted target under, beside ``target``."""
    return target.with_name(f".{target.name}.failback-{run_id}")


def holds(path: Path, xxh3: str | None) -> bool:
    """Whether ``path`` is a file with exactly the bytes whose XXH3 is ``xxh3``."""
    return bool(xxh3) and path.is_file() and file_xxh3(path) == xxh3


def probe_writable(path: Path) -> None:
    """Prove a file can be replaced atomically (a temp file created and removed beside it), so nothing is
    switched half-way; EnvironmentFailure (exit 6) otherwise."""
    probe = tmp_name(path, "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise from_os_error(err, f"cannot replace {path}") from err


@dataclass(frozen=True)
class AppSwitch:
    """What one run switches: the app's config file and provider key, and its target database; what the switch
    replaces is kept in the run folder."""

    app: AppConfig
    app_config: Path
    target: Path
    run_dir: RunDir

    def switched(self) -> bool:
        """The app config names the rollback provider (read first: an unreadable config stops the switch before
        any act) and this run saved the config it replaced."""
        return current_provider(self.app_config, self.app.key) == self.app.rollback_value and self.saved()

    def saved(self) -> bool:
        """This run saved the app config before rewriting it."""
        return self.run_dir.file(BEFORE).exists()

    def replaced_by_us(self, built: str | None) -> bool:
        """This run renamed its converted file over the target, and the target still holds those bytes (equal
        bytes alone prove nothing: the marker says it was this run)."""
        return self.run_dir.file(REPLACED).exists() and holds(self.target, built)


def switch_app(
    sw: AppSwitch, guard: Guard, evidence: SourceEvidence, built: str, tmp: Path | None, event: Event
) -> bool:
    """Target into place (``tmp``, the converted file whose XXH3 is ``built``), then the config; each part is
    skipped when it is already done (resume). False when the app was already switched. Every path re-checks the
    target and the source first, and a source written since the snapshot puts back a target a killed attempt
    had already replaced (SourceChanged)."""
    before, kept = sw.run_dir.file(BEFORE), sw.run_dir.file(KEPT)
    if sw.switched():
        return False
    in_place = sw.replaced_by_us(built)
    guard.check_target()
    try:
        guard.check_source(evidence)
    except SourceChanged as err:
        if not in_place:
            raise
        undone = guard.put_back(kept, ours=True)
        event("switch.undone", {"undone": undone})
        raise SourceChanged(f"{err.message}; {undone}") from None
    if not in_place:
        probe_writable(sw.app_config)  # the config switch must be able to follow the rename
        assert tmp is not None and tmp.exists(), "converted target missing"
        guard.keep_previous(kept)  # the old target's inode (and side files) stay in the run directory
        crash_point("switch.kept")
        write_text(sw.run_dir.file(REPLACED), built + "\n")  # abort undoes only what this run replaced
        guard.put_in_place(tmp)
        event("switch.target", {"target": str(sw.target), "previous_kept": kept.exists()})
    crash_point("switch.renamed")
    old, new = guard.rewrite_app_config(before)
    event("switch.config", {"config": str(sw.app_config), "key": sw.app.key, "from": old, "to": new})
    crash_point("switch.config")
    return True


def undo_switch(sw: AppSwitch, guard: Guard, built: str | None) -> list[str]:
    """Put back what the switch changed (the config, the target and its side files) — refused (InputError) when
    the app was switched and its new database has changed since: its writes would be lost."""
    undone: list[str] = []
    switched, ours = sw.saved() and sw.switched(), sw.replaced_by_us(built)  # never saved: the config is not read
    if switched and not ours:
        run = sw.run_dir.id
        raise InputError(
            f"run {run} switched the app and its new database has changed since: aborting would lose those writes",
            "keep the rollback, or roll forward by hand (see docs/ROLLBACK-PROCEDURES.md)",
        )
    if switched:
        guard.restore_app_config(sw.run_dir.file(BEFORE))
        undone.append(f"{sw.app_config.name} restored")
        crash_point("abort.config-restored")
    put_back = guard.put_back(sw.run_dir.file(KEPT), ours=ours)
    return undone + ([put_back] if put_back else [])
