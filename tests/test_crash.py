"""Crash tests: a real `failback rollback` process is SIGKILLed at points inside every step, then resumed (or
aborted). At every kill point the app sees the complete old state or the complete new state; after `resume`
the result equals an uninterrupted run; after `abort` everything is as before the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from failback.audit import verify_chain
from failback.config import load_config
from failback.demo import create_demo
from failback.rollback import Options, Rollback
from failback.switch import current_provider

from .conftest import digest_specs_of, file_hashes, sqljs_digests

KILL_POINTS = [
    "progress:snapshot",  # inside the snapshot copy
    "snapshot.end",  # snapshot taken, checkpoint not yet written
    "progress:compress",  # inside the backup's compression
    "backup.source-stored",  # source backed up, the old target not yet
    "backup.end",
    "assess.end",
    "progress:copy",  # inside the conversion's data copy
    "progress:search",  # inside the FTS4 build
    "convert.end",
    "verify.end",  # sql.js and apsw verification done, checkpoint not yet written
    "switch.kept",  # old target linked into the run directory, not yet replaced
    "switch.renamed",  # new target in place, config not yet rewritten
    "switch.config",  # config rewritten, checkpoint not yet written
    "switch.end",
    "postcheck.end",
]


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("crash") / "demo"
    create_demo(d, notes=200)
    return d


def failback(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def target_digests(demo: Path, db: Path) -> dict[str, Any]:
    """The content of ``db`` as sql.js reads it, over the native database's tables."""
    return sqljs_digests(db, digest_specs_of(demo / "native.sqlite"))


def app_view_is_consistent(demo: Path, old_target: bytes, expected: dict[str, Any]) -> str:
    """What the app would load right now: the native db (config says native), or a complete sql.js db."""
    provider = current_provider(demo / "app.env", "DATABASE_PROVIDER")
    if provider == "native":
        return "old"
    assert provider == "sqljs"
    assert target_digests(demo, demo / "app-sqljs.sqlite") == expected, "config points at a partial database"
    return "new"


@pytest.fixture(scope="module")
def expected(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The result of an uninterrupted run: the target's content digests."""
    d = tmp_path_factory.mktemp("reference") / "demo"
    shutil.copytree(demo_template, d)
    res = failback("rollback", "-c", str(d / "failback.toml"), "--yes")
    assert res.returncode == 0, res.stderr
    return target_digests(d, d / "app-sqljs.sqlite")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_anywhere_then_resume(point: str, demo_template: Path, expected: dict[str, Any], tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(demo_template, demo)
    cfg = str(demo / "failback.toml")
    source_before = file_hashes(demo / "native.sqlite", demo / "native.sqlite-wal")
    old_target = (demo / "app-sqljs.sqlite").read_bytes()

    killed = failback("rollback", "-c", cfg, "--yes", env={"FAILBACK_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-500:]}"
    app_view_is_consistent(demo, old_target, expected)

    resumed = failback("resume", "-c", cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "sqljs"
    assert target_digests(demo, demo / "app-sqljs.sqlite") == expected
    log = demo / ".failback" / "audit.jsonl"
    assert verify_chain(log).ok
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("switch.config") == 1, "config switched more or less than once"
    assert not list(demo.glob(".app-sqljs.sqlite.failback-*")), "temp target left behind"
    assert not list((demo / ".failback" / "runs").glob("*/snapshot.sqlite")), "snapshot left behind"
    assert file_hashes(demo / "native.sqlite", demo / "native.sqlite-wal") == source_before


@pytest.mark.parametrize("point", ["progress:copy", "switch.renamed", "switch.config"])
def test_kill_then_abort_restores_the_old_state(point: str, demo_template: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(demo_template, demo)
    cfg = str(demo / "failback.toml")
    before = {p: p.read_bytes() for p in (demo / "app.env", demo / "app-sqljs.sqlite")}
    assert failback("rollback", "-c", cfg, "--yes", env={"FAILBACK_KILL_AT": point}).returncode == -signal.SIGKILL
    status = failback("status", "-c", cfg)
    assert "running" in status.stdout and "failback resume" in status.stdout
    aborted = failback("abort", "-c", cfg)
    assert aborted.returncode == 0, aborted.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not list(demo.glob(".app-sqljs.sqlite.failback-*"))
    assert "aborted" in failback("status", "-c", cfg, "--json").stdout
    assert failback("resume", "-c", cfg).returncode == 2  # nothing left to resume


def test_sigterm_stops_cleanly_with_exit_4_and_resumes(demo_template: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(demo_template, demo)
    cfg_path = demo / "failback.toml"
    cfg = load_config(cfg_path)

    def terminate_after_backup(step: str, event: str, _: dict[str, Any]) -> None:
        if step == "backup" and event == "done":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler asks the run to stop at the next safe point

    outcome = Rollback(cfg, cfg_path, Options(yes=True), on_step=terminate_after_backup).run()
    assert outcome.exit_code == 4 and outcome.status == "interrupted"
    assert "SIGTERM" in str(outcome.error)
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "native"
    assert (outcome.run_dir / "snapshot.sqlite").exists(), "artifacts kept for resume"
    resumed = Rollback.resume(cfg, cfg_path)
    assert resumed.exit_code == 0 and resumed.run_id == outcome.run_id
    events = [
        r["event"]
        for r in json.loads("[" + ",".join((demo / ".failback/audit.jsonl").read_text().split("\n")[:-1]) + "]")
    ]
    assert "step.snapshot.reused" in events and "step.backup.reused" in events


def test_sigint_to_a_real_process_gives_exit_4(demo_template: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(demo_template, demo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "failback", "rollback", "-c", str(demo / "failback.toml"), "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FAILBACK_KILL_AT": "never"},
    )
    runs = demo / ".failback" / "runs"
    for _ in range(600):  # wait (bounded) until the run has started its first step
        states = list(runs.glob("*/state.json")) if runs.exists() else []
        if states and '"running"' in states[0].read_text():
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 4, err
    assert "Traceback" not in err and "resume" in err
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "native"
