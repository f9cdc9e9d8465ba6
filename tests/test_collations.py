"""App collations (issue 22, items 1 and 2): an index ordered by the app's collation is never judged by failback's
stand-in, and a collation is mapped by what it does, with unique keys it would merge found before the build."""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from failback.assess.facts import Facts
from failback.assess.gather import collation_merges
from failback.assess.rules import evaluate
from failback.backup.sets import describe_database
from failback.config import ConvertConfig
from failback.db.collations import KNOWN, stand_in
from failback.db.connect import connect, run_script
from failback.db.integrity import check_integrity
from failback.db.schema import read_schema
from failback.engines import decode_typed
from failback.engines.sqljs import SqlJsEngine
from failback.errors import UnsupportedSchemaError
from failback.pipeline.export import build_target
from failback.plan.planner import plan_conversion, target_collation
from failback.profiles import load_profile

Cli = Callable[..., subprocess.CompletedProcess[str]]
STANDARD = "swiftLocalizedStandardCompare"
LOCALIZED_CI = "swiftLocalizedCaseInsensitiveCompare"
LOCALIZED = "swiftLocalizedCompare"


# -- the app's collations, as a Swift app orders (close enough to differ from failback's stand-ins) ---------
def _fold(s: str) -> str:
    """Accents and case removed: 'Élan' → 'elan'."""
    return "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)).casefold()


def _finder_key(s: str) -> list[tuple[int, int | str]]:
    """localizedStandardCompare: case-insensitive, digits compared as numbers ('report 2' < 'report 10')."""
    return [(0, int(p)) if p.isdigit() else (1, _fold(p)) for p in re.split(r"(\d+)", s) if p]


def _compare(key: Callable[[str], object]) -> Callable[[str, str], int]:
    def cmp(a: str, b: str) -> int:
        x, y = key(a), key(b)
        return (x > y) - (x < y)  # type: ignore[operator]

    return cmp


def _app_db(path: Path, script: str) -> Path:
    """A database written as the GRDB app writes it: with its own collations registered."""
    conn = apsw.Connection(str(path))
    conn.create_collation(STANDARD, _compare(_finder_key))
    conn.create_collation(LOCALIZED_CI, _compare(lambda s: (_fold(s), s)))
    conn.create_collation(LOCALIZED, _compare(lambda s: (_fold(s), s.swapcase())))
    run_script(conn, script)
    assert conn.execute("PRAGMA integrity_check").get == "ok"  # sound, as the app sees it
    conn.close()
    return path


NAMES = [f"report {n}" for n in (1, 2, 3, 10, 11, 20, 100)]
TITLES = ["Élan", "eclair", "Zoë", "apple", "Émile", "zebra", "Ábaco", "azur"]


def _docs_db(path: Path) -> Path:
    rows = ", ".join(f"({i}, '{n}', '{t}')" for i, (n, t) in enumerate(zip(NAMES, TITLES, strict=False), 1))
    return _app_db(
        path,
        f"""
        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
        CREATE TABLE doc(id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE {STANDARD} UNIQUE,
            title TEXT COLLATE {LOCALIZED_CI}, kind TEXT);
        CREATE INDEX doc_on_title ON doc(title);
        CREATE INDEX doc_on_kind ON doc(kind);
        CREATE TABLE tag(id INTEGER PRIMARY KEY, label TEXT UNIQUE);
        INSERT INTO doc(id, name, title) VALUES {rows};
        UPDATE doc SET kind = 'k' || (id % 3);
        INSERT INTO tag(label) VALUES ('a'), ('b');
        INSERT INTO grdb_migrations VALUES ('v1');
        """,
    )


def test_the_apps_order_differs_from_the_stand_ins() -> None:
    """The premise of the tests below: failback's stand-in orders these values unlike the app."""
    assert sorted(NAMES, key=_finder_key) != sorted(NAMES, key=lambda s: s.casefold())
    stand = stand_in(LOCALIZED_CI)
    assert any(stand(a, b) != _compare(lambda s: (_fold(s), s))(a, b) for a in TITLES for b in TITLES)


def _write_config(base: Path, source: Path) -> Path:
    path = base / "failback.toml"
    path.write_text(
        f'[source]\npath = "{source}"\n[target]\npath = "app-sqljs.sqlite"\n[app]\nconfig = "app.env"\n'
        '[backup]\ndir = "backups/primary"\nmirrors = ["backups/mirror"]\n'
    )
    return path


