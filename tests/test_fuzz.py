"""Fuzzing the three readers of untrusted input (hypothesis, bounded example counts):

* ``failback.config.load_config`` on random bytes, TOML-ish text and random structures built around a valid
  config: only ConfigError, never another exception;
* ``failback.backup.manifest.read_manifest`` on random JSON (and mutations of a real manifest): only BackupError;
* ``failback.db.connect.open_source`` + ``failback.db.schema.read_schema`` on a small valid database with random
  bytes changed: only NotADatabaseError (or another FailbackError), never a raw apsw or decoding error.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failback.backup.manifest import MANIFEST, read_manifest
from failback.backup.sets import create_backup
from failback.config import Config, load_config
from failback.db.connect import open_source
from failback.db.schema import read_schema
from failback.errors import BackupError, ConfigError, FailbackError
from failback.snapshot import take_snapshot

EXAMPLES = int(os.environ.get("FAILBACK_FUZZ_EXAMPLES", "150"))  # raise it for a long run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

text = st.text(st.characters(codec="utf-8"), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder for the files hypothesis examples write (function-scoped tmp_path does not mix with @given)."""
    with tempfile.TemporaryDirectory(prefix="failback-fuzz-") as d:
        yield Path(d)


# -- config ---------------------------------------------------------------------------------------------------
def toml_value(v: Any) -> str:
    """A TOML literal for ``v`` (None has none in TOML: it becomes an empty inline table)."""
    if v is None:
        return "{}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    """``data`` as a TOML document: top-level values first, then one [section] per table."""
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(str(kk))} = {toml_value(vv)}" for kk, vv in v.items())
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def _fields() -> dict[str, list[str]]:
    """Section → key names, read from the model (so new keys are fuzzed too)."""
    out: dict[str, list[str]] = {}
    for name, info in Config.model_fields.items():
        model = info.annotation
        fields = getattr(model, "model_fields", None)
        out[name] = [f.alias or k for k, f in fields.items()] if fields else []
    return out


FIELDS = _fields()
VALID = {"source": {"path": "native.sqlite"}, "target": {"path": "t.sqlite"}, "app": {"config": "app.env"}}
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text, scalars, max_size=3))


@st.composite
def config_structures(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with a few keys set to random values (known sections and keys, mostly)."""
    data: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*FIELDS, "bogus"]))
        if not FIELDS.get(section):  # a top-level value (state_dir, …) or an unknown section
            data[section] = draw(values)
            continue
        key = draw(st.sampled_from([*FIELDS[section], "bogus"]))
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        if section == "triggers" and key == "rules":
            table[key] = draw(st.lists(st.dictionaries(st.sampled_from(["name", "metric", "op", "for"]), values)))
        else:
            table[key] = draw(values)
    if draw(st.booleans()):
        data.pop(draw(st.sampled_from(sorted(data))), None)
    return data


def _load(folder: Path, data: bytes) -> None:
    path = folder / "failback.toml"
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except ConfigError as err:
        assert "\n" not in err.message.strip() or "TOML" in err.message, err.message
        return
    _ = (cfg.source_path, cfg.target_path, cfg.app_config_path, cfg.state_path, cfg.backup_layers)


@FUZZ
@given(st.binary(max_size=300))
def test_config_random_bytes(scratch: Path, data: bytes) -> None:
    _load(scratch, data)


TOML_PIECES = st.sampled_from(
    ["[source]", "[app]", "[[triggers.rules]]", "[backup]", "path = ", "= ", '"', "'", "'''", '"""', "[", "]", "{", "}",
     ",", "\n", "\\", "\\u12", "1979-05-27T07:32:00Z", "0x1F", "1e400", "nan", "inf", "#", "\r\n", "key.dotted = 1",
     "min_layers = ", "mirrors = [", "\x00", "\ufeff", "é"]
)  # fmt: skip


@FUZZ
@given(st.lists(st.one_of(TOML_PIECES, text), max_size=30))
def test_config_tomlish_text(scratch: Path, pieces: list[str]) -> None:
    _load(scratch, "".join(pieces).encode("utf-8", "surrogatepass"))


@FUZZ
@given(config_structures())
def test_config_random_structures(scratch: Path, data: dict[str, Any]) -> None:
    _load(scratch, toml_document(data).encode())


# -- manifest -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_manifest(scratch: Path) -> tuple[Path, dict[str, Any]]:
    """A real backup folder (its manifest is rewritten by each example)."""
    db = scratch / "m.sqlite"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    conn.close()
    snap = take_snapshot(db, scratch / "m-snap.sqlite")
    snap.guard.close()
    result = create_backup(snap.path, [scratch / "layer"], label="fuzz", source=db)
    folder = scratch / "layer" / result.id
    return folder, json.loads((folder / MANIFEST).read_text())


