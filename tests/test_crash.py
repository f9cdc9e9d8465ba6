"""Crash tests: a real `failback rollback` process is SIGKILLed at points inside every step (and inside `resume`,
`abort`, emergency mode and a rollback started by `watch`), then resumed or aborted.

Right after each kill the app sees the state the table below promises, and every stored backup verifies. After
`resume` the target is byte-identical to an uninterrupted run's, the steps whose results were still valid are
reused (the audit says so), the backups verify deeply, the old sql.js file is kept byte for byte, and nothing
is left behind: no temp file, no lock, no snapshot. After `abort` everything is as before the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from failback.audit import AuditLog, verify_chain
from failback.config import load_config
from failback.demo import create_demo
from failback.files import ensure_dir, file_xxh3, sha256_file
from failback.pipeline.rollback import Options, Rollback
from failback.pipeline.switch import current_provider
from failback.state import StatePaths

from .conftest import db_files, digest_specs_of, file_hashes, sqljs_digests

SMALL = 200  # notes: 5 tables to copy and 2 FTS tables to build, so those phases tick more than once
BIG = 10_000  # notes: 17.7 MB, more than one snapshot step (backup.STEP_BYTES = 16 MB) and several 4 MB
# compression chunks (backup.READ_CHUNK); used only where a tick inside the snapshot or compression is needed

BACKED = frozenset({"snapshot", "backup"})
BUILT = BACKED | {"convert"}
VERIFIED = BUILT | {"verify"}


@dataclass(frozen=True)
class Kill:
    """One kill point: where (``FAILBACK_KILL_AT``), what the app sees right after, what a resume must reuse."""

    at: str
    state: str  # "old": config native, old sql.js file byte-identical; "new": config sqljs, the converted target;
    # "between": config still native (the app reads the native db), the converted target already in place and
    # the old sql.js file kept in the run directory
    reused: frozenset[str]  # what the runbook promises: every step checkpointed with a valid result
    notes: int = SMALL


# A kill fires before the step's checkpoint ("<step>.end"), so that step itself runs again. The backup runs in
# the background and is joined after convert: until then nothing is checkpointed that can be trusted (the
# snapshot is trusted only with its backup's hash), so kills up to convert.end reuse nothing. Once renamed into
# place, the converted target is still found (by its hash) and its verification reused.
KILLS = [
    Kill("run.created", "old", frozenset()),  # the run's folder and first state written, nothing else: its --yes kept
    Kill("progress:snapshot:1", "old", frozenset(), BIG),  # after the first 16 MB step of 17.7 MB
    Kill("snapshot.end", "old", frozenset()),
    Kill("progress:compress:1", "old", frozenset(), BIG),  # 4 MB into the source's compression
    Kill("backup.source-stored", "old", frozenset()),  # source backed up, the old target not yet
    Kill("progress:compress:6", "old", frozenset(), BIG),  # 4 MB into the old target's compression
    Kill("backup.previous-target-stored", "old", frozenset()),  # both stored, the background job not returned
    Kill("backup.end", "old", frozenset()),
    Kill("assess.end", "old", frozenset()),
    Kill("progress:copy:3", "old", frozenset()),  # two tables copied, the third not yet (one open transaction)
    Kill("progress:search:2", "old", frozenset()),  # one FTS4 table built, the second not yet
    Kill("convert.end", "old", frozenset()),
    Kill("verify.end", "old", BUILT),  # sql.js and apsw verification done, checkpoint not yet written
    Kill("switch.kept", "old", VERIFIED),  # old target linked into the run directory, not yet replaced
    Kill("switch.renamed", "between", VERIFIED),  # new target in place, config not yet rewritten
    Kill("switch.config", "new", VERIFIED),  # config rewritten, checkpoint not yet written
    Kill("switch.end", "new", VERIFIED),
    Kill("postcheck.end", "new", VERIFIED),
    Kill("report.md", "new", VERIFIED),  # report.md written, report.html and report.json not yet
]
OLD_TARGET_COMPRESSION = "progress:compress:6"  # its tick must fall inside the old target's compression


@dataclass(frozen=True)
class Reference:
    """A demo app before any run, and what an uninterrupted rollback of it produces."""

    template: Path
    old_target: bytes  # the pre-migration sql.js file
    target_sha256: str  # the converted target (the build is deterministic: checked on two runs)
    digests: dict[str, tuple[int, str]]  # the converted target's content as sql.js reads it
    ticks: dict[str, list[tuple[int, int]]]  # per progress crash point, (done, total) of every tick, in order


def failback(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def target_digests(demo: Path, db: Path) -> dict[str, tuple[int, str]]:
    """The content of ``db`` as sql.js reads it, over the native database's tables."""
    return sqljs_digests(db, digest_specs_of(demo / "native.sqlite"))