def test_backup_restore_and_deep_verify_accept_indexes_ordered_by_the_apps_collations(tmp_path: Path, cli: Cli) -> None:
    src = _docs_db(tmp_path / "app.sqlite")
    cfg = _write_config(tmp_path, src)
    created = cli("backup", "create", "-c", str(cfg), "--json")
    assert created.returncode == 0, created.stderr
    bid = json.loads(created.stdout)["id"]

    restored = tmp_path / "restored.sqlite"
    res = cli("backup", "restore", "-c", str(cfg), bid, str(restored))
    assert res.returncode == 0, res.stdout + res.stderr  # old: exit 1, "row 2 missing from index doc_on_title"
    text = " ".join(res.stdout.split())
    for index, collation in (("doc_on_title", LOCALIZED_CI), ("sqlite_autoindex_doc_1", STANDARD)):
        assert (
            f"index {index} uses collation {collation}, which failback only approximates: checked by comparing "
            "its entries with table doc" in text
        )
    assert "index doc_on_kind shares table doc with an index on an approximated collation" in text
    assert "tag" not in text  # a table without app collations gets the whole integrity_check
    assert describe_database(restored)[0]["tables"] == describe_database(src)[0]["tables"]

    deep = cli("backup", "verify", "-c", str(cfg), bid, "--deep")
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert deep.stdout.count("✓") == 2
    assert deep.stdout.count(f"note: index doc_on_title uses collation {LOCALIZED_CI}") == 2


def test_a_damaged_index_on_an_app_collation_is_still_found(tmp_path: Path) -> None:
    """The comparison can fail: two indexes of the table swap their b-trees (each now holds the other's
    values), which only a check reading the entries finds."""
    db = _docs_db(tmp_path / "app.sqlite")
    conn = apsw.Connection(str(db))
    roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_schema WHERE name IN ('doc_on_title', 'doc_on_kind')"))
    conn.execute("PRAGMA writable_schema = ON")
    for name, other in (("doc_on_title", "doc_on_kind"), ("doc_on_kind", "doc_on_title")):
        conn.execute("UPDATE sqlite_schema SET rootpage = ? WHERE name = ?", (roots[other], name))
    conn.close()
    checked = connect(db, readonly=True)
    try:
        result = check_integrity(checked)
    finally:
        checked.close()
    assert set(result.problems) == {
        f"index {name} does not hold the entries of table doc ({len(NAMES)} entries, {len(NAMES)} rows)"
        for name in ("doc_on_title", "doc_on_kind")
    }


# -- mapping by what a collation does ------------------------------------------------------------------------
def _plan(src: Path, **collations: str):  # type: ignore[no-untyped-def]
    conn = connect(src, readonly=True)
    try:
        schema = read_schema(conn)
    finally:
        conn.close()
    return plan_conversion(schema, load_profile("sqljs-1.16.0"), ConvertConfig(collations=collations))


def test_collations_map_by_what_they_do_and_the_config_still_overrides(tmp_path: Path) -> None:
    profile = load_profile("sqljs-1.16.0")
    options = ConvertConfig(collations={LOCALIZED: "NOCASE"})
    assert target_collation(LOCALIZED, profile, ConvertConfig()) == "BINARY"  # case-sensitive (old: NOCASE)
    assert target_collation(LOCALIZED, profile, options) == "NOCASE"
    assert target_collation("swiftCompare", profile, ConvertConfig()) == "BINARY"
    assert target_collation(LOCALIZED_CI, profile, ConvertConfig()) == "NOCASE"
    assert target_collation("swiftCaseInsensitiveCompare", profile, ConvertConfig()) == "NOCASE"
    assert target_collation("myLocalizedNoCaseOrder", profile, ConvertConfig()) == "BINARY"  # unknown: merges nothing
    assert target_collation("nocase", profile, ConvertConfig()) is None  # SQLite's own
    for k in KNOWN.values():
        assert target_collation(k.name.upper(), profile, ConvertConfig()) == k.target  # names are case-insensitive

    db = _app_db(tmp_path / "app.sqlite", f"CREATE TABLE f(name TEXT COLLATE {STANDARD}, b TEXT COLLATE {LOCALIZED})")
    reasons = {d.name: d.reason for d in _plan(db).decisions if d.kind == "collation"}
    assert reasons[STANDARD].startswith("not in the target; uses NOCASE: GRDB: Foundation localizedStandardCompare")
    assert "number-aware in the app ('report 2' before 'report 10'), not in sql.js" in reasons[STANDARD]
    assert reasons[LOCALIZED].startswith("not in the target; uses BINARY:")
    assert "never merges 'apple' and 'Apple'" in reasons[LOCALIZED]
    assert _plan(db, **{LOCALIZED: "NOCASE"}).collation_map == {STANDARD: "NOCASE", LOCALIZED: "NOCASE"}


def _apples_db(path: Path, unique: str) -> Path:
    return _app_db(
        path,
        f"""
        CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT COLLATE {LOCALIZED} {unique}, note TEXT);
        CREATE TABLE plain(id INTEGER PRIMARY KEY, name TEXT COLLATE {LOCALIZED});
        INSERT INTO fruit(name, note) VALUES ('apple', 'green'), ('Apple', 'red'), ('pear', NULL), (NULL, 'x'),
            (NULL, 'y');
        INSERT INTO plain(name) SELECT name FROM fruit;
        """,
    )


