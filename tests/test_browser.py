"""Verification in a real browser: the sql.js job (actions.js) run in headless Chromium gives exactly Node's
results, on the demo and on every storage class and non-UTF-8 text; a changed value fails naming its table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback import api
from failback.db.connect import connect
from failback.db.schema import digest_specs, read_schema
from failback.engines import BROWSER_ENGINE, SOURCE_ENGINE, get_engine
from failback.errors import EngineError
from failback.pipeline.export import PlanSettings, verify_export
from failback.verify import browser_check

pytestmark = pytest.mark.usefixtures("chromium")

NON_UTF8 = "CAST(x'ff41fe' AS TEXT)"  # bytes that are not UTF-8, stored as TEXT
VALUES = [
    "NULL",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9007199254740993",  # 2**53 + 1: a JS number would round it
    "1.5",
    "-0.0",
    "1e300",
    "9e999",  # +Infinity
    "'héllo ✓ 😀'",
    "''",
    "x''",
    "x'00ff10'",
    NON_UTF8,
]


def storage_classes_db(path: Path, encoding: str = "UTF-8") -> Path:
    """Every storage class in an untyped column, text that is not UTF-8, a WITHOUT ROWID table keyed by text."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA encoding = '{encoding}'")
    conn.execute("CREATE TABLE v(id INTEGER PRIMARY KEY, x ANY, t TEXT)")
    conn.execute("CREATE TABLE k(name TEXT PRIMARY KEY, n) WITHOUT ROWID")
    with conn:
        for i, value in enumerate(VALUES):
            conn.execute(f"INSERT INTO v VALUES ({i}, {value}, 'row ' || {i})")
            conn.execute(f"INSERT INTO k VALUES ('k{i:02}', {value})")
    conn.close()
    return path


def actions_for(db: Path) -> list[dict[str, Any]]:
    """Digests and row hashes of every table, and queries returning every value (a non-UTF-8 one fails alike) or
    keeping the rows whose value is TEXT with a prefix."""
    conn = connect(db, readonly=True)
    try:
        specs = digest_specs(read_schema(conn))
    finally:
        conn.close()
    actions: list[dict[str, Any]] = [{"op": "digest", "tables": [s.to_json() for s in specs]}]
    for s in specs:
        actions.append({"op": "row_hashes", "table": s.to_json(), "order_by": None if s.rowid else list(s.columns)})
        actions.append({"op": "query", "sql": f'SELECT * FROM "{s.table}"'})
    actions.append({"op": "query", "sql": "SELECT id, hex(x), typeof(x) FROM v WHERE id < 14"})
    actions.append({"op": "query", "sql": "SELECT x, t FROM v", "keep": {"column": 0, "prefix": "h"}})  # 'héllo'
    params = [{"int": "-7"}, {"real": "-0.0"}, {"blob": "00ff"}, "ü"]
    actions.append({"op": "query", "sql": "SELECT ?, ?, ?, ?", "params": params})
    return actions


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16le"])
def test_every_storage_class_equals_node(tmp_path: Path, encoding: str) -> None:
    db = storage_classes_db(tmp_path / "classes.sqlite", encoding)
    actions = actions_for(db)
    node = get_engine("sqljs").run(db, actions)
    browser = get_engine(BROWSER_ENGINE).run(db, actions)
    assert browser.results == node.results and browser.version == node.version
    assert all(r["ok"] for r in node.results[:2])
    non_utf8 = [r for r in node.results if not r["ok"] and "not valid UTF-8" in r["error"]]
    assert bool(non_utf8) == (encoding == "UTF-8")  # SQLite converts a UTF-16 database's text when read
    native = get_engine(SOURCE_ENGINE).run(db, actions[:1]).results[0]
    assert browser.results[0] == native  # the fbd1 digests equal apsw's
    assert browser.peak_rss_bytes and browser.peak_js_heap_bytes


def test_storage_classes_export_verifies_in_browser(tmp_path: Path) -> None:
    source = storage_classes_db(tmp_path / "classes.sqlite")
    target = tmp_path / "classes-sqljs.sqlite"
    api.export(source, target)
    report = api.verify(source, target, browser=True)
    assert report.ok, report.problems
    assert report.browser is not None and report.browser["difference"] is None
    assert {t.table for t in report.tables} == {"v", "k"}


@pytest.fixture
def demo_target(demo_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The demo's native database and its export for sql.js."""
    source, target = demo_dir / "native.sqlite", tmp_path / "app.sqlite"
    api.export(source, target)
    return source, target


def test_demo_verifies_in_browser_as_in_node(demo_target: tuple[Path, Path], cli: Any) -> None:
    source, target = demo_target
    done = cli("verify", str(source), str(target), "--browser", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    browser = report["browser"]
    assert report["ok"] and browser["difference"] is None and browser["warning"] is None
    assert browser["version"] == report["sqljs_version"] == "3.54.1"
    assert browser["peak_tab_bytes"] > browser["peak_js_heap_bytes"] > 0
    shown = cli("verify", str(source), str(target), "--browser")
    assert shown.returncode == 0 and "In the browser (SQLite 3.54.1)" in shown.stdout


def change_a_title(target: Path) -> None:
    conn = apsw.Connection(str(target))
    conn.execute("UPDATE note SET title = title || '!' WHERE id = 7")
    conn.close()


def test_changed_value_fails_in_browser_naming_the_table(demo_target: tuple[Path, Path]) -> None:
    source, target = demo_target
    change_a_title(target)
    report = verify_export(source, target, PlanSettings(), engine=get_engine(BROWSER_ENGINE))
    assert not report.ok
    assert report.problems[0].startswith("table note: content differs")
    assert not any(p.startswith("in the browser") for p in report.problems)  # the browser read what is there
    assert [t.table for t in report.tables if not t.ok] == ["note", "note_ft"]  # note_ft: note's text indexed


def test_browser_difference_from_node_names_the_table(demo_target: tuple[Path, Path], tmp_path: Path) -> None:
    """The browser run is compared with Node's action by action: a difference names the table it is in."""
    _, target = demo_target
    changed = tmp_path / "changed.sqlite"
    changed.write_bytes(target.read_bytes())
    change_a_title(changed)
    conn = connect(target, readonly=True)
    specs = digest_specs(read_schema(conn))
    conn.close()
    actions = [{"op": "digest", "tables": [s.to_json()]} for s in specs]
    tags = [f"digest:{s.table}" for s in specs]
    node = get_engine("sqljs").run(target, actions)
    same = browser_check(tags, node, get_engine(BROWSER_ENGINE).run(target, actions), 4096)
    assert same["difference"] is None and same["warning"] is None
    check = browser_check(tags, node, get_engine(BROWSER_ENGINE).run(changed, actions), 1)
    assert check["difference"].startswith("table note: the browser gives")
    assert check["warning"].startswith("the tab peaked at") and "above the 1 MB" in check["warning"]


def test_missing_chromium_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAILBACK_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(EngineError, match="browser verification needs Chromium: FAILBACK_CHROMIUM=") as err:
        get_engine(BROWSER_ENGINE).run(None, [])
    assert "apt-get install chromium" in (err.value.hint or "")
