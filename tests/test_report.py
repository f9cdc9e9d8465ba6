"""Run reports: report.json / report.md / report.html written into each run directory, `failback report`, and the
HTML page rendered in a real headless Chromium (no console errors, the run's figures on the page)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import failback.cli.report  # noqa: F401  (registers `failback report` until failback.cli imports it)
from failback.config import Config, load_config
from failback.db.connect import connect
from failback.demo import create_demo
from failback.engines.sqljs import SqlJsEngine
from failback.journal import STEPS, RunDir, RunState
from failback.pipeline.postcheck import record_baseline
from failback.pipeline.rollback import Options, Outcome, Rollback
from failback.report.data import load_report, render_json, table_sizes
from failback.report.html import render_html
from failback.report.markdown import render_markdown

from .conftest import DEMO_NOTES

CLI = "import failback.cli.report; from failback.cli import main; main(prog_name='failback')"
HOSTILE = "<script>alert('x')</script> & \"q\""


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `failback` CLI in a subprocess, with `report` registered."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Outcome]:
    """The demo rolled back for real, with a baseline recorded first (so the benchmark has a before)."""
    cfg_path = create_demo(tmp_path_factory.mktemp("report") / "demo", notes=DEMO_NOTES)
    cfg = load_config(cfg_path)
    record_baseline(cfg, SqlJsEngine())
    outcome = Rollback(cfg, cfg_path, Options(yes=True)).run()
    assert outcome.status == "done", outcome.error
    return cfg, outcome


@pytest.fixture(scope="module")
def source_rows(finished: tuple[Config, Outcome]) -> dict[str, int]:
    """Rows per table of the rolled-back source, counted by a reader of the source (what the report must show)."""
    cfg, _ = finished
    conn = connect(cfg.source_path, readonly=True)
    try:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').get for t in ("note", "sqlite_sequence")}
    finally:
        conn.close()


def run_report(finished: tuple[Config, Outcome]) -> tuple[RunState, dict]:
    cfg, outcome = finished
    return load_report(RunDir(cfg.state_path, outcome.run_id), cfg.state_path / "audit.jsonl")


def test_run_directory_holds_every_report(finished: tuple[Config, Outcome], source_rows: dict[str, int]) -> None:
    _, outcome = finished
    state, data = run_report(finished)
    files = {f: (outcome.run_dir / f"report.{f}").read_text(encoding="utf-8") for f in ("json", "md", "html")}
    assert json.loads(files["json"])["run"]["id"] == outcome.run_id
    md = files["md"]
    for role, step in (("source", "source"), ("previous target", "previous_target")):
        backup = state.step("backup").result[step]
        assert f"## Backup of the {role}: `{backup['id']}`" in md
        assert backup["sha256"]["raw"] in md and backup["sha256"]["compressed"] in md
    assert f"| note | {source_rows['note']} · " in md and "### Search parity" in md and "### Query parity" in md
    assert "## Benchmark (ms, sql.js)" in md
    bench = state.step("postcheck").result["queries"]
    assert all(q["before_p95_ms"] is not None for q in bench), "the baseline gives every query a before"
    assert "| virtual table | note_ft | convert |" in md
    assert [r["event"] for r in data["audit"]][:2] == ["run.start", "step.snapshot.done"]
    assert "switch.config" in md and "run.end" in md


def test_html_is_one_self_contained_file(finished: tuple[Config, Outcome]) -> None:
    _, outcome = finished
    page = (outcome.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page  # nothing to fetch, nothing to run
    assert "<link" not in page and "src=" not in page and "url(" not in page
    assert page.count("<svg") == 3  # timeline, size by table, benchmark
    assert outcome.run_id in page


def test_size_by_table_uses_verified_rows_and_measured_bytes(
    finished: tuple[Config, Outcome], source_rows: dict[str, int]
) -> None:
    sizes = {name: (rows, size) for name, rows, size in table_sizes(run_report(finished)[1])}
    assert sizes["note"][0] == source_rows["note"] and sizes["note"][1]
    # counted by verification, not by the assessment
    assert sizes["sqlite_sequence"][0] == source_rows["sqlite_sequence"]
    assert sizes["note_ft_data"][0] is None and sizes["note_ft_data"][1]  # internal: bytes only


def test_everything_from_the_data_is_escaped(finished: tuple[Config, Outcome]) -> None:
    state, data = run_report(finished)
    state, data = copy.deepcopy(state), copy.deepcopy(data)
    state.error = HOSTILE
    data["verification"]["tables"][0]["table"] = HOSTILE
    data["assessment"]["findings"][0]["message"] = HOSTILE
    data["plan"]["decisions"][0]["name"] = HOSTILE
    data["audit"][0]["event"] = HOSTILE
    state.step("postcheck").result["queries"][0]["sql"] = HOSTILE
    page = render_html(state, data)
    assert "<script" not in page and "alert(&#x27;x&#x27;)" in page and "&quot;q&quot;" in page
    assert HOSTILE in render_markdown(state, data)  # Markdown is text: shown as written


def test_report_command_renders_each_format(finished: tuple[Config, Outcome], tmp_path: Path) -> None:
    cfg, outcome = finished
    cwd = cfg.base
    md = run_cli("report", cwd=cwd)
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith(f"# failback run {outcome.run_id}\n")
    as_json = run_cli("report", outcome.run_id[:17], "--format", "json", cwd=cwd)
    assert json.loads(as_json.stdout)["run"]["status"] == "done"
    out = tmp_path / "r.html"
    html = run_cli("report", "--format", "html", "-o", str(out), "-c", str(cwd / "failback.toml"), cwd=tmp_path)
    assert html.returncode == 0 and f"wrote {out}" in html.stderr
    state, data = run_report(finished)
    assert out.read_text(encoding="utf-8") == render_html(state, data)
    missing = run_cli("report", "nope", cwd=cwd)
    assert missing.returncode == 2 and "no single run matches 'nope'" in missing.stderr


def test_report_of_a_run_killed_before_its_report(demo_dir: Path) -> None:
    killed = run_cli("rollback", "--yes", cwd=demo_dir, env={"FAILBACK_KILL_AT": "verify.end"})
    assert killed.returncode == -9, killed.stderr
    (run,) = (demo_dir / ".failback" / "runs").iterdir()
    assert not (run / "report.json").exists()
    shown = run_cli("report", "--format", "md", cwd=demo_dir)
    assert shown.returncode == 0, shown.stderr
    md = shown.stdout
    assert f"# failback run {run.name}" in md and "status: **running**" in md
    assert "| backup | done |" in md and "| verify | running |" in md and "| switch | pending |" in md
    assert "## Risk: high" in md and "## Backup of the source" in md and "## Conversion" in md


def test_no_runs_yet(tmp_path: Path) -> None:
    (tmp_path / "failback.toml").write_text(
        '[source]\npath = "n.sqlite"\n[target]\npath = "t.sqlite"\n[app]\nconfig = "app.env"\n', "utf-8"
    )
    r = run_cli("report", cwd=tmp_path)
    assert r.returncode == 2 and "no runs yet" in r.stderr


# -- in a real browser ------------------------------------------------------------------------------
def render_in_chromium(chromium: Path, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load, and every console line (a page without script must log nothing)."""
    done = subprocess.run(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def test_console_errors_are_caught(chromium: Path, tmp_path: Path) -> None:
    """The check below is not vacuous: a page that fails is seen failing."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><p>x</p><script>throw new Error('boom')</script>", encoding="utf-8")
    _, console = render_in_chromium(chromium, page, tmp_path / "profile")
    assert any("Uncaught Error: boom" in line for line in console)


def test_html_report_renders_in_chromium(
    chromium: Path, finished: tuple[Config, Outcome], source_rows: dict[str, int], tmp_path: Path
) -> None:
    _, outcome = finished
    dom, console = render_in_chromium(chromium, outcome.run_dir / "report.html", tmp_path / "profile")
    assert console == []
    state, data = run_report(finished)
    assert f"failback run {outcome.run_id}" in dom
    for step in STEPS:
        assert f">{step}</text>" in dom, f"step {step} missing from the timeline"
    for t in data["verification"]["tables"]:
        assert f"{t['table']}</text>" in dom and f"{t['sqljs']['rows']} · {t['sqljs']['digest'][:12]}" in dom
    assert f"{source_rows['note']} rows · " in dom  # the size chart
    assert "before (baseline)" in dom and "after the rollback" in dom
    q = state.step("postcheck").result["queries"][0]
    assert f"{q['before_p95_ms']:.2f} ms" in dom and f"{q['p95_ms']:.2f} ms" in dom


def test_timeline_cuts_out_a_pause_and_shows_the_failed_step() -> None:
    """A run interrupted and resumed an hour later: the hour is named, not drawn; the failed step stands out."""
    state = RunState("r1", "failback.toml", "standard", "2026-01-01T00:00:00+00:00", status="failed", error="boom")
    times = {"snapshot": (1000.0, 1.0), "backup": (1001.0, 2.0), "assess": (1003.0 + 3600, 1.0)}
    for name, (started, seconds) in times.items():
        step = state.step(name)
        step.status, step.started, step.seconds = "done", started, seconds
    state.step("convert").status, state.step("convert").started = "failed", 3600 + 1004.0
    state.step("convert").seconds = 0.5
    svg = render_html(state, {k: None for k in ("plan", "assessment", "backup", "verification")} | {"audit": []})
    assert "1.00 s · after a 60 min pause" in svg
    assert ">0 s<" in svg and ">4 s<" in svg and ">3600 s<" not in svg  # the axis spans the work, not the hour
    assert "0.50 s failed" in svg and 'fill="#cf222e"' in svg and "<h2>Error</h2><p>boom</p>" in svg
    assert ">pending</text>" in svg  # verify and later: never started


@dataclass
class _Found:
    table: str
    rows: int


def test_state_json_and_report_json_write_a_step_result_alike(tmp_path: Path) -> None:
    """A step result holding what JSON cannot write (a dataclass) is written as its fields in both files."""
    rd, state = RunDir.create(tmp_path, tmp_path / "failback.toml", "standard")
    state.steps[0].result = {"found": _Found("note", 3), "when": tmp_path}
    rd.save(state)
    saved = json.loads(rd.file("state.json").read_text())["steps"][0]["result"]
    reported = json.loads(render_json(state, {}))["run"]["steps"][0]["result"]
    assert saved == reported == {"found": {"table": "note", "rows": 3}, "when": str(tmp_path)}