def _read(folder: Path, body: bytes) -> None:
    (folder / MANIFEST).write_bytes(body)
    with contextlib.suppress(BackupError):
        read_manifest(folder)


@FUZZ
@given(json_values)
def test_manifest_random_json(real_manifest: tuple[Path, dict[str, Any]], value: Any) -> None:
    _read(real_manifest[0], json.dumps(value).encode())


MANIFEST_KEYS = st.sampled_from(["format", "id", "file", "sha256", "bytes", "label", "tables", "created"])


@FUZZ
@given(st.dictionaries(MANIFEST_KEYS, json_values, max_size=4), st.lists(MANIFEST_KEYS, max_size=3))
def test_manifest_mutations(
    real_manifest: tuple[Path, dict[str, Any]], changes: dict[str, Any], removed: list[str]
) -> None:
    folder, good = real_manifest
    m = {**good, **changes}
    for key in removed:
        m.pop(key, None)
    _read(folder, json.dumps(m).encode())


@FUZZ
@given(st.binary(max_size=200))
def test_manifest_random_bytes(real_manifest: tuple[Path, dict[str, Any]], body: bytes) -> None:
    _read(real_manifest[0], body)


def test_manifest_deeply_nested(real_manifest: tuple[Path, dict[str, Any]]) -> None:
    with pytest.raises(BackupError):
        read_manifest_body(real_manifest[0], b"[" * 200_000 + b"]" * 200_000)


def read_manifest_body(folder: Path, body: bytes) -> dict[str, Any]:
    (folder / MANIFEST).write_bytes(body)
    return read_manifest(folder)


# -- schema reader ------------------------------------------------------------------------------------------
SCHEMA = (
    "PRAGMA page_size = 512;"
    "CREATE TABLE note(id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT COLLATE NOCASE, body TEXT, n REAL,"
    " g INT GENERATED ALWAYS AS (n * 2) VIRTUAL);"
    'CREATE TABLE "odd ""name"" t"(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;'
    "CREATE INDEX note_title ON note(title COLLATE swiftLocalizedCaseInsensitiveCompare);"
    "CREATE VIEW recent AS SELECT id, title FROM note WHERE n > 1;"
    'CREATE TRIGGER note_ai AFTER INSERT ON note BEGIN INSERT INTO "odd ""name"" t"(k, v)'
    " VALUES (new.title, x'00'); END;"
    "CREATE VIRTUAL TABLE note_ft USING fts5(title, body, content='note', content_rowid='id');"
    "INSERT INTO note(title, body, n) VALUES ('a', 'body one', 1.5), ('b', 'body two', 2.5), ('c', NULL, 3);"
    "PRAGMA user_version = 7;"
)


@pytest.fixture(scope="module")
def small_database(scratch: Path) -> bytes:
    db = scratch / "schema.sqlite"
    conn = apsw.Connection(str(db))
    conn.create_collation("swiftLocalizedCaseInsensitiveCompare", lambda a, b: (a > b) - (a < b))
    for _ in conn.execute(SCHEMA):
        pass
    conn.close()
    return db.read_bytes()


flips = st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8)
counter = iter(range(10**9))


def schema_text_offsets(data: bytes) -> list[int]:
    """Offsets of the schema's SQL text (and the names stored with it) in the file."""
    out: list[int] = []
    for word in (b"CREATE", b"note", b"odd", b"recent"):
        start = 0
        while (at := data.find(word, start)) >= 0:
            out += range(at, min(at + 40, len(data)))
            start = at + 1
    return sorted(set(out))


@FUZZ
@given(flips, st.sampled_from(["anywhere", "first-page", "schema-text"]), st.booleans())
def test_schema_reader_on_damaged_databases(
    scratch: Path, small_database: bytes, changes: list[tuple[int, int]], where: str, high: bool
) -> None:
    """Bytes changed anywhere, in the first page (header and schema root), or inside the schema's SQL text
    and names (``high``: bytes >= 0x80, which makes text that is not UTF-8)."""
    data = bytearray(small_database)
    text_at = schema_text_offsets(small_database)
    for at, value in changes:
        if where == "schema-text":
            at = text_at[at % len(text_at)]
        data[at % (512 if where == "first-page" else len(data))] = (value | 0x80) if high else value
    path = scratch / f"damaged-{next(counter)}.sqlite"
    path.write_bytes(bytes(data))
    try:
        conn = open_source(path)
    except FailbackError:
        path.unlink()
        return
    try:
        read_schema(conn)
    except FailbackError:
        pass
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(str(path) + suffix):
                os.unlink(str(path) + suffix)