def _sqljs(db: Path, *sqls: str) -> list[list[list[object]]]:
    results = SqlJsEngine().run(db, [{"op": "query", "sql": s} for s in sqls]).results
    assert all(r["ok"] for r in results), results
    return [[[decode_typed(v) for v in row] for row in r["rows"]] for r in results]


@pytest.mark.parametrize("unique", ["UNIQUE", "UNIQUE ON CONFLICT IGNORE", "UNIQUE ON CONFLICT REPLACE"])
def test_a_case_sensitive_collation_keeps_apple_and_apple_apart(tmp_path: Path, cli: Cli, unique: str) -> None:
    src = _apples_db(tmp_path / "app.sqlite", unique)
    out = tmp_path / "out.sqlite"
    res = cli("export", str(src), str(out))
    assert res.returncode == 0, res.stdout + res.stderr  # old: exit 2 "report this", or rows dropped
    rows = _sqljs(
        out,
        "SELECT name, note FROM fruit ORDER BY id",
        "SELECT count(*) FROM plain WHERE name = 'apple'",
        "SELECT sql FROM sqlite_schema WHERE name = 'fruit'",
    )
    src_conn = connect(src, readonly=True)
    try:
        expected = [list(r) for r in src_conn.execute("SELECT name, note FROM fruit ORDER BY id")]
    finally:
        src_conn.close()
    assert rows[0] == expected  # no row merged or dropped
    assert rows[1] == [[1]]  # 'apple' does not match 'Apple' in sql.js
    assert "COLLATE BINARY" in str(rows[2][0][0])


def test_a_mapping_that_merges_unique_keys_is_refused_before_the_build(tmp_path: Path, cli: Cli) -> None:
    src = _apples_db(tmp_path / "app.sqlite", "UNIQUE ON CONFLICT IGNORE")
    toml = tmp_path / "failback.toml"
    toml.write_text(
        '[source]\npath = "app.sqlite"\n[target]\npath = "t.sqlite"\n[app]\nconfig = "a.env"\n'
        f'[convert]\ncollations = {{ {LOCALIZED} = "NOCASE" }}\n'
    )
    out = tmp_path / "out.sqlite"
    res = cli("export", str(src), str(out), "--config", str(toml))
    assert res.returncode == 3, res.stdout + res.stderr  # old: exit 2 "report this" (or rows dropped)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: unique index sqlite_autoindex_fruit_1 on fruit: with {LOCALIZED} → NOCASE the target treats as "
        "equal keys the source keeps apart ('apple' = 'Apple'): the build would fail or ON CONFLICT would drop rows"
    )
    assert f"map {LOCALIZED} to BINARY in [convert] collations" in res.stderr
    assert "report this" not in res.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.sqlite*"))


def test_assess_names_the_rows_a_mapping_would_merge(tmp_path: Path) -> None:
    """The gathering (snapshot query) and the pure finding, apart: NULL keys never collide, distinct keys
    under the target's collation are not named."""
    src = _apples_db(tmp_path / "app.sqlite", "UNIQUE")
    conn = connect(src, readonly=True)
    try:
        merges = collation_merges(conn, _plan(src, **{LOCALIZED: "NOCASE"}).collation_map)
        assert collation_merges(conn, _plan(src).collation_map) == []  # BINARY merges nothing
    finally:
        conn.close()
    assert [(m.table, m.index, m.mapped, m.groups) for m in merges] == [
        ("fruit", "sqlite_autoindex_fruit_1", ((LOCALIZED, "NOCASE"),), (("'apple'", "'Apple'"),))
    ]
    assessment = evaluate(Facts(collation_merges=merges))
    assert assessment.level == "critical"
    found = [f for f in assessment.findings if f.code == "collation-merge"]
    assert [f.message for f in found] == [merges[0].message()]
    assert found[0].fix.startswith(f"map {LOCALIZED} to BINARY")


def test_the_build_refuses_on_the_merges_it_is_handed_as_on_those_it_finds(tmp_path: Path) -> None:
    """A run's assess step hands its merges to the build (same snapshot, same mapping): the same refusal, and
    nothing written, as when the build looks itself (export, or a run that has none to hand)."""
    src = _apples_db(tmp_path / "app.sqlite", "UNIQUE")
    plan = _plan(src, **{LOCALIZED: "NOCASE"})
    conn = connect(src, readonly=True)
    try:
        merges = collation_merges(conn, plan.collation_map)
    finally:
        conn.close()
    dest = tmp_path / "t.sqlite"
    for handed in (None, merges):
        with pytest.raises(UnsupportedSchemaError) as refused:
            build_target(src, dest, plan, merges=handed)
        assert (refused.value.message, refused.value.hint) == (merges[0].message(), merges[0].fix())
        assert not dest.exists()
