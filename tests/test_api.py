"""The public Python API: the examples of docs/python-api.md run and print what the doc says; str paths work;
results are typed, frozen where the API builds them, and JSON-able; errors are FailbackError subclasses with
exit codes; a dry run returns a RunResult; `import failback` stays light. Real files, real sql.js."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

import failback
from failback.docs import error_classes
from failback.errors import FailbackError

from .conftest import db_files, file_hashes

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
EXAMPLE = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)

REFUSED_DB = """
CREATE TABLE t(id INTEGER PRIMARY KEY, title TEXT);
CREATE VIEW v AS SELECT app_slug(title) AS s FROM t;
CREATE VIRTUAL TABLE c USING fts5(a, content='');
INSERT INTO t VALUES (1, 'Hello'); INSERT INTO c(rowid, a) VALUES (1, 'x');
"""


def make_db(path: Path, sql: str) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute(sql)
    conn.close()
    return path


def test_every_python_block_of_the_doc_prints_what_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DOC.read_text(encoding="utf-8")
    examples = EXAMPLE.findall(text)
    assert len(examples) == text.count("```python"), "each ```python block is followed by its ```text output"
    assert len(examples) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, (code, expected) in enumerate(examples, 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{DOC.name} example {i}", "exec"), namespace)
        assert printed.getvalue() == expected, f"example {i} of {DOC.name}"
    assert (tmp_path / "converted.sqlite").is_file()


def test_str_paths_typed_results_and_the_files_left(demo_dir: Path, tmp_path: Path) -> None:
    native, out = str(demo_dir / "native.sqlite"), str(tmp_path / "out.sqlite")
    result = failback.export(native, out, config=str(demo_dir / "failback.toml"))
    assert isinstance(result, failback.ExportResult) and result.ok
    assert result.target == Path(out) and Path(out).stat().st_size == result.bytes
    assert {t.table for t in result.tables} >= {"note", "folder", "note_ft"}
    assert all(t.status == "equal" for t in result.tables)
    assert result.decisions is result.plan.decisions
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.bytes = 0  # type: ignore[misc]
    assert json.loads(json.dumps(result.to_json()))["verification"]["ok"] is True

    check = failback.verify(native, out, config=str(demo_dir / "failback.toml"), level="quick")
    assert isinstance(check, failback.Verification) and check.ok and check.differences == []
    assert check.level == "quick"

    plan = failback.plan(native)
    assert isinstance(plan, failback.Plan) and plan.profile == "sqljs-1.16.0" and not plan.refused
    assert isinstance(failback.load_config(str(demo_dir / "failback.toml")), failback.Config)


def test_a_difference_is_reported_not_raised(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.sqlite"
    failback.export(demo_dir / "native.sqlite", out)
    conn = apsw.Connection(str(out))
    conn.execute("DELETE FROM folder WHERE id = (SELECT max(id) FROM folder)")
    conn.close()
    check = failback.verify(demo_dir / "native.sqlite", out)
    assert not check.ok
    assert any("folder" in line for line in check.differences)
    assert [t.table for t in check.tables if t.status == "differs"] == ["folder"]


def test_allow_drop_and_functions_change_the_plan_and_the_export(tmp_path: Path) -> None:
    db = make_db(tmp_path / "app.sqlite", REFUSED_DB)
    decided = {d.name: d.action.value for d in failback.plan(db).decisions}
    assert (decided["c"], decided["v"]) == ("refuse", "refuse")
    with pytest.raises(failback.UnsupportedSchemaError) as refused:
        failback.export(db, tmp_path / "out.sqlite")
    assert refused.value.exit_code == 3 and not (tmp_path / "out.sqlite").exists()

    result = failback.export(db, tmp_path / "out.sqlite", allow_drop=["c"], functions=["app_slug/1"])
    decided = {d.name: d.action.value for d in result.decisions}
    assert (decided["c"], decided["v"]) == ("drop", "keep")
    assert failback.verify(db, tmp_path / "out.sqlite", allow_drop=["c"], functions=["app_slug/1"]).ok


def test_data_findings_name_the_integers_sql_js_would_round(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "ids.sqlite",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO t VALUES (1, 9007199254740993);",
    )
    [finding] = failback.data_findings(str(db))
    assert isinstance(finding, failback.Finding) and finding.severity == "warn" and "t.n" in finding.message
    assert finding.to_json()["message"] == finding.message
    assert (
        failback.data_findings(
            make_db(tmp_path / "small.sqlite", "CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (42);")
        )
        == []
    )


def test_errors_are_failback_errors_with_exit_codes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    cases = [
        (lambda: failback.plan(junk), failback.NotADatabaseError, 2),
        (lambda: failback.export(str(tmp_path / "missing.sqlite"), tmp_path / "o.sqlite"), failback.InputError, 2),
        (lambda: failback.load_config(tmp_path / "failback.toml"), failback.ConfigError, 2),
        (lambda: failback.rollback(str(tmp_path / "failback.toml")), failback.ConfigError, 2),
        (lambda: failback.status(tmp_path / "failback.toml"), failback.ConfigError, 2),
    ]
    for call, cls, code in cases:
        with pytest.raises(FailbackError) as e:
            call()
        assert type(e.value) is cls and e.value.exit_code == code and e.value.hint, e.value
    assert {c.__name__ for c in error_classes()} <= set(failback.__all__), "every error class is public"


def test_rollback_dry_run_returns_a_run_result_and_changes_nothing(demo_dir: Path) -> None:
    config = demo_dir / "failback.toml"
    app_env, target = (demo_dir / "app.env").read_bytes(), file_hashes(*db_files(demo_dir / "app-sqljs.sqlite"))
    run = failback.rollback(str(config), dry_run=True)
    assert isinstance(run, failback.RunResult)
    assert (run.status, run.exit_code, run.error) == ("dry-run", 0, None)
    assert run.report_path == run.run_dir / "report.md" and run.report_path.is_file()
    assert run.results["assess"]["level"] == "high" and "switch" not in run.results  # unsynced changes
    assert json.loads(json.dumps(run.to_json(), default=str))["status"] == "dry-run"
    assert (demo_dir / "app.env").read_bytes() == app_env
    assert file_hashes(*db_files(demo_dir / "app-sqljs.sqlite")) == target

    status = failback.status(config)
    assert [r.id for r in status.runs] == [run.run_id] and status.runs[0].status == "dry-run"
    assert status.to_json()["runs"][0]["verification_debt_unpaid"] is False
    with pytest.raises(failback.InputError) as e:
        failback.abort(config, run.run_id)
    assert "nothing to abort" in e.value.message

    chain = failback.verify_audit(config)
    assert chain.ok and chain.records >= 2 and chain.to_json()["problem"] == ""
    assert f"{run.run_id}" in failback.report(config)
    assert json.loads(failback.report(config, run.run_id[:15], format="json"))["run"]["status"] == "dry-run"


def test_reports_json_writes_report_json_alone_and_an_unknown_set_is_refused(demo_dir: Path) -> None:
    config = demo_dir / "failback.toml"
    with pytest.raises(failback.ConfigError) as e:
        failback.rollback(config, dry_run=True, reports="pdf")  # type: ignore[arg-type]
    assert e.value.exit_code == 2 and "unknown report set 'pdf'" in e.value.message
    assert not failback.status(config).runs  # refused before any run was created
    run = failback.rollback(config, dry_run=True, reports="json")
    assert run.report_path == run.run_dir / "report.json" and run.report_path.is_file()
    assert sorted(p.name for p in run.run_dir.glob("report.*")) == ["report.json"]
    assert run.run_id in failback.report(config, format="md")  # rendered from report.json on demand


def test_a_refused_run_is_a_result_with_its_exit_code(demo_dir: Path) -> None:
    """Not raised: the run ended, its status, exit code, error and report say how."""
    (demo_dir / "app.env").write_text("DATABASE_PROVIDER=sqljs\nSQLJS_DATABASE_PATH=app-sqljs.sqlite\n")
    run = failback.rollback(demo_dir / "failback.toml", yes=True)
    assert run.status == "refused" and run.exit_code == 3 and isinstance(run.error, failback.RiskRefused)
    assert "not on the native provider" in run.error.message
    assert run.report_path.is_file()


def test_record_baseline_returns_the_timings_it_stored(demo_dir: Path) -> None:
    baseline = failback.record_baseline(demo_dir / "failback.toml", database=str(demo_dir / "app-sqljs.sqlite"))
    assert isinstance(baseline, failback.Baseline) and baseline.engine == "sqljs" and baseline.runs == 20
    assert [q.sql for q in baseline.queries] == failback.load_config(demo_dir / "failback.toml").benchmark.queries
    assert all(q.p95_ms >= q.p50_ms >= 0 and not q.error for q in baseline.queries)
    stored = json.loads((demo_dir / ".failback" / "baseline.json").read_text())
    assert stored == json.loads(json.dumps(baseline.to_json()))


def test_backups_through_the_api(demo_dir: Path, tmp_path: Path) -> None:
    config = str(demo_dir / "failback.toml")
    made = failback.create_backup(config, label="api")
    assert isinstance(made, failback.BackupResult) and made.verified_layers == 2
    [listed] = failback.list_backups(config)
    assert (listed.id, listed.label, len(listed.folders)) == (made.id, "api", 2)
    assert failback.verify_backup(config, made.id[:20], deep=True).ok
    restored = failback.restore_backup(config, made.id, str(tmp_path / "restored.sqlite"))
    assert restored.path == tmp_path / "restored.sqlite" and restored.path.is_file()
    with pytest.raises(failback.InputError):
        failback.restore_backup(config, made.id, tmp_path / "restored.sqlite")
    pruned = failback.prune_backups(config, dry_run=True)
    assert [v.id for v in pruned.verdicts if v.keep] == [made.id] and pruned.removed == []
    [kept] = failback.status(config).protected
    assert (kept.id, kept.present) == (made.id, True)


def test_import_is_light_and_the_api_names_stay_functions() -> None:
    code = (
        "import sys, failback\n"
        "heavy = [m for m in ('apsw', 'pydantic', 'rich', 'click', 'importlib.metadata') if m in sys.modules]\n"
        "import failback.cli, failback.verify, failback.plan.model, failback.assess.rules\n"
        "print(heavy, [type(getattr(failback, n)).__name__ for n in ('verify', 'plan', 'assess')])\n"
        "print(sorted(set(failback.__all__) - set(dir(failback))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[] ['function', 'function', 'function']\n[]\n"
