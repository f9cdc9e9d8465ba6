"""The one-command rollback, end to end, on real files with the real sql.js."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failback.audit import verify_chain
from failback.backup.sets import list_backups
from failback.config import load_config
from failback.db.connect import connect, quote
from failback.db.digest import DigestSpec, TableDigest
from failback.db.schema import read_schema
from failback.demo import create_demo
from failback.demo.sample import SQLJS_USER_VERSION
from failback.engines.sqljs import SqlJsEngine
from failback.errors import ConfigError
from failback.files import file_xxh3
from failback.pipeline.rollback import Options, Rollback
from failback.pipeline.target_manifest import manifest_path, write_target_manifest

from .conftest import DEMO_NOTES, apsw_digests, digest_specs_of, sqljs_digests

Cli = Callable[..., subprocess.CompletedProcess[str]]


def sqljs(db: Path, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return SqlJsEngine().run(db, actions).results


def rowids(result: dict[str, Any]) -> set[int]:
    return {int(r[0]["int"]) for r in result["rows"]}


def test_demo_command_rolls_back_end_to_end(cli: Cli, tmp_path: Path) -> None:
    res = cli("demo", str(tmp_path / "d"), "--notes", "400")
    assert res.returncode == 0, res.stderr
    d = tmp_path / "d"
    assert "DATABASE_PROVIDER=sqljs" in (d / "app.env").read_text()
    assert "## Verification (standard): passed" in res.stdout
    # every row of the native database is in the target, as sql.js reads it
    specs = digest_specs_of(d / "native.sqlite")
    assert sqljs_digests(d / "app-sqljs.sqlite", specs) == apsw_digests(d / "native.sqlite", specs)
    assert verify_chain(d / ".failback" / "audit.jsonl").ok


def test_target_searches_and_writes_in_sqljs_like_fts5(demo_dir: Path) -> None:
    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(yes=True)).run()
    assert outcome.exit_code == 0, outcome.error
    native = connect(demo_dir / "native.sqlite", readonly=True)
    fts5 = {
        q: {r[0] for r in native.execute("SELECT rowid FROM note_ft WHERE note_ft MATCH ?", (q,))}
        for q in ("zebra", "cafe", "zeb*")
    }
    native.close()
    target = demo_dir / "app-sqljs.sqlite"
    find = {"op": "query", "sql": "SELECT rowid FROM note_ft WHERE note_ft MATCH 'zebra'"}
    results = sqljs(
        target,
        [
            *({"op": "query", "sql": "SELECT rowid FROM note_ft WHERE note_ft MATCH ?", "params": [q]} for q in fts5),
            {"op": "exec", "sql": "UPDATE note SET body = 'no striped animal here' WHERE id = 10"},
            find,
            {"op": "exec", "sql": "DELETE FROM note WHERE id = 20"},
            find,
            {
                "op": "exec",
                "sql": "INSERT INTO note(folderId, title, body, createdAt, updatedAt) "
                "VALUES (NULL, 'new', 'a zebra appears', '2026-01-01', '2026-01-01')",
            },
            {"op": "query", "sql": "SELECT last_insert_rowid(), (SELECT seq FROM sqlite_sequence WHERE name = 'note')"},
            find,
            {"op": "exec", "sql": "INSERT INTO note_ft(note_ft) VALUES('integrity-check')"},
        ],
    )
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    for (q, hits), r in zip(fts5.items(), results[:3], strict=True):
        assert hits and rowids(r) == hits, q
    zebra = fts5["zebra"]
    assert rowids(results[4]) == zebra - {10}
    assert rowids(results[6]) == zebra - {10, 20}
    new_id = int(results[8]["rows"][0][0]["int"])
    assert rowids(results[9]) == (zebra - {10, 20}) | {new_id}
    # AUTOINCREMENT counter kept: the new id is past the deleted last note, never a reused one
    stats = connect(demo_dir / "native.sqlite", readonly=True)
    seq, max_id = stats.execute("SELECT (SELECT seq FROM sqlite_sequence WHERE name='note'), max(id) FROM note").get
    stats.close()
    assert seq > max_id and new_id == seq + 1


def test_target_keeps_pragmas_and_journal_mode(demo_dir: Path) -> None:
    cfg = load_config(demo_dir / "failback.toml")
    assert Rollback(cfg, demo_dir / "failback.toml", Options(yes=True)).run().exit_code == 0
    t = connect(demo_dir / "app-sqljs.sqlite", readonly=True)
    n = connect(demo_dir / "native.sqlite", readonly=True)
    try:
        for p in ("application_id", "page_size"):
            assert t.execute(f"PRAGMA {p}").get == n.execute(f"PRAGMA {p}").get, p
        # target.user_version = "previous" (the default): the old app's migration runner sees its own version
        assert t.execute("PRAGMA user_version").get == SQLJS_USER_VERSION != n.execute("PRAGMA user_version").get
        assert t.execute("PRAGMA journal_mode").get == "delete"
        assert not t.execute("SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%swift%' OR sql LIKE '%fts5%'").get
    finally:
        t.close()
        n.close()
    assert not list((demo_dir).glob(".app-sqljs.sqlite.failback-*")), "temp target left behind"


@pytest.mark.parametrize("mode", ["standard", "emergency"])
def test_verification_loads_the_target_into_sqljs_once(
    demo_dir: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old app's statements run in the verification's sql.js job: the converted target is loaded once, and the
    verify step still lists the statement checks beside the tables (digests, or counts in emergency)."""
    loads: list[Path] = []
    run = SqlJsEngine.run

    def counted(self: SqlJsEngine, database: Path | None, actions: list[dict[str, Any]]) -> Any:
        if database is not None and ".failback-" in Path(database).name:  # the converted target, under its temp name
            loads.append(Path(database))
        return run(self, database, actions)

    monkeypatch.setattr(SqlJsEngine, "run", counted)
    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(mode=mode, yes=True)).run()
    assert outcome.exit_code == 0, outcome.error
    assert len(loads) == 1, loads
    verified = outcome.results["verify"]
    assert len(verified["statements"]) == 5 and all(c["ok"] for c in verified["statements"])
    tables = {t["table"]: t for t in verified["tables"]}
    assert tables["note"]["ok"] and tables["note"]["sqljs"]["rows"] == tables["note"]["snapshot"]["rows"] > 0
    assert bool(tables["note"]["sqljs"]["digest"]) == (mode == "standard")


