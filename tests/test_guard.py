"""The guarded path for destructive acts, on real files and real `failback` processes: the source is checked
on every path (resume too), a target may not be the source or a backup or inside the state/backup folders
(however it is named), the published file must be the one the app config names, a replaced file's side files
move with it (and come back on abort), and the run lock is an OS lock that dies with its holder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.audit import AuditLog
from failback.config import load_config
from failback.db.connect import connect
from failback.demo import create_demo
from failback.errors import ConfigError, InputError, LockedError
from failback.guard import Guard, check_published, delete_backup
from failback.journal import RunLock
from failback.pipeline.switch import current_provider

from .conftest import apsw_digests, digest_specs_of

DATA = Path(__file__).parent / "data"
HOLD_LOCK = (
    "import sys; from pathlib import Path; from failback.journal import RunLock; "
    "lock = RunLock(Path(sys.argv[1])); lock.acquire(sys.argv[2]); print('held', flush=True); sys.stdin.read()"
)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("guard") / "demo"
    create_demo(d, notes=200)
    return d


@pytest.fixture
def demo(demo_template: Path, tmp_path: Path) -> Path:
    d = tmp_path / "demo"
    shutil.copytree(demo_template, d)
    return d


def fb(demo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `failback` command on the demo's failback.toml."""
    return subprocess.run(
        [sys.executable, "-m", "failback", *args, "-c", str(demo / "failback.toml")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except failback's own journal (runs, audit log, head, locks) and its
    metrics textfile, which reports every run, a refused one too."""
    skip = {".failback/runs", ".failback/audit.", ".failback/lock", ".failback/metrics.prom"}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(str(p.relative_to(folder)).startswith(s) for s in skip)
    }


def set_line(path: Path, prefix: str, line: str) -> None:
    """Replace the line of ``path`` that starts with ``prefix``."""
    lines = path.read_text().splitlines()
    [i] = [n for n, x in enumerate(lines) if x.startswith(prefix)]
    lines[i] = line
    path.write_text("\n".join(lines) + "\n")


def events(demo: Path) -> list[dict[str, object]]:
    return AuditLog(demo / ".failback" / "audit.jsonl").records()


def one_line_error(res: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr and text in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], res.stderr


@contextlib.contextmanager
def holding_lock(demo: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the demo's run lock (as run "other-run") until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(demo / ".failback"), "other-run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def lock_holder(demo: Path) -> Iterator[subprocess.Popen[str]]:
    with holding_lock(demo) as proc:
        yield proc


def wal_with_frames(db: Path, sql: str) -> bytes:
    """Leave ``db`` in WAL mode with ``sql`` committed only in its -wal (an app killed before a checkpoint);
    returns the -wal's bytes."""
    conn = connect(db)
    conn.execute("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0")
    conn.execute(sql)
    main, wal = db.read_bytes(), Path(f"{db}-wal").read_bytes()
    conn.close()  # checkpoints and deletes the -wal: put the pre-checkpoint state back
    db.write_bytes(main)
    Path(f"{db}-wal").write_bytes(wal)
    Path(f"{db}-shm").unlink(missing_ok=True)
    return wal


# -- defect 1: the source is checked on resume ---------------------------------------------------------
def test_resume_after_the_target_was_replaced_refuses_a_written_source(demo: Path) -> None:
    env_before, old_target = (demo / "app.env").read_bytes(), (demo / "app-sqljs.sqlite").read_bytes()
    killed = fb(demo, "rollback", "--yes", env={"FAILBACK_KILL_AT": "switch.renamed"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (demo / "app-sqljs.sqlite").read_bytes() != old_target, "the kill point is after the rename"
    app = connect(demo / "native.sqlite")  # the app, still on native, writes 5 notes
    app.execute(
        "INSERT INTO note(folderId, title, body, createdAt, updatedAt) "
        "SELECT folderId, 'late ' || id, body, createdAt, updatedAt FROM note ORDER BY id LIMIT 5"
    )
    app.close()

    resumed = fb(demo, "resume")
    one_line_error(resumed, 5, "source changed after the snapshot")
    # Nothing switched, and the target the killed attempt had replaced is back: the app sees the old state.
    assert (demo / "app.env").read_bytes() == env_before
    assert (demo / "app-sqljs.sqlite").read_bytes() == old_target
    log = events(demo)
    assert any(r["event"] == "guard.refused" and r["data"]["check"] == "source" for r in log)  # type: ignore[index]
    assert not any(r["event"] == "switch.config" for r in log)


# -- defect 2: a target that is (or lies among) what must never be replaced ---------------------------------
ALIASES = {
    "the source": "native.sqlite",
    "./the source": "./native.sqlite",
    "a hard link to the source": "hard-link.sqlite",
    "a symlink to the source": "sym-link.sqlite",
    "the source through a symlinked folder": "linked-dir/native.sqlite",
    "the source's -wal through a symlinked folder": "linked-dir/native.sqlite-wal",
    "a file in the state folder through a symlinked folder": "linked-dir/.failback/app.sqlite",
    "a file in the backup folder": "backups/primary/app.sqlite",
    "a file in the state folder": ".failback/app.sqlite",
}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_a_target_aliasing_a_protected_file_is_refused_before_anything_changes(demo: Path, name: str) -> None:
    target = ALIASES[name]
    os.link(demo / "native.sqlite", demo / "hard-link.sqlite")
    (demo / "sym-link.sqlite").symlink_to("native.sqlite")
    (demo / "linked-dir").symlink_to(".")
    for folder in ("backups/primary", ".failback"):  # the folders exist, each holding an old sql.js file
        (demo / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo / "app-sqljs.sqlite", demo / folder / "app.sqlite")
    set_line(demo / "failback.toml", 'path = "app-sqljs.sqlite"', f'path = "{target}"')
    set_line(demo / "app.env", "SQLJS_DATABASE_PATH=", f"SQLJS_DATABASE_PATH={target}")  # only the alias is wrong
    before = tree(demo)

    res = fb(demo, "rollback", "--yes")
    one_line_error(res, 2, f"refusing to replace {demo / target}")
    assert tree(demo) == before, "a file changed"
    assert not list((demo / ".failback" / "runs").glob("*/snapshot.sqlite*")), "refused only after the snapshot"
    assert any(r["event"] == "guard.refused" for r in events(demo))


def test_the_act_itself_refuses_a_target_that_became_the_source(demo: Path) -> None:
    """Preflight passed long ago; the config now says otherwise: the rename re-checks and refuses."""
    cfg = load_config(demo / "failback.toml")
    lock = RunLock(cfg.state_path)
    lock.acquire("test")
    guard = Guard(cfg, AuditLog(cfg.state_path / "audit.jsonl"), "test", lock)
    new = demo / ".app-sqljs.sqlite.failback-test"
    shutil.copyfile(demo / "app-sqljs.sqlite", new)
    cfg.target.path = Path("native.sqlite")
    before = tree(demo)
    with pytest.raises(InputError, match="it is the source database"):
        guard.put_in_place(new)
    with pytest.raises(InputError, match="it is the source database"):
        guard.put_back(demo / "app-sqljs.sqlite", ours=True)
    with pytest.raises(InputError, match="refusing to remove"):  # e.g. a state.json naming the source as temp
        guard.remove_temp(demo / ".failback" / "runs" / "test", demo / "native.sqlite")
    assert tree(demo) == before
    assert [r["data"]["check"] for r in events(demo)] == ["target", "put-back", "temp"]
    lock.release()
    with pytest.raises(LockedError, match="does not hold the lock"):  # no act without the lock
        guard.remove_temp(demo / ".failback" / "runs" / "test", new)
    assert new.exists()


# -- the published file is the one the app config names -------------------------------------------------
def test_a_target_the_app_config_does_not_name_is_refused(demo: Path) -> None:
    set_line(demo / "app.env", "SQLJS_DATABASE_PATH=", "SQLJS_DATABASE_PATH=elsewhere.sqlite")
    before = tree(demo)
    res = fb(demo, "rollback", "--yes")
    one_line_error(res, 2, f"the app config names {demo / 'elsewhere.sqlite'} (SQLJS_DATABASE_PATH)")
    assert str(demo / "app-sqljs.sqlite") in res.stderr
    assert tree(demo) == before


def test_the_app_configs_path_is_relative_to_its_folder(demo: Path) -> None:
    (demo / "conf").mkdir()
    shutil.move(demo / "app.env", demo / "conf" / "app.env")
    set_line(demo / "failback.toml", 'config = "app.env"', 'config = "conf/app.env"')
    set_line(demo / "conf" / "app.env", "SQLJS_DATABASE_PATH=", "SQLJS_DATABASE_PATH=../app-sqljs.sqlite")
    check_published(load_config(demo / "failback.toml"))  # the same file, named from conf/
    set_line(demo / "conf" / "app.env", "SQLJS_DATABASE_PATH=", "SQLJS_DATABASE_PATH=app-sqljs.sqlite")
    with pytest.raises(ConfigError, match=f"names {demo / 'conf' / 'app-sqljs.sqlite'}"):
        check_published(load_config(demo / "failback.toml"))
    set_line(demo / "conf" / "app.env", "SQLJS_DATABASE_PATH=", "# no path")
    with pytest.raises(ConfigError, match="sets no SQLJS_DATABASE_PATH"):
        check_published(load_config(demo / "failback.toml"))


# -- hot journal beside the target --------------------------------------------------------------------
def test_a_hot_journal_beside_the_target_is_refused_before_the_snapshot(demo: Path) -> None:
    shutil.copyfile(DATA / "hot-journal.sqlite", demo / "app-sqljs.sqlite")
    shutil.copyfile(DATA / "hot-journal.sqlite-journal", demo / "app-sqljs.sqlite-journal")
    before = tree(demo)
    res = fb(demo, "rollback", "--yes")
    one_line_error(res, 2, "left a hot app-sqljs.sqlite-journal")
    assert tree(demo) == before
    assert not (demo / "backups").exists(), "the source was snapshotted and backed up before the refusal"


# -- defect 3 and sidecars: a replaced file's -wal/-shm/-journal go with it --------------------------------
def test_export_force_over_a_file_with_an_uncheckpointed_wal(demo: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(demo / "app-sqljs.sqlite", old)
    wal_with_frames(old, "CREATE TABLE stale(x); INSERT INTO stale VALUES ('old wal row')")
    fresh = tmp_path / "fresh.db"
    native = str(demo / "native.sqlite")
    for target, extra in ((fresh, ()), (old, ("--force",))):
        res = subprocess.run(
            [sys.executable, "-m", "failback", "export", native, str(target), *extra], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr

    assert not Path(f"{old}-wal").exists(), "the old -wal was left beside the new file"
    specs = digest_specs_of(fresh)
    assert apsw_digests(old, specs) == apsw_digests(fresh, specs)  # a fresh connection reads the new content only
    conn = connect(old, readonly=True)
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'stale'").get == 0
    assert conn.execute("PRAGMA quick_check").get == "ok"
    conn.close()
    assert not list(tmp_path.glob(".old.db.failback-*")), "aside files left behind"


def test_the_switch_moves_the_old_targets_side_files_and_abort_brings_them_back(demo: Path) -> None:
    target = demo / "app-sqljs.sqlite"
    wal = wal_with_frames(target, "CREATE TABLE kept_in_wal(x); INSERT INTO kept_in_wal VALUES (42)")
    main = target.read_bytes()
    killed = fb(demo, "rollback", "--yes", env={"FAILBACK_KILL_AT": "switch.renamed"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [run] = (demo / ".failback" / "runs").iterdir()
    assert not Path(f"{target}-wal").exists(), "the old -wal stayed beside the new target"
    assert (run / "previous-target.sqlite-wal").read_bytes() == wal
    conn = connect(target, readonly=True)  # the new file alone: no stale frames replayed into it
    assert conn.execute("PRAGMA quick_check").get == "ok"
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'kept_in_wal'").get == 0
    conn.close()

    aborted = fb(demo, "abort")
    assert aborted.returncode == 0, aborted.stderr
    assert target.read_bytes() == main and Path(f"{target}-wal").read_bytes() == wal
    conn = connect(target, readonly=True)
    assert conn.execute("SELECT x FROM kept_in_wal").get == 42  # the old file reads as before, its -wal included
    conn.close()


# -- defect 4: the lock ---------------------------------------------------------------------------------
def test_a_live_holder_refuses_a_second_rollback_and_its_death_frees_the_lock(
    demo: Path, lock_holder: subprocess.Popen[str]
) -> None:
    before = tree(demo)
    res = fb(demo, "rollback", "--yes", "--break-lock")  # --break-lock cannot steal a live lock
    one_line_error(res, 2, f"another failback run holds the lock: run other-run, pid {lock_holder.pid}")
    assert tree(demo) == before

    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait()
    res = fb(demo, "rollback", "--yes")  # no --break-lock: the kernel released the dead holder's lock
    assert res.returncode == 0, res.stderr
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "sqljs"
    assert RunLock(demo / ".failback").holder() == {}, "the finished run left its holder info"


def test_release_by_a_non_owner_changes_nothing(demo: Path, lock_holder: subprocess.Popen[str]) -> None:
    RunLock(demo / ".failback").release()  # this process never took it
    assert json.loads((demo / ".failback" / "lock").read_text())["pid"] == lock_holder.pid
    with pytest.raises(LockedError, match="run other-run"):
        RunLock(demo / ".failback").acquire("mine")


def test_abort_refuses_while_a_live_process_holds_the_lock(demo: Path) -> None:
    killed = fb(demo, "rollback", "--yes", env={"FAILBACK_KILL_AT": "switch.renamed"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = tree(demo)
    with holding_lock(demo):  # another run is live: aborting now would undo under its feet
        res = fb(demo, "abort")
        one_line_error(res, 2, "cannot abort run")
        assert tree(demo) == before, "abort changed files while another run held the lock"
    assert fb(demo, "abort").returncode == 0  # its holder is dead: the lock is free


# -- prune's deletion --------------------------------------------------------------------------------------
def test_delete_backup_refuses_a_folder_outside_the_backup_layers(demo: Path) -> None:
    cfg = load_config(demo / "failback.toml")
    stray = demo / "not-a-layer" / "20260101T000000-source-abcdef"
    stray.mkdir(parents=True)
    (stray / "manifest.json").write_text("{}")
    precious = (cfg.source_path, cfg.app_config_path, cfg.target_path)
    with pytest.raises(InputError, match="not a backup folder directly inside a backup layer"):
        delete_backup(stray, cfg.backup_layers[0], precious, first="manifest.json")
    with pytest.raises(InputError, match="it holds"):  # a layer misconfigured as the demo folder's parent
        delete_backup(demo, demo.parent, precious, "x")
    assert (stray / "manifest.json").exists() and (demo / "native.sqlite").exists()


# -- one unfinished run at a time; abort undoes only what its own run replaced ---------------------------------
def test_a_new_rollback_waits_for_an_unfinished_one_and_abort_then_restores_the_old_state(demo: Path) -> None:
    """Found by the model test: a run killed after verification, then a watch-started rollback switched the app,
    then `abort` of the killed run removed the target the app had just been switched to (equal bytes taken for
    its own). Now the second rollback is refused until the first is resumed or aborted."""
    app_files = [demo / n for n in ("app.env", "app-sqljs.sqlite", "native.sqlite")]
    before = {p: p.read_bytes() for p in app_files}
    killed = fb(demo, "rollback", "--yes", env={"FAILBACK_KILL_AT": "verify.end"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [killed_run] = [r["run"] for r in events(demo) if r["event"] == "run.start"]
    after_kill = tree(demo)
    second = fb(demo, "rollback", "--yes")
    one_line_error(second, 2, f"run {killed_run} did not finish (status running)")
    assert f"failback resume {killed_run}" in second.stderr
    assert tree(demo) == after_kill, "the refused rollback changed a file"
    aborted = fb(demo, "abort")
    assert aborted.returncode == 0, aborted.stderr
    assert {p: p.read_bytes() for p in app_files} == before
    assert fb(demo, "rollback", "--yes").returncode == 0, "after the abort a rollback runs"
    assert current_provider(demo / "app.env", "DATABASE_PROVIDER") == "sqljs"


def test_abort_of_an_older_run_never_undoes_a_newer_finished_one(demo: Path) -> None:
    """A run refused at the switch (the source changed) is abortable; a later run with byte-identical content
    finishes. Aborting the older run must not take the newer run's file for its own and remove it."""
    title = connect(demo / "native.sqlite", readonly=True).execute("SELECT title FROM note WHERE id = 1").get
    killed = fb(demo, "rollback", "--yes", env={"FAILBACK_KILL_AT": "switch.renamed"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    app = connect(demo / "native.sqlite")
    app.execute("UPDATE note SET title = 'edited' WHERE id = 1")
    one_line_error(fb(demo, "resume"), 5, "source changed after the snapshot")
    app.execute("UPDATE note SET title = ? WHERE id = 1", (title,))  # the same content again
    app.close()
    assert fb(demo, "rollback", "--yes").returncode == 0
    switched = {p: p.read_bytes() for p in (demo / "app.env", demo / "app-sqljs.sqlite")}
    runs = [r["run"] for r in events(demo) if r["event"] == "run.start"]
    refused = fb(demo, "abort", runs[0])
    one_line_error(refused, 2, f"run {runs[1]} finished after run {runs[0]}")
    assert {p: p.read_bytes() for p in switched} == switched