def build_reference(base: Path, notes: int) -> Reference:
    """Two uninterrupted runs on copies of one demo: a real process, and one in this process that records the
    progress ticks (each tick passes the crash point ``progress:<first word of the phase>``).

    The template then keeps the machine's calibration (cached in the state folder, as after any earlier run):
    each run saves its measuring, and a kill in the background backup lands beside failback's own work, not
    beside the calibration (killed on its own in ``test_a_calibration_killed_midway_...``)."""
    template = base / "template"
    create_demo(template, notes=notes)
    by_process, in_process = base / "process", base / "in-process"
    shutil.copytree(template, by_process)
    res = failback("rollback", "-c", str(by_process / "failback.toml"), "--yes")
    assert res.returncode == 0, res.stderr
    shutil.copy(StatePaths(by_process / ".failback").calibration, ensure_dir(template / ".failback"))
    shutil.copytree(template, in_process)
    ticks: dict[str, list[tuple[int, int]]] = {}

    def record(phase: str, done: int, total: int) -> None:
        ticks.setdefault("progress:" + phase.split(" ", 1)[0], []).append((done, total))

    cfg_path = in_process / "failback.toml"
    assert Rollback(load_config(cfg_path), cfg_path, Options(yes=True), progress=record).run().exit_code == 0
    target = by_process / "app-sqljs.sqlite"
    assert sha256_file(target) == sha256_file(in_process / "app-sqljs.sqlite"), "the build is not deterministic"
    return Reference(
        template,
        (template / "app-sqljs.sqlite").read_bytes(),
        sha256_file(target),
        target_digests(by_process, target),
        ticks,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Reference]:
    """The reference for a demo of n notes, built once per module."""
    made: dict[int, Reference] = {}

    def get(notes: int) -> Reference:
        if notes not in made:
            made[notes] = build_reference(tmp_path_factory.mktemp(f"reference-{notes}"), notes)
        return made[notes]

    return get


def fresh_demo(ref: Reference, tmp_path: Path) -> tuple[Path, str]:
    demo = tmp_path / "demo"
    shutil.copytree(ref.template, demo)
    return demo, str(demo / "failback.toml")


def killed(cfg: str, at: str, *args: str) -> None:
    """Run a failback command with ``FAILBACK_KILL_AT=at``; it must die there."""
    res = failback(*args, "-c", cfg, env={"FAILBACK_KILL_AT": at})
    assert res.returncode == -signal.SIGKILL, f"{at} was never reached: {res.stderr[-500:]}"


def kept_target(demo: Path) -> Path:
    (kept,) = (demo / ".failback" / "runs").glob("*/previous-target.sqlite")
    return kept


def app_view(demo: Path, ref: Reference) -> str:
    """What the app would load right now; each state is checked completely (see ``Kill.state``)."""
    provider = current_provider(demo / "app.env", "DATABASE_PROVIDER")
    target = demo / "app-sqljs.sqlite"
    if provider == "sqljs":
        assert sha256_file(target) == ref.target_sha256, "config points at a database other than the converted one"
        assert target_digests(demo, target) == ref.digests, "sql.js does not read the converted content"
        return "new"
    assert provider == "native", provider
    if target.read_bytes() == ref.old_target:
        return "old"
    assert sha256_file(target) == ref.target_sha256, "the old sql.js file was replaced by a partial database"
    assert kept_target(demo).read_bytes() == ref.old_target, "the old sql.js file is not kept"
    return "between"


def backups_verify(cfg: str, *flags: str) -> dict[str, list[str]]:
    """`failback backup verify --all` as a real process: it must pass; the folders it checked."""
    res = failback("backup", "verify", "-c", cfg, "--all", "--json", *flags)
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, list[str]] = json.loads(res.stdout)
    assert not any(report.values()), report
    return report