def test_previous_target_and_config_are_kept(demo_dir: Path) -> None:
    old_target = (demo_dir / "app-sqljs.sqlite").read_bytes()
    old_env = (demo_dir / "app.env").read_bytes()
    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(yes=True)).run()
    assert outcome.exit_code == 0
    assert (outcome.run_dir / "previous-target.sqlite").read_bytes() == old_target
    assert (outcome.run_dir / "app-config.before").read_bytes() == old_env
    labels = {e["manifest"]["label"] for e in list_backups(cfg.backup_layers)}
    assert labels == {"source", "previous-target"}
    for e in list_backups(cfg.backup_layers):
        assert len(e["folders"]) == len(cfg.backup_layers)  # primary and mirror


def test_target_manifest_takes_the_verified_digests_only_for_the_same_spec(demo_dir: Path) -> None:
    """The switch's manifest reuses the digests sql.js read in the verification: they are those of the file in
    place; a proved digest whose spec differs from the target's (other columns) is not taken."""
    cfg = load_config(demo_dir / "failback.toml")
    assert Rollback(cfg, demo_dir / "failback.toml", Options(yes=True)).run().exit_code == 0
    target = cfg.target_path
    specs = digest_specs_of(target)
    truth = apsw_digests(target, specs)
    doc = json.loads(manifest_path(target).read_text())
    assert {t["table"]: (t["rows"], t["digest"]) for t in doc["tables"]} == truth and "note" in truth
    note = next(s for s in specs if s.table == "note")
    other = DigestSpec("note", note.columns[:-1], note.rowid)
    write_target_manifest(target, "sqljs", [(other, TableDigest("note", 1, "0" * 32))])
    doc = json.loads(manifest_path(target).read_text())
    assert {t["table"]: (t["rows"], t["digest"]) for t in doc["tables"]} == truth
    write_target_manifest(target, "sqljs", [(note, TableDigest("note", 1, "0" * 32))])  # the same spec: taken
    doc = json.loads(manifest_path(target).read_text())
    assert {t["table"]: (t["rows"], t["digest"]) for t in doc["tables"]} == truth | {"note": (1, "0" * 32)}


