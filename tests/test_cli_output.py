"""What the command line shows: progress bars, `status` with runs that changed nothing, the exit-code lists, and
errors that name no internal path. Real runs, real processes, a real rich Progress."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from failback.cli import INTERNAL_ERROR
from failback.cli.common import ProgressBars
from failback.config import load_config
from failback.docs import error_classes
from failback.pipeline.rollback import Options, Rollback

from .conftest import Mounts

Cli = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[1]


def test_a_finished_phase_leaves_the_screen_and_each_step_has_its_own_bar(demo_dir: Path) -> None:
    bar = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    bars = ProgressBars(bar)
    running = ""
    starts: list[tuple[str, list[str]]] = []  # (step, the bars on screen when it started)
    finished: list[str] = []  # phases that reached their total outside their own step
    stale: list[tuple[str, list[str]]] = []  # such a phase still on screen
    ends: list[list[str]] = []  # the bars on screen after each step ended

    def visible() -> list[str]:
        return sorted(t.description for t in bar.tasks)

    def tick(phase: str, done: int, total: int) -> None:
        bars(phase, done, total)
        key = phase.split(" ", 1)[0]
        if done >= total > 0 and key != running:
            finished.append(phase)
            if any(d.startswith(key) for d in visible()):
                stale.append((phase, visible()))

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        nonlocal running
        bars.step(name, event)
        running = name if event == "start" else ""
        if event == "start":
            starts.append((name, visible()))
        else:
            ends.append(visible())

    cfg_path = demo_dir / "failback.toml"
    outcome = Rollback(load_config(cfg_path), cfg_path, Options(yes=True), tick, on_step).run()
    assert outcome.exit_code == 0, outcome.error
    assert ("verify", ["verify"]) in starts  # verify, which reports no progress, has a bar, and only it
    assert [shown for _, shown in starts] == [[name] for name, _ in starts]  # nothing left from the step before
    assert "copy" in finished and stale == [] and ends == [[]] * len(ends) and bar.tasks == []


def _runs(cli: Cli, demo: Path) -> dict[str, str]:
    res = cli("status", "--json", cwd=demo)
    assert res.returncode == 0, res.stderr
    return {r["id"]: r["status"] for r in json.loads(res.stdout)["runs"]}


def test_status_folds_runs_that_changed_nothing(demo_dir: Path, cli: Cli) -> None:
    cli("assess", cwd=demo_dir)  # a dry run
    assert cli("rollback", cwd=demo_dir).returncode == 3  # high risk without --yes: refused
    assert cli("rollback", "--yes", cwd=demo_dir).returncode == 0
    runs = _runs(cli, demo_dir)  # --json lists every run
    assert sorted(runs.values()) == ["done", "dry-run", "refused"]
    by_status = {s: run_id for run_id, s in runs.items()}
    plain = cli("status", cwd=demo_dir).stdout
    assert by_status["done"] in plain and by_status["dry-run"] not in plain
    folded = [line for line in plain.splitlines() if by_status["refused"] in line]
    assert len(folded) == 1 and folded[0].startswith(
        f"2 run(s) that changed nothing not listed (1 refused, 1 dry-run; newest {by_status['refused']} refused: "
    )
    every = cli("status", "--all", cwd=demo_dir).stdout
    assert all(run_id in every for run_id in runs) and "not listed" not in every


def test_a_failed_calibration_names_no_internal_path(demo_dir: Path, cli: Cli, mounts: Mounts) -> None:
    """The calibration times failback on a sample in a temporary folder, gone when the error is read."""
    state = mounts.tmpfs(demo_dir / ".failback", "4m")  # room for the snapshot, not for the calibration
    res = cli("assess", cwd=demo_dir)
    assert res.returncode == 6, res.stdout + res.stderr
    error, hint = res.stderr.splitlines()
    assert error.startswith(f"error: calibration (timing each step on a ~4 MB sample database in {state}) failed: ")
    assert "not enough free space" in error and ".calibrate-" not in res.stderr
    assert hint.startswith("hint: ") and hint.endswith("--mode emergency skips the calibration")
    assert not list(state.glob(".calibrate-*"))


def _exit_codes(text: str) -> set[int]:
    """The codes of an "Exit codes: 0 … · 1 … · …" paragraph."""
    paragraph = text[text.index("Exit codes") :].split("\n\n", 1)[0]
    return {int(c) for c in re.findall(r"(?:^|[:·]\s*)(\d+) ", paragraph.replace("\n", " "))}


def test_the_exit_code_lists_name_every_code() -> None:
    codes = {0, INTERNAL_ERROR} | {cls.exit_code for cls in error_classes()}
    assert _exit_codes((ROOT / "README.md").read_text(encoding="utf-8")) == codes
    assert _exit_codes((ROOT / "src" / "failback" / "errors.py").read_text(encoding="utf-8")) == codes
    runbook = (ROOT / "docs" / "ROLLBACK-PROCEDURES.md").read_text(encoding="utf-8")
    assert {int(c) for c in re.findall(r"^\| (\d+) \| [^`|]", runbook, re.MULTILINE)} == codes
