"""Verification: every kind of difference is detected and located; debt is paid; baselines compare."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.assess.statements import prepare_statements
from failback.config import load_config
from failback.db.connect import connect, run_script
from failback.engines.sqljs import SqlJsEngine
from failback.journal import RunDir
from failback.pipeline.debt import read_debt, unpaid
from failback.pipeline.export import export_database, plan_for
from failback.pipeline.postcheck import Timing, compare, percentile
from failback.pipeline.rollback import Options, Rollback
from failback.verify import verify_target

SOURCE = """
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INT, price REAL, data BLOB);
INSERT INTO item VALUES (1, 'apple', 1, 0.5, x'00'), (2, 'pear', 2, 1.25, NULL), (3, 'fig', 3, 2.0, x'ff');
CREATE TABLE tag(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;
INSERT INTO tag VALUES ('a', 1), ('b', 2);
"""


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src.sqlite"
    conn = apsw.Connection(str(src))
    run_script(conn, SOURCE)
    conn.close()
    out = tmp_path / "out.sqlite"
    export_database(src, out)
    return src, out


def tamper(db: Path, sql: str) -> None:
    conn = connect(db)
    run_script(conn, sql)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "table", "where"),
    [
        ("UPDATE item SET name = 'Pear' WHERE id = 2", "item", "2"),  # a changed value
        ("UPDATE item SET qty = '2' WHERE id = 2", "item", "2"),  # INT column keeps 2: no change …
        ("UPDATE item SET price = 3 WHERE id = 3", "item", "3"),  # 2.0 → 3.0
        ("UPDATE item SET data = 'ff' WHERE id = 3", "item", "3"),  # a changed type: BLOB → TEXT
        ("DELETE FROM item WHERE id = 1", "item", "1"),  # a missing row
        ("INSERT INTO item VALUES (9, 'kiwi', 1, 1.0, NULL)", "item", "9"),  # an extra row
        ("UPDATE tag SET v = 20 WHERE k = 'b'", "tag", "'b'"),  # WITHOUT ROWID: named by its values
    ],
)
def test_every_kind_of_difference_is_detected_and_located(
    pair: tuple[Path, Path], sql: str, table: str, where: str
) -> None:
    src, out = pair
    tamper(out, sql)
    report = verify_target(out, plan_for(src), SqlJsEngine(), snapshot=src)
    if "qty = '2'" in sql:  # INTEGER affinity turns '2' back into 2: the data did not change
        assert report.ok, report.problems
        return
    assert not report.ok
    [problem] = [p for p in report.problems if p.startswith(f"table {table}:")]
    assert where in problem.split(";", 1)[1], problem


def test_a_changed_storage_class_is_a_difference(tmp_path: Path) -> None:
    src = tmp_path / "s.sqlite"
    conn = apsw.Connection(str(src))
    run_script(conn, "CREATE TABLE t(v); INSERT INTO t VALUES (1), (2)")
    conn.close()
    for n, new in enumerate(("1.0", "'1'", "x'01'")):
        out = tmp_path / f"o{n}.sqlite"
        export_database(src, out)
        tamper(out, f"UPDATE t SET v = {new} WHERE v = 1")
        assert not verify_target(out, plan_for(src), SqlJsEngine(), snapshot=src).ok, new


def test_reordered_but_equal_tables_pass(tmp_path: Path) -> None:
    src, other = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    for path, order in ((src, "ASC"), (other, "DESC")):
        conn = apsw.Connection(str(path))
        run_script(conn, "CREATE TABLE t(k TEXT PRIMARY KEY, v) WITHOUT ROWID; CREATE TABLE r(v)")
        with conn:
            for i in sorted(range(50), reverse=order == "DESC"):
                conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i))
                conn.execute("INSERT INTO r(rowid, v) VALUES (?, ?)", (i + 1, i * 2))
        conn.close()
    report = verify_target(other, plan_for(src), SqlJsEngine(), snapshot=src)
    assert report.ok, report.problems


@pytest.mark.parametrize("level", ["quick", "standard"])
def test_statements_that_write_run_in_the_verification_job_and_leave_its_digests_alone(
    pair: tuple[Path, Path], level: str
) -> None:
    """The old app's statements run in the verification's own sql.js job; what they write is rolled back and
    unseen by the digests (and counts), which equal those of a verification without them."""
    src, out = pair
    writes = ["DELETE FROM item", "UPDATE tag SET v = v + ?", "INSERT INTO item(name) VALUES (?)"]
    run = prepare_statements(out, [*writes, "SELECT id FROM item"], [])
    plain = verify_target(out, plan_for(src), SqlJsEngine(), snapshot=src, level=level)
    report = verify_target(out, plan_for(src), SqlJsEngine(), snapshot=src, level=level, statements=run)
    assert plain.ok and report.ok, report.problems
    assert [(c.sql, c.ok) for c in report.statements] == [(sql, True) for sql in run.statements]
    assert report.statements[-1].rows == 3  # run after the DELETE was rolled back
    assert [asdict(t) for t in report.tables] == [asdict(t) for t in plain.tables]
    assert report.to_json()["statements"] == [asdict(c) for c in report.statements]


def test_a_failing_statement_is_a_problem_after_those_of_the_data(pair: tuple[Path, Path]) -> None:
    src, out = pair
    tamper(out, "UPDATE item SET name = 'Pear' WHERE id = 2")
    run = prepare_statements(out, ["SELECT colour FROM item"], [])
    report = verify_target(out, plan_for(src), SqlJsEngine(), snapshot=src, statements=run)
    assert not report.statements[0].ok and "no such column: colour" in report.statements[0].error
    assert report.problems[0].startswith("table item: content differs")
    assert report.problems[-1] == report.statements[0].message()


def test_verify_command_exit_codes(pair: tuple[Path, Path], cli: Callable[..., Any]) -> None:
    src, out = pair
    ok = cli("verify", str(src), str(out), "--json")
    assert ok.returncode == 0, ok.stderr
    assert {t["table"] for t in json.loads(ok.stdout)["tables"]} == {"item", "tag"}
    gone = 2  # a row in the middle: the message must name it, not the last one
    tamper(out, f"DELETE FROM item WHERE id = {gone}")
    bad = cli("verify", str(src), str(out))
    assert bad.returncode == 1, bad.stderr
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in bad.stdout.splitlines() if ln.startswith("│")]
    assert {r[0]: r[-1] for r in rows if len(r) == 5} == {"item": "NO", "tag": "yes"}, bad.stdout  # the matrix
    [problem] = [ln for ln in bad.stdout.splitlines() if ln.startswith("✗ ")]
    assert problem.startswith("✗ table item: content differs"), problem
    assert problem.endswith(f"; rowid {gone}: in snapshot, missing in sqljs"), problem


def test_emergency_debt_is_paid_and_recorded(demo_dir: Path, cli: Callable[..., Any]) -> None:
    cfg_path = demo_dir / "failback.toml"
    cfg = load_config(cfg_path)
    outcome = Rollback(cfg, cfg_path, Options(mode="emergency", yes=True)).run()
    assert outcome.exit_code == 0, outcome.error
    assert [rd.id for rd in unpaid(cfg.state_path)] == [outcome.run_id]
    status = cli("status", "-c", str(cfg_path))
    assert "verification debt unpaid" in status.stdout
    # the app writes to its sql.js file after the rollback: the debt is paid on a byte-identical rebuild
    tamper(demo_dir / "app-sqljs.sqlite", "UPDATE note SET title = 'edited after the rollback' WHERE id = 1")
    paid = cli("verify", "-c", str(cfg_path), "--debt")
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert "rebuilt from the backup (byte-identical to the switched file)" in paid.stdout
    debt = read_debt(RunDir(cfg.state_path, outcome.run_id))
    assert debt is not None and debt["paid"]["ok"] is True
    assert unpaid(cfg.state_path) == []
    events = [json.loads(x)["event"] for x in (cfg.state_path / "audit.jsonl").read_text().splitlines()]
    assert "verify.debt" in events and "verify.debt.paid" in events
    again = cli("verify", "-c", str(cfg_path), "--debt")
    assert again.returncode == 2 and "no unpaid verification debt" in again.stderr


def test_baseline_and_postcheck(demo_dir: Path, cli: Callable[..., Any]) -> None:
    cfg_path = demo_dir / "failback.toml"
    rec = cli("baseline", "record", "-c", str(cfg_path), "--json")
    assert rec.returncode == 0, rec.stderr
    base = json.loads(rec.stdout)
    assert base["engine"] == "sqljs" and all(q["p95_ms"] >= q["p50_ms"] > 0 for q in base["queries"])
    assert set(base["metrics"]) == {"probe.p50_ms", "probe.p95_ms", "probe.errors"}
    cfg = load_config(cfg_path)
    outcome = Rollback(cfg, cfg_path, Options(yes=True)).run()
    post = outcome.results["postcheck"]
    assert post["baseline"] is True and len(post["queries"]) == len(cfg.benchmark.queries)
    assert all(q["before_p95_ms"] is not None and q["p95_ms"] > 0 for q in post["queries"])
    # a baseline a thousand times faster than anything sql.js can do: every query is a regression, which the
    # rollback reports and audits but does not undo
    state = cfg.state_path / "baseline.json"
    base["queries"] = [{**q, "p50_ms": 1e-6, "p95_ms": 1e-6} for q in base["queries"]]
    state.write_text(json.dumps(base))
    (demo_dir / "app.env").write_text((demo_dir / "app.env").read_text().replace("=sqljs", "=native"))
    (demo_dir / "app-sqljs.sqlite").unlink()
    cfg_path.write_text(cfg_path.read_text().replace("max_regression = 1.5", "max_regression = 1.5\nmin_delta_ms = 0"))

    def regressions() -> int:  # the first run's own timings may show one on a busy machine: count the second's
        events = [json.loads(x)["event"] for x in (cfg.state_path / "audit.jsonl").read_text().splitlines()]
        return events.count("postcheck.regression")

    before = regressions()
    again = Rollback(load_config(cfg_path), cfg_path, Options(yes=True)).run()
    assert again.exit_code == 0 and again.results["postcheck"]["ok"] is False
    assert not any(q["ok"] for q in again.results["postcheck"]["queries"])
    assert regressions() == before + 1


def test_regression_past_the_limit_is_flagged() -> None:
    baseline = {"queries": [{"sql": q, "p50_ms": 1.0, "p95_ms": 2.0 if q != "q3" else 0.1} for q in ("q1", "q2", "q3")]}
    rows = compare(baseline, [Timing("q1", 1.5, 2.9), Timing("q2", 3.0, 3.1), Timing("q3", 1.6, 2.9)], 1.5, 1.0)
    assert [r["ok"] for r in rows] == [True, False, False]
    jitter = compare(baseline, [Timing("q3", 0.1, 0.9)], 1.5, 1.0)  # 9x, but only 0.8 ms: noise
    assert jitter[0]["ok"]
    # the tail alone 29x slower, the median unchanged: one pause of a few ms in 20 runs, not the query
    assert compare(baseline, [Timing("q3", 1.0, 2.9)], 1.5, 1.0)[0]["ok"]
    assert rows[1]["ratio"] == pytest.approx(1.55)
    assert percentile([5, 1, 4, 2, 3], 0.5) == 3 and percentile([float(i) for i in range(1, 101)], 0.95) == 95