def test_write_after_snapshot_switches_nothing(tmp_path: Path) -> None:
    """A commit to the source after the snapshot must abort the switch (exit 5) and change nothing."""
    demo_dir = tmp_path / "demo"
    create_demo(demo_dir, notes=DEMO_NOTES)
    env_before = (demo_dir / "app.env").read_bytes()
    target_before = (demo_dir / "app-sqljs.sqlite").read_bytes()
    native = demo_dir / "native.sqlite"

    def app_writes(step: str, event: str, _: dict[str, Any]) -> None:
        if step == "verify" and event == "done":
            w = connect(native)  # the app writing; connect registers the Swift collation
            w.execute("UPDATE note SET title = title || ' (late edit)' WHERE id = 1")
            w.close()

    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(yes=True), on_step=app_writes).run()
    assert outcome.exit_code == 5 and outcome.status == "source-changed"
    assert (demo_dir / "app.env").read_bytes() == env_before
    assert (demo_dir / "app-sqljs.sqlite").read_bytes() == target_before
    assert not list(demo_dir.glob(".app-sqljs.sqlite.failback-*"))
    events = [json.loads(line)["event"] for line in (demo_dir / ".failback/audit.jsonl").read_text().splitlines()]
    assert "step.switch.failed" in events and "switch.config" not in events


def test_audit_chain_detects_an_edited_line(demo_dir: Path) -> None:
    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(yes=True)).run()
    assert outcome.exit_code == 0, outcome.error
    log = demo_dir / ".failback" / "audit.jsonl"
    lines = log.read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[0] == "run.start" and events[-1] == "run.end" and "switch.config" in events
    check = verify_chain(log)
    assert (check.ok, check.records) == (True, len(lines))
    edited = 3
    assert events[edited].startswith("step."), events
    lines[edited] = lines[edited].replace('"step.', '"stop.', 1)
    log.write_text("\n".join(lines) + "\n")
    broken = verify_chain(log)
    assert (broken.ok, broken.records) == (False, edited)  # the lines before the edit are intact
    assert broken.problem == f"line {edited + 1}: content does not match its hash (edited)"