def status_runs(cfg: str) -> list[dict[str, Any]]:
    """The runs `failback status --json` lists, newest first (a list; on main since the status folding, an
    object whose "runs" is that list)."""
    res = failback("status", "-c", cfg, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    return data["runs"] if isinstance(data, dict) else data


def audit_events(demo: Path) -> list[str]:
    log = demo / ".failback" / "audit.jsonl"
    assert verify_chain(log).ok
    return [r["event"] for r in AuditLog(log).records()]


def reused_by_last_resume(demo: Path) -> set[str]:
    events = audit_events(demo)
    last = len(events) - 1 - events[::-1].index("run.resume")
    return {e.split(".")[1] for e in events[last:] if e.startswith("step.") and e.endswith(".reused")}


def leftovers(demo: Path) -> set[Path]:
    """What a finished or aborted run must not leave: hidden temp names (the converted target's, atomic writes',
    temp folders'), *.part files, snapshots, backup folders without a manifest, work files."""
    allowed = {demo / ".failback-demo", demo / ".failback"}
    return {
        *(p for p in demo.rglob(".*") if p not in allowed),
        *demo.rglob("*.part*"),
        *(demo / ".failback" / "runs").glob("*/snapshot.sqlite*"),
        *(f for f in (demo / "backups").glob("*/*") if not (f / "manifest.json").exists()),
        *(demo / ".failback" / "tmp").glob("*"),
    }


def assert_finished(demo: Path, cfg: str, ref: Reference, source_before: dict[str, str | None]) -> None:
    """The state after a successful resume: the uninterrupted run's result, everything kept, nothing left."""
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "sqljs"
    assert sha256_file(demo / "app-sqljs.sqlite") == ref.target_sha256
    assert kept_target(demo).read_bytes() == ref.old_target
    assert audit_events(demo).count("switch.config") == 1, "config switched more or less than once"
    assert file_hashes(*db_files(demo / "native.sqlite")) == source_before
    assert not leftovers(demo)
    (run, *_) = status_runs(cfg)
    assert run["status"] == "done", run
    listed = json.loads(failback("backup", "list", "-c", cfg, "--json").stdout)
    assert {b["label"] for b in listed} == {"source", "previous-target"}
    stored = run["steps"][[s["name"] for s in run["steps"]].index("backup")]["result"]
    assert {stored["source"]["id"], stored["previous_target"]["id"]} <= {b["id"] for b in listed}
    assert set(backups_verify(cfg, "--deep")) == {f for b in listed for f in b["folders"]}
    lock = failback("rollback", "-c", cfg, "--dry-run", "--json")  # takes the lock: refused if one remained
    assert lock.returncode == 0, lock.stderr


@pytest.mark.parametrize("kill", KILLS, ids=[k.at for k in KILLS])
def test_kill_anywhere_then_resume(kill: Kill, reference: Callable[[int], Reference], tmp_path: Path) -> None:
    ref = reference(kill.notes)
    if kill.at.startswith("progress:"):  # the n-th tick lands inside its phase, not at an edge
        name, _, n = kill.at.rpartition(":")
        done, total = ref.ticks[name][int(n) - 1]
        assert 0 < done < total, (kill.at, ref.ticks[name])
        if kill.at == OLD_TARGET_COMPRESSION:
            assert total == len(ref.old_target)
    demo, cfg = fresh_demo(ref, tmp_path)
    source_before = file_hashes(*db_files(demo / "native.sqlite"))

    killed(cfg, kill.at, "rollback", "--yes")
    assert app_view(demo, ref) == kill.state
    backups_verify(cfg)

    resumed = failback("resume", "-c", cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(demo, cfg, ref, source_before)
    assert reused_by_last_resume(demo) == kill.reused


def test_a_resume_killed_too_then_resumed_again(reference: Callable[[int], Reference], tmp_path: Path) -> None:
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    source_before = file_hashes(*db_files(demo / "native.sqlite"))
    killed(cfg, "progress:copy:3", "rollback", "--yes")
    killed(cfg, "switch.renamed", "resume")
    assert app_view(demo, ref) == "between"
    backups_verify(cfg)
    resumed = failback("resume", "-c", cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(demo, cfg, ref, source_before)
    assert reused_by_last_resume(demo) == VERIFIED


def test_a_refused_resume_leaves_no_converted_target_behind(
    reference: Callable[[int], Reference], tmp_path: Path
) -> None:
    """Found by the model test: a resume refused before it trusted any step (the app was switched meanwhile, by
    hand or by another rollback) ended the run but left the killed attempt's converted target beside the target."""
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    killed(cfg, "convert.end", "rollback", "--yes")  # built, not yet checkpointed: nothing to trust
    assert list(demo.glob(".app-sqljs.sqlite.failback-*"))
    env = demo / "app.env"
    env.write_text(env.read_text().replace("DATABASE_PROVIDER=native", "DATABASE_PROVIDER=sqljs"))
    refused = failback("resume", "-c", cfg)
    assert refused.returncode == 3 and "not on the native provider" in refused.stderr, refused.stderr
    assert status_runs(cfg)[0]["status"] == "refused"
    assert not list(demo.glob(".app-sqljs.sqlite.failback-*")), "the refused run's converted target was left"
    assert (demo / "app-sqljs.sqlite").read_bytes() == ref.old_target


def abort_and_check(demo: Path, cfg: str, ref: Reference) -> None:
    """`abort` puts the old state back and leaves nothing to resume."""
    aborted = failback("abort", "-c", cfg)
    assert aborted.returncode == 0, aborted.stderr
    assert app_view(demo, ref) == "old"
    assert (demo / "app.env").read_bytes() == (ref.template / "app.env").read_bytes()
    (run, *_) = status_runs(cfg)
    assert run["status"] == "aborted"
    backups_verify(cfg)
    assert failback("resume", "-c", cfg).returncode == 2  # nothing left to resume
    assert not leftovers(demo)


@pytest.mark.parametrize("point", ["progress:copy:3", "switch.renamed", "switch.config"])
def test_kill_then_abort_restores_the_old_state(
    point: str, reference: Callable[[int], Reference], tmp_path: Path
) -> None:
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    killed(cfg, point, "rollback", "--yes")
    status = failback("status", "-c", cfg)
    assert "running" in status.stdout and "failback resume" in status.stdout
    abort_and_check(demo, cfg, ref)


def test_an_abort_killed_midway_is_aborted_again(reference: Callable[[int], Reference], tmp_path: Path) -> None:
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    killed(cfg, "switch.config", "rollback", "--yes")
    assert app_view(demo, ref) == "new"
    killed(cfg, "abort.config-restored", "abort")  # config back to native, the old target not yet
    assert app_view(demo, ref) == "between"
    abort_and_check(demo, cfg, ref)


@pytest.mark.parametrize(
    ("point", "state", "promised"), [("verify.end", "old", BUILT), ("switch.config", "new", VERIFIED)]
)
def test_emergency_mode_killed_then_resumed(
    point: str, state: str, promised: frozenset[str], reference: Callable[[int], Reference], tmp_path: Path
) -> None:
    """Emergency mode converts exactly what a standard run does; its verification debt is recorded once."""
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    source_before = file_hashes(*db_files(demo / "native.sqlite"))
    killed(cfg, point, "rollback", "--yes", "--mode", "emergency")
    assert app_view(demo, ref) == state
    backups_verify(cfg)
    resumed = failback("resume", "-c", cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(demo, cfg, ref, source_before)
    (debt,) = (demo / ".failback" / "runs").glob("*/verification-debt.json")
    recorded = json.loads(debt.read_text())
    assert recorded["paid"] is None and recorded["deferred"]
    assert recorded["target_xxh3"] == file_xxh3(demo / "app-sqljs.sqlite"), "the debt names another target"
    assert [r["verification_debt_unpaid"] for r in status_runs(cfg)] == [False, True]  # the dry run owes nothing
    # killed at verify.end, the verification runs again on the same bytes: still one debt, audited once
    assert audit_events(demo).count("verify.debt") == 1, "the debt is recorded more or less than once"
    assert reused_by_last_resume(demo) == promised


def test_a_rollback_started_by_watch_killed_then_resumed(reference: Callable[[int], Reference], tmp_path: Path) -> None:
    ref = reference(SMALL)
    demo, cfg = fresh_demo(ref, tmp_path)
    source_before = file_hashes(*db_files(demo / "native.sqlite"))
    (demo / "metrics.jsonl").write_text('{"latency": 500}\n')
    rules = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 1\n'
    with open(cfg, "a") as fh:
        fh.write(f'\n[triggers]\ninterval = 0.01\njsonl_path = "metrics.jsonl"\n{rules}')
    killed(cfg, "progress:copy:3", "watch", "--once")
    assert "trigger.fired" in audit_events(demo)
    assert app_view(demo, ref) == "old"
    backups_verify(cfg)
    resumed = failback("resume", "-c", cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished(demo, cfg, ref, source_before)
    assert reused_by_last_resume(demo) == frozenset()


def test_a_calibration_killed_midway_leaves_nothing_once_calibrated_again(tmp_path: Path) -> None:
    """Defect: a kill during the calibration left its sample folder, .failback/.calibrate-*, forever."""
    demo = tmp_path / "demo"
    create_demo(demo, notes=SMALL)
    cfg, state = str(demo / "failback.toml"), demo / ".failback"
    killed(cfg, "calibrate.sample", "assess")
    (left,) = state.glob(".calibrate-*")
    assert (left / "sample.sqlite").is_file() and not StatePaths(state).calibration.exists()
    again = failback("assess", "-c", cfg, "--json")
    assert again.returncode in (0, 3), again.stderr  # 3: the gate would refuse without --yes (a risk, no error)
    assert json.loads(again.stdout)["facts"]["calibration"] is not None
    assert not list(state.glob(".calibrate-*")) and StatePaths(state).calibration.is_file()


def test_sigterm_stops_cleanly_with_exit_4_and_resumes(reference: Callable[[int], Reference], tmp_path: Path) -> None:
    demo, _ = fresh_demo(reference(SMALL), tmp_path)
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
    assert reused_by_last_resume(demo) == BUILT


def test_sigint_to_a_real_process_gives_exit_4(reference: Callable[[int], Reference], tmp_path: Path) -> None:
    demo, cfg = fresh_demo(reference(SMALL), tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "failback", "rollback", "-c", cfg, "--yes"],
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
