"""Source integrity on every path: export and rollback quick_check the snapshot; a damaged source is refused
(exit 3) unless its only damage is in FTS indexes the target rebuilds from their intact text and the user
passes --repair-fts, which is then recorded as a repair (results, report, audit log)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.db.connect import connect, run_script
from failback.db.integrity import judge_integrity, quick_check_file, rebuilt_fts, refusal
from failback.db.schema import read_schema
from failback.pipeline.export import plan_for

from .conftest import file_hashes
from .make_corpus import FTS4_NOTES, b_fts4_bad_index
from .test_corpus import CONFIG as CORPUS_CONFIG

FTS4 = "malformed inverted index for FTS4 table main.{}"
FTS5 = 'fts5: corruption found reading blob 2336462209025 from table "{}"'
BTREE = "Tree 5 (note) page 9 cell 0: invalid page number 77"
# the corpus's app config, plus the word the damaged index lost: the source finds no row, the repaired target all
CONFIG = CORPUS_CONFIG + '\n[verify]\nfts_queries = ["qzx"]\n'


# -- the decision (pure) -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("problems", "rebuilt", "fts", "other"),
    [
        ([], {"ft"}, (), ()),
        ([FTS4.format("ft")], {"ft"}, ("ft",), ()),
        ([FTS5.format("f5"), FTS5.format("f5")], {"f5"}, ("f5",), ()),  # one table, two findings
        ([FTS4.format("a"), FTS5.format("b")], {"a", "b"}, ("a", "b"), ()),
        ([FTS4.format("gone")], {"ft"}, (), (FTS4.format("gone"),)),  # an index the target does not rebuild
        ([FTS4.format("ft"), BTREE], {"ft"}, ("ft",), (BTREE,)),  # a b-tree too: not only FTS
        (["Page 12 is never used"], {"ft"}, (), ("Page 12 is never used",)),
        ([FTS4.format("main.x")[:-2]], {"ft"}, (), (FTS4.format("main.x")[:-2],)),  # another shape: not ours
    ],
)
def test_judge_integrity(problems: list[str], rebuilt: set[str], fts: tuple[str, ...], other: tuple[str, ...]) -> None:
    verdict = judge_integrity(problems, rebuilt)
    assert (verdict.problems, verdict.fts_indexes, verdict.other) == (tuple(problems), fts, other)
    assert verdict.repairable == bool(problems and not other)


def test_refusal_names_what_is_damaged() -> None:
    fts_only = refusal(judge_integrity([FTS4.format("note ft")], {"note ft"}), Path("app.sqlite"))
    assert fts_only.exit_code == 3
    assert str(fts_only).startswith("app.sqlite: the FTS index of note ft is malformed (quick_check)")
    assert "--repair-fts" in fts_only.hint and """INSERT INTO "note ft"("note ft") VALUES('rebuild')""" in fts_only.hint
    btree = refusal(judge_integrity([FTS4.format("ft"), BTREE], {"ft"}), Path("app.sqlite"))
    assert str(btree) == f"app.sqlite is damaged (quick_check): {BTREE} (and 1 more problem(s))"
    assert "--repair-fts" not in btree.hint and "\n" not in str(btree)


def test_rebuilt_fts_are_the_kept_or_converted_fts_tables_with_text(tmp_path: Path) -> None:
    db = tmp_path / "kinds.sqlite"
    conn = apsw.Connection(str(db))
    run_script(
        conn,
        "CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT);"
        "CREATE VIRTUAL TABLE own4 USING fts4(body);"  # kept, rebuilt from its rows
        "CREATE VIRTUAL TABLE ext4 USING fts4(body, content='note');"  # kept, 'rebuild' from note
        "CREATE VIRTUAL TABLE own5 USING fts5(body);"  # converted to FTS4 from its text
        "CREATE VIRTUAL TABLE ext5 USING fts5(body, content='note', content_rowid='id');"  # converted, from note
        "CREATE VIRTUAL TABLE none4 USING fts4(body, content='');"  # contentless: no text to rebuild from
        "CREATE VIRTUAL TABLE none5 USING fts5(body, content='');"  # contentless: refused by the plan
        'CREATE VIRTUAL TABLE f3 USING fts3(a, content="x");',  # FTS3: content is a column, text of its own
    )
    schema = read_schema(conn)
    conn.close()
    assert rebuilt_fts(schema, plan_for(db)) == {"own4", "ext4", "own5", "ext5", "f3"}


# -- the effect: quick_check of a real file ------------------------------------------------------------------
def bad_fts_db(folder: Path, name: str = "bad.sqlite") -> Path:
    """The corpus's fts4-bad-index.sqlite, built here: note_ft's index no longer matches its intact text."""
    (folder / ".build").mkdir(parents=True)
    b_fts4_bad_index(folder / ".build", folder / name)
    shutil.rmtree(folder / ".build")
    return folder / name


def test_quick_check_reports_the_malformed_fts4_index(tmp_path: Path) -> None:
    db = bad_fts_db(tmp_path)
    assert quick_check_file(db) == [FTS4.format("note_ft")]
    conn = connect(db, readonly=True)
    try:  # the text is intact: every row reads back; the index is what is wrong
        assert conn.execute("SELECT count(*) FROM note_ft").get == 30
        assert conn.execute("SELECT count(*) FROM note_ft WHERE note_ft MATCH 'qzx'").get == 0
    finally:
        conn.close()


def wreck_a_leaf_page(db: Path) -> None:
    """Overwrite a leaf page of table t (a b-tree, not an FTS index)."""
    conn = apsw.Connection(str(db))
    run_script(conn, "PRAGMA page_size = 1024; " + FTS4_NOTES + "CREATE TABLE t(v); ")
    run_script(
        conn,
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 40)"
        " INSERT INTO t SELECT printf('%.300c', 'x') FROM i;",
    )
    page = conn.execute("SELECT max(pageno) FROM dbstat WHERE name = 't' AND pagetype = 'leaf'").get
    conn.close()
    with db.open("r+b") as fh:
        fh.seek(1024 * (page - 1))
        fh.write(b"\x0d\x00\x00\xff\xff\xff\xff\xff" + b"\xab" * 64)


def test_quick_check_names_the_table_of_a_damaged_btree(tmp_path: Path) -> None:
    db = tmp_path / "btree.sqlite"
    wreck_a_leaf_page(db)
    problems = quick_check_file(db)
    assert problems and all("\n" not in p for p in problems)
    assert any("(t)" in p for p in problems), problems
    assert not judge_integrity(problems, {"note_ft"}).repairable


# -- export --------------------------------------------------------------------------------------------------
def test_export_refuses_a_malformed_fts_index_unless_asked_to_repair_it(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Defect 7: this source exported with exit 0 and "checks passed", its index silently rebuilt."""
    src = bad_fts_db(tmp_path)
    before = file_hashes(src)
    refused = cli("export", "bad.sqlite", "out.sqlite")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    error, hint = refused.stderr.splitlines()[:2]
    assert error == (
        "error: bad.sqlite: the FTS index of note_ft is malformed (quick_check); its text is intact and the target "
        "would rebuild the index from it: a repair"
    )
    assert hint.startswith("hint: pass --repair-fts")
    assert sorted(os.listdir(tmp_path)) == ["bad.sqlite"]  # no target, no temp file

    repaired = cli("export", "bad.sqlite", "out.sqlite", "--repair-fts", "--json")
    assert repaired.returncode == 0, repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["source_integrity"]["repaired"] == ["note_ft"]
    assert result["source_integrity"]["problems"] == [FTS4.format("note_ft")]
    v = result["verification"]
    assert v["ok"] and {t["table"]: t["status"] for t in v["tables"]} == {"note": "equal", "note_ft": "equal"}
    [search] = [c for c in v["checks"] if c["kind"] == "search"]
    assert search["name"] == "note_ft" and search["detail"].startswith("not compared")
    out = connect(tmp_path / "out.sqlite", readonly=True)
    try:  # the repair: the rebuilt index finds what the text holds
        assert out.execute("PRAGMA quick_check").get == "ok"
        assert out.execute("SELECT count(*) FROM note_ft WHERE note_ft MATCH 'qzx'").get == 30
    finally:
        out.close()
    text = cli("export", "bad.sqlite", "out2.sqlite", "--repair-fts")
    assert "repaired FTS index of note_ft rebuilt from its intact text (--repair-fts)" in text.stdout
    assert file_hashes(src) == before