def test_dry_run_changes_nothing(demo_dir: Path, cli: Cli) -> None:
    before = {p: p.read_bytes() for p in (demo_dir / "app.env", demo_dir / "app-sqljs.sqlite")}
    res = cli("rollback", "-c", str(demo_dir / "failback.toml"), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "Conversion plan" in res.stdout and "FTS5 → FTS4" in res.stdout
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (demo_dir / "backups").exists()


def test_high_risk_needs_yes(demo_dir: Path, cli: Cli) -> None:
    res = cli("rollback", "-c", str(demo_dir / "failback.toml"))
    assert res.returncode == 3
    assert "risk high" in res.stderr and "--yes" in res.stderr
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()


def test_emergency_mode_records_verification_debt(demo_dir: Path) -> None:
    cfg = load_config(demo_dir / "failback.toml")
    outcome = Rollback(cfg, demo_dir / "failback.toml", Options(mode="emergency", yes=True)).run()
    assert outcome.exit_code == 0, outcome.error
    verified = outcome.results["verify"]
    assert verified["level"] == "quick" and verified["ok"]
    conn = connect(cfg.source_path, readonly=True)
    try:  # every table and virtual table a reader of the source can SELECT from, and the AUTOINCREMENT counters
        names = [t.name for t in read_schema(conn).user_tables()] + ["sqlite_sequence"]
        rows = {n: conn.execute(f"SELECT count(*) FROM {quote(n)}").get for n in names}
    finally:
        conn.close()
    assert {t["table"]: t["sqljs"]["rows"] for t in verified["tables"]} == rows  # counted in sql.js
    # one backup layer (the primary), holding the source and the file it replaced; the mirror untouched
    primary, *mirrors = cfg.backup_layers
    assert mirrors and all(list_backups([m]) == [] for m in mirrors)
    kept = {e["manifest"]["label"]: e for e in list_backups([primary])}
    assert set(kept) == {"source", "previous-target"} and all(len(e["folders"]) == 1 for e in kept.values())
    debt = json.loads((outcome.run_dir / "verification-debt.json").read_text())
    assert "content digests" in debt["deferred"] and debt["deferred"] == verified["deferred"]
    assert (debt["run"], debt["backup"], debt["paid"]) == (outcome.run_id, kept["source"]["manifest"]["id"], None)
    assert debt["target"] == str(cfg.target_path) and debt["target_xxh3"] == file_xxh3(cfg.target_path)
    # what was deferred still holds: the switched file has the source's content, as sql.js reads it
    specs = digest_specs_of(cfg.source_path)
    assert sqljs_digests(cfg.target_path, specs) == apsw_digests(cfg.source_path, specs)


def test_an_unknown_mode_is_refused_before_anything_is_written(demo_dir: Path) -> None:
    """A mode failback does not know is a config error (exit 2) before the run starts: no run folder, no lock,
    no audit record, nothing in the state folder; the app stays on native."""
    cfg = load_config(demo_dir / "failback.toml")

    def state_files() -> list[tuple[str, bytes]]:
        return sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in cfg.state_path.rglob("*"))

    before = state_files()
    with pytest.raises(ConfigError, match="unknown mode 'fast'") as refused:
        Rollback(cfg, demo_dir / "failback.toml", Options(mode="fast", yes=True)).run()
    assert refused.value.exit_code == 2 and refused.value.hint == "use one of: standard, emergency"
    assert state_files() == before
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["rollback", "-c", "missing.toml"], "no such config file"),
        (["export", "nope.sqlite", "out.sqlite"], "no such file"),
        (["plan", "."], "is a folder"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(cli: Cli, args: list[str], needle: str) -> None:
    res = cli(*args)
    assert res.returncode == 2
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[0].startswith("error:")
    assert res.stderr.splitlines()[1].startswith("hint:")


def test_bad_config_is_a_clean_error(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "failback.toml"
    cfg.write_text('[source]\npath = 3\n[target]\npath = "t"\n[app]\nconfig = "a.env"\ntypo = 1\n')
    res = cli("rollback", "-c", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "failback.toml: " in res.stderr and "(and 1 more)" in res.stderr


def test_a_second_rollback_is_refused(demo_dir: Path, cli: Cli) -> None:
    """Once the app is on sql.js, another rollback would replace the database it now writes to."""
    assert cli("rollback", "-c", str(demo_dir / "failback.toml"), "--yes").returncode == 0
    target = (demo_dir / "app-sqljs.sqlite").read_bytes()
    again = cli("rollback", "-c", str(demo_dir / "failback.toml"), "--yes")
    assert again.returncode == 3
    assert "not on the native provider" in again.stderr
    assert (demo_dir / "app-sqljs.sqlite").read_bytes() == target


def test_plan_json_holds_the_plan_the_conversion_proved(tmp_path: Path) -> None:
    """plan.json, written at the snapshot, is written again when the convert step's proofs change the plan (a
    view proved in sql.js says so), and only then: a resume and a report read the proved plan."""
    directory = tmp_path / "demo"
    create_demo(directory, notes=DEMO_NOTES)
    conn = connect(directory / "native.sqlite")
    conn.execute("CREATE VIEW recent_notes AS SELECT id FROM note")
    conn.close()
    cfg = load_config(directory / "failback.toml")
    outcome = Rollback(cfg, cfg.file, Options(yes=True)).run()
    assert outcome.status == "done", outcome.error
    plan = json.loads((outcome.run_dir / "plan.json").read_text(encoding="utf-8"))
    view = next(d for d in plan["decisions"] if d["name"] == "recent_notes")
    assert view["reason"].startswith("prepares in sqljs"), view
