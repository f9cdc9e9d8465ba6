"""The provider switch: the one change failback makes to the app's config. Table-driven for .env and .json (read
value and rewritten text, byte for byte), the atomic write, and a full rollback on each config style."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from failback.errors import ConfigError
from failback.pipeline.switch import current_provider, read_provider, render_switched, switch_provider

Cli = Callable[..., subprocess.CompletedProcess[str]]
KEY = "DATABASE_PROVIDER"

# (case, text, key, value read, text after switching the key to "sqljs")
ENV_CASES = [
    ("plain", "A=1\nDATABASE_PROVIDER=native\nB=2\n", KEY, "native", "A=1\nDATABASE_PROVIDER=sqljs\nB=2\n"),
    (
        "export, double quotes, comment",
        'export DATABASE_PROVIDER="native"  # db\n',
        KEY,
        "native",
        'export DATABASE_PROVIDER="sqljs"  # db\n',
    ),
    ("single quotes", "DATABASE_PROVIDER='native' # old\n", KEY, "native", "DATABASE_PROVIDER='sqljs' # old\n"),
    (
        "unquoted, comment",
        "DATABASE_PROVIDER=native # the provider\n",
        KEY,
        "native",
        "DATABASE_PROVIDER=sqljs # the provider\n",
    ),
    ("spaces and tab", "DATABASE_PROVIDER = native\t# c\n", KEY, "native", "DATABASE_PROVIDER = sqljs\t# c\n"),
    ("# inside a word", "DATABASE_PROVIDER=native#1\n", KEY, "native#1", "DATABASE_PROVIDER=sqljs\n"),
    ("empty, comment", "DATABASE_PROVIDER= # unset\n", KEY, "", "DATABASE_PROVIDER=sqljs # unset\n"),
    ("escaped in double quotes", 'DATABASE_PROVIDER="na\\"tive"\n', KEY, 'na"tive', 'DATABASE_PROVIDER="sqljs"\n'),
    (
        "commented-out line",
        "# DATABASE_PROVIDER=sqljs\nDATABASE_PROVIDER=native\n",
        KEY,
        "native",
        "# DATABASE_PROVIDER=sqljs\nDATABASE_PROVIDER=sqljs\n",
    ),
    (
        "longer key with the same prefix",
        "DATABASE_PROVIDER_OLD=native\nDATABASE_PROVIDER=native\n",
        KEY,
        "native",
        "DATABASE_PROVIDER_OLD=native\nDATABASE_PROVIDER=sqljs\n",
    ),
    (
        "CRLF",
        "A=1\r\nexport DATABASE_PROVIDER='native' # x\r\nB=2\r\n",
        KEY,
        "native",
        "A=1\r\nexport DATABASE_PROVIDER='sqljs' # x\r\nB=2\r\n",
    ),
    (
        "duplicates: the last wins, all are rewritten",
        "DATABASE_PROVIDER=sqljs\nX=1\nDATABASE_PROVIDER=native # this one\n",
        KEY,
        "native",
        "DATABASE_PROVIDER=sqljs\nX=1\nDATABASE_PROVIDER=sqljs # this one\n",
    ),
    (
        "a quoted value spanning lines is not an assignment",
        'CERT="-----BEGIN\nDATABASE_PROVIDER=sqljs\n-----END"\nDATABASE_PROVIDER=native\n',
        KEY,
        "native",
        'CERT="-----BEGIN\nDATABASE_PROVIDER=sqljs\n-----END"\nDATABASE_PROVIDER=sqljs\n',
    ),
    (
        "unicode elsewhere",
        "NAME=café  # ünïcode ✓\nDATABASE_PROVIDER=native\n",
        KEY,
        "native",
        "NAME=café  # ünïcode ✓\nDATABASE_PROVIDER=sqljs\n",
    ),
    ("no trailing newline", "A=1\nDATABASE_PROVIDER=native", KEY, "native", "A=1\nDATABASE_PROVIDER=sqljs"),
    ("missing key", "A=1\n", KEY, None, "A=1\nDATABASE_PROVIDER=sqljs\n"),
    ("missing key, no trailing newline", "A=1", KEY, None, "A=1\nDATABASE_PROVIDER=sqljs\n"),
    ("missing key, CRLF", "A=1\r\n", KEY, None, "A=1\r\nDATABASE_PROVIDER=sqljs\r\n"),
    ("empty file", "", KEY, None, "DATABASE_PROVIDER=sqljs\n"),
    (
        "literal dotted key",
        "database=x\ndatabase.provider=native\n",
        "database.provider",
        "native",
        "database=x\ndatabase.provider=sqljs\n",
    ),
]

JSON_CASES = [
    (
        "flat, 2 spaces",
        '{\n  "name": "app",\n  "DATABASE_PROVIDER": "native",\n  "port": 8080\n}\n',
        KEY,
        "native",
        '{\n  "name": "app",\n  "DATABASE_PROVIDER": "sqljs",\n  "port": 8080\n}\n',
    ),
    (
        "nested dotted key, 4 spaces",
        '{\n    "database": {\n        "provider": "native",\n        "path": "native.sqlite"\n    },\n'
        '    "debug": false\n}\n',
        "database.provider",
        "native",
        '{\n    "database": {\n        "provider": "sqljs",\n        "path": "native.sqlite"\n    },\n'
        '    "debug": false\n}\n',
    ),
    (
        "tabs, key order, no trailing newline",
        '{\n\t"z": 1,\n\t"database": {\n\t\t"provider": "native"\n\t},\n\t"a": [1, 2]\n}',
        "database.provider",
        "native",
        '{\n\t"z": 1,\n\t"database": {\n\t\t"provider": "sqljs"\n\t},\n\t"a": [1, 2]\n}',
    ),
    (
        "unicode, escapes and number spelling kept",
        '{"títle": "café \\u00e9", "database": {"provider": "nat\\u0069ve"}, "n": 1.50, "e": 1E3}',
        "database.provider",
        "native",
        '{"títle": "café \\u00e9", "database": {"provider": "sqljs"}, "n": 1.50, "e": 1E3}',
    ),
    (
        "same key at another level",
        '{"provider": "native", "database": {"provider": "native"}}',
        "database.provider",
        "native",
        '{"provider": "native", "database": {"provider": "sqljs"}}',
    ),
    (
        "CRLF",
        '{\r\n  "DATABASE_PROVIDER": "native"\r\n}\r\n',
        KEY,
        "native",
        '{\r\n  "DATABASE_PROVIDER": "sqljs"\r\n}\r\n',
    ),
    (
        "duplicates: the last wins, all are rewritten",
        '{"DATABASE_PROVIDER": "sqljs", "DATABASE_PROVIDER": "native"}',
        KEY,
        "native",
        '{"DATABASE_PROVIDER": "sqljs", "DATABASE_PROVIDER": "sqljs"}',
    ),
    (
        "missing nested key: added with the detected indentation, order kept",
        '{\n  "b": 1,\n  "a": {"x": "é"}\n}\n',
        "a.p.q",
        None,
        '{\n  "b": 1,\n  "a": {\n    "x": "é",\n    "p": {\n      "q": "sqljs"\n    }\n  }\n}\n',
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "key", "value", "switched"),
    [pytest.param("env", *c[1:], id=f"env: {c[0]}") for c in ENV_CASES]
    + [pytest.param("json", *c[1:], id=f"json: {c[0]}") for c in JSON_CASES],
)
def test_read_and_rewrite(kind: str, text: str, key: str, value: str | None, switched: str) -> None:
    assert read_provider(text, key, kind) == value
    assert render_switched(text, key, "sqljs", kind) == switched
    assert read_provider(switched, key, kind) == "sqljs"
    assert render_switched(switched, key, "sqljs", kind) == switched  # switching again changes nothing


@pytest.mark.parametrize(
    ("kind", "text", "key", "needle"),
    [
        ("env", 'DATABASE_PROVIDER="native\n', KEY, "line 1: cannot read the value of DATABASE_PROVIDER"),
        ("env", "A=1\nDATABASE_PROVIDER='native'x\n", KEY, "line 2: cannot read the value of DATABASE_PROVIDER"),
        ("json", '{"database": {"provider": {"name": "native"}}}', "database.provider", "is an object"),
        ("json", '{"database": {"provider": ["native"]}}', "database.provider", "is an array"),
        ("json", '{"database": "native.sqlite"}', "database.provider", "database is a string, not an object"),
        ("json", '{"database": [{"provider": "native"}]}', "database.provider", "database is an array, not an object"),
        ("json", '["native"]', KEY, "must be an object"),
        ("json", '{"DATABASE_PROVIDER": "native",}', KEY, "not valid JSON"),
    ],
)
def test_rejected_input_is_a_one_line_config_error(kind: str, text: str, key: str, needle: str) -> None:
    for attempt in (lambda: read_provider(text, key, kind), lambda: render_switched(text, key, "sqljs", kind)):
        with pytest.raises(ConfigError) as info:
            attempt()
        assert needle in info.value.message
        assert "\n" not in info.value.message


def test_a_rewrite_that_would_change_more_is_refused() -> None:
    """Duplicate objects on the path: the value found is not the one a JSON reader uses (the last object)."""
    text = '{"database": {"provider": "native"}, "database": {"path": "x"}}'
    assert read_provider(text, "database.provider", "json") is None
    with pytest.raises(ConfigError, match=r"cannot rewrite database\.provider alone"):
        render_switched(text, "database.provider", "sqljs", "json")


def test_switch_keeps_the_old_bytes_and_the_file_mode(tmp_path: Path) -> None:
    config = tmp_path / "app.env"
    original = b"# app\r\nexport DATABASE_PROVIDER=\"native\"  # db\r\nSQLJS_DATABASE_PATH='app-sqljs.sqlite'\r\n"
    config.write_bytes(original)
    config.chmod(0o640)
    keep = tmp_path / "app-config.before"
    assert switch_provider(config, KEY, "sqljs", keep) == ("native", "sqljs")
    assert keep.read_bytes() == original
    assert config.read_bytes() == original.replace(b'"native"', b'"sqljs"')
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert current_provider(config, KEY) == "sqljs"
    assert {p.name for p in tmp_path.iterdir()} == {"app.env", "app-config.before"}  # no temp file left


def test_a_rejected_switch_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "app.json"
    original = b'{"database": {"provider": ["native"]}}'
    config.write_bytes(original)
    with pytest.raises(ConfigError):
        switch_provider(config, "database.provider", "sqljs", tmp_path / "keep")
    assert config.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["app.json"]


# -- a full rollback on each config style ---------------------------------------------------------------------
ENV_STYLED = (
    "# The app's provider configuration\r\n"
    'export DATABASE_PROVIDER="native"   # switched by failback\r\n'
    "NATIVE_DATABASE_PATH='native.sqlite'\r\n"
    "SQLJS_DATABASE_PATH=app-sqljs.sqlite # the pre-migration file\r\n"
)
JSON_STYLED = (
    "{\n"
    '\t"name": "notes – démo",\n'
    '\t"database": {\n'
    '\t\t"provider": "native",\n'
    '\t\t"nativePath": "native.sqlite",\n'
    '\t\t"sqljsPath": "app-sqljs.sqlite"\n'
    "\t},\n"
    '\t"features": [ "search", "sync" ],\n'
    '\t"timeout": 1.50\n'
    "}\n"
)


@pytest.mark.parametrize(
    ("name", "original", "key", "path_key", "old_field", "new_field"),
    [
        ("app.env", ENV_STYLED, KEY, "SQLJS_DATABASE_PATH", 'DATABASE_PROVIDER="native"', 'DATABASE_PROVIDER="sqljs"'),
        (
            "app.json",
            JSON_STYLED,
            "database.provider",
            "database.sqljsPath",
            '"provider": "native"',
            '"provider": "sqljs"',
        ),
    ],
    ids=["env", "json-dotted-key"],
)
def test_rollback_changes_only_the_provider_value(
    demo_dir: Path, cli: Cli, name: str, original: str, key: str, path_key: str, old_field: str, new_field: str
) -> None:
    config = demo_dir / name
    config.write_bytes(original.encode("utf-8"))
    toml = demo_dir / "failback.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8")
        .replace('config = "app.env"', f'config = "{name}"')
        .replace('path_key = "SQLJS_DATABASE_PATH"', f'path_key = "{path_key}"')
        .replace('key = "DATABASE_PROVIDER"', f'key = "{key}"'),
        encoding="utf-8",
    )
    assert original.count(old_field) == 1
    res = cli("rollback", "--yes", "--json", cwd=demo_dir)
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)
    assert config.read_bytes() == original.replace(old_field, new_field).encode("utf-8")
    kept = demo_dir / ".failback" / "runs" / run["run"] / "app-config.before"
    assert kept.read_bytes() == original.encode("utf-8")