def test_export_refuses_a_damaged_btree_even_with_repair_fts(tmp_path: Path, cli: Callable[..., Any]) -> None:
    wreck_a_leaf_page(tmp_path / "bad.sqlite")
    res = cli("export", "bad.sqlite", "out.sqlite", "--repair-fts")
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("error: bad.sqlite is damaged (quick_check): ") and "(t)" in res.stderr
    assert not (tmp_path / "out.sqlite").exists()


# -- rollback --------------------------------------------------------------------------------------------------
def bad_app(folder: Path) -> Path:
    """An app folder whose native database has the malformed FTS4 index."""
    src = bad_fts_db(folder, "native.sqlite")
    (folder / "app.env").write_text("DATABASE_PROVIDER=native\n")
    (folder / "failback.toml").write_text(CONFIG.format(source="native.sqlite"))
    return src


def test_rollback_refuses_then_repairs_when_asked(tmp_path: Path, cli: Callable[..., Any]) -> None:
    app = tmp_path / "app"
    src = bad_app(app)
    before = file_hashes(src)
    for mode in ("emergency", "standard"):  # the check runs in both modes, before the conversion
        refused = cli("rollback", "--yes", "--mode", mode, "--json", cwd=app)
        assert refused.returncode == 3, refused.stderr
        out = json.loads(refused.stdout)
        assert out["status"] == "refused" and "FTS index of note_ft is malformed" in out["error"]
        assert "convert" not in out["results"] and not (app / "target.sqlite").exists()
    assert (app / "app.env").read_text() == "DATABASE_PROVIDER=native\n"

    done = cli("rollback", "--yes", "--repair-fts", "--json", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["results"]["assess"]["source_integrity"]["repaired"] == ["note_ft"]
    assert (app / "app.env").read_text() == "DATABASE_PROVIDER=sqljs\n"
    run = app / ".failback" / "runs" / out["run"]
    report = (run / "report.md").read_text()
    assert "## Source repaired" in report and "FTS index of note_ft rebuilt from its intact text" in report
    assert "FTS index of note_ft rebuilt" in (run / "report.html").read_text()
    events = [json.loads(line) for line in (app / ".failback" / "audit.jsonl").read_text().splitlines()]
    [repair] = [e for e in events if e["event"] == "source.repair-fts"]
    assert repair["run"] == out["run"] and repair["data"]["repaired"] == ["note_ft"]
    assert file_hashes(src) == before


def test_an_emergency_repair_pays_its_debt(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """The deferred verification of an emergency rollback that repaired an index knows it was repaired: the
    search parity of that table is not held against the damaged source."""
    app = tmp_path / "app"
    bad_app(app)
    done = cli("rollback", "--yes", "--mode", "emergency", "--repair-fts", "--json", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    paid = cli("verify", "--debt", "--json", cwd=app)
    assert paid.returncode == 0, paid.stdout + paid.stderr
    checks = json.loads(paid.stdout)["checks"]
    assert [c["detail"][:12] for c in checks if c["kind"] == "search"] == ["not compared"]


def test_rollback_of_a_source_whose_schema_no_longer_reads_is_refused_as_damaged(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Damage that reaches the pages the schema reader needs (an FTS table's shadow pages in a small file) stops
    the run before quick_check could: that is the source's damage (exit 3, named for the source), not an
    unreadable snapshot (exit 2)."""
    import failback

    failback.create_demo_fleet(tmp_path / "fleet", 1, notes=40, corrupt=1)  # the fleet demo's damaged tenant
    (app,) = (tmp_path / "fleet" / "tenants").iterdir()
    src, app_env, target = app / "native.sqlite", app / "app.env", app / "app-sqljs.sqlite"
    before = file_hashes(src, app_env, target)
    refused = cli("rollback", "--yes", "--json", cwd=app)
    assert refused.returncode == 3, refused.stderr
    out = json.loads(refused.stdout)
    assert out["status"] == "refused" and out["error"].startswith(f"{src}: damaged: its page-for-page snapshot ")
    assert file_hashes(src, app_env, target) == before
