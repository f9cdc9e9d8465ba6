"""Fault injection and security, on real files: a full disk (small tmpfs mounts), read-only folders, an app
config that cannot be written, the source deleted or replaced between steps, a mirror layer vanishing; paths
in a manifest, values in a config and text from a metrics endpoint that try to escape into the file system,
SQL or a shell; owner-only permissions of backup and run files.

Each fault must end in a one-line error with a hint and a documented exit code, and leave the existing files
(the source and its -wal, the app's config, the current target) exactly as they were. Mounting needs root;
where it is not permitted the test is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failback.backup.manifest import DATA, MANIFEST
from failback.backup.sets import create_backup, list_backups, restore_backup
from failback.config import load_config
from failback.db.connect import connect
from failback.demo import create_demo
from failback.errors import FailbackError
from failback.pipeline.export import export_database
from failback.pipeline.rollback import Options, Outcome, Rollback
from failback.snapshot import take_snapshot

from .conftest import Mounts

NOTES = 60  # a small GRDB-style app: every fault below runs a real rollback or export on it
DOCUMENTED_EXITS = {1, 2, 3, 4, 5, 6}
CONFIG = """\
[source]
path = "native.sqlite"

[target]
path = "{target}"

[app]
config = "{app_env}"

[backup]
dir = "{primary}"
mirrors = [{mirrors}]
min_layers = {min_layers}

[convert]
collations = {{ swiftLocalizedCaseInsensitiveCompare = "NOCASE" }}

[assess]
liveness_seconds = 0
"""


def fill(folder: Path) -> Path:
    """Fill the file system holding ``folder`` to the last byte (bounded: a tmpfs of a few MB)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            block = bytes(size)
            for _ in range(10_000):
                try:
                    os.write(fd, block)
                except OSError as err:
                    assert err.errno == 28, err  # ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


# -- the app under test -------------------------------------------------------------------------------------
def make_app(
    root: Path,
    *,
    target_dir: Path | None = None,
    app_env_dir: Path | None = None,
    primary: Path | None = None,
    mirrors: tuple[Path, ...] = (),
    min_layers: int = 1,
) -> Path:
    """A demo app (native GRDB-style db, app.env, the old sql.js file) with its target, app config and backup
    layers where the test wants them; returns the path of its failback.toml."""
    create_demo(root, notes=NOTES)
    target, app_env = root / "app-sqljs.sqlite", root / "app.env"
    if target_dir is not None:
        shutil.copyfile(target, target_dir / target.name)
        target = target_dir / target.name
    if app_env_dir is not None:
        shutil.copyfile(app_env, app_env_dir / app_env.name)
        app_env = app_env_dir / app_env.name
    cfg = root / "failback.toml"
    cfg.write_text(
        CONFIG.format(
            target=target,
            app_env=app_env,
            primary=primary or root / "backups" / "primary",
            mirrors=", ".join(f'"{m}"' for m in mirrors),
            min_layers=min_layers,
        )
    )
    return cfg


def sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def app_files(cfg_path: Path) -> dict[str, str | None]:
    """What a failed run must not change: the source and its -wal, the app's config, the current target."""
    cfg = load_config(cfg_path)
    src = cfg.source_path
    paths = [src, Path(str(src) + "-wal"), cfg.app_config_path, cfg.target_path]
    return {str(p): sha(p) for p in paths}


def stray(folder: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """Files in ``folder`` (recursively) other than ``allowed`` names: temp or partial files left behind."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in (*allowed, "filler")
    )


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_clean_error(res: subprocess.CompletedProcess[str], exits: set[int]) -> str:
    """A documented exit code, no traceback, ``error: …`` then ``hint: …`` (step lines of a rollback aside)."""
    assert res.returncode in exits, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith(("✓ ", "✗ "))]
    assert lines[0].startswith("error: "), res.stderr
    assert lines[1].startswith("hint: "), res.stderr
    return lines[0]


def assert_clean_outcome(outcome: Outcome, exits: set[int]) -> FailbackError:
    err = outcome.error
    assert err is not None, "the run did not fail"
    assert outcome.exit_code in exits and outcome.exit_code in DOCUMENTED_EXITS, (outcome.exit_code, err.message)
    assert "\n" not in err.message and err.hint, (err.message, err.hint)
    return err


def rollback(cfg_path: Path, on_step: Callable[[str, str, dict[str, Any]], None] | None = None) -> Outcome:
    return Rollback(load_config(cfg_path), cfg_path, Options(yes=True), on_step=on_step).run()


# -- disk full ------------------------------------------------------------------------------------------------
def test_export_to_a_full_disk_fails_before_writing(tmp_path: Path, mounts: Mounts) -> None:
    create_demo(tmp_path / "app", notes=NOTES)
    disk = mounts.tmpfs(tmp_path / "disk", "128k")
    source = tmp_path / "app" / "native.sqlite"
    before = {str(p): sha(p) for p in (source, Path(str(source) + "-wal"))}
    res = run_cli("export", str(source), str(disk / "out.sqlite"), cwd=tmp_path)
    line = assert_clean_error(res, {6})
    assert "free space" in line or "disk full" in line
    assert stray(disk) == []
    assert {str(p): sha(p) for p in (source, Path(str(source) + "-wal"))} == before


@pytest.mark.parametrize(
    "phase",
    ["snapshot", "copy", "search"],
)
def test_export_when_the_disk_fills_up_mid_write(tmp_path: Path, mounts: Mounts, phase: str) -> None:
    """The disk fills at a chosen moment (after the free-space check): a clean error, nothing left behind."""
    create_demo(tmp_path / "app", notes=NOTES)
    disk = mounts.tmpfs(tmp_path / "disk", "4m")
    source = tmp_path / "app" / "native.sqlite"
    before = {str(p): sha(p) for p in (source, Path(str(source) + "-wal"))}
    filled: list[str] = []

    def progress(name: str, done: int, total: int) -> None:
        if name.startswith(phase) and not filled:
            filled.append(name)
            fill(disk)

    with pytest.raises(FailbackError) as caught:
        export_database(source, disk / "out.sqlite", progress=progress)
    assert filled, f"no {phase!r} progress was reported"
    assert caught.value.exit_code == 6, caught.value.message
    assert str(disk) in caught.value.message, caught.value.message  # the full disk is the one named
    assert "\n" not in caught.value.message and caught.value.hint
    assert stray(disk) == []
    assert {str(p): sha(p) for p in (source, Path(str(source) + "-wal"))} == before


def test_rollback_with_the_target_folder_on_a_full_disk(tmp_path: Path, mounts: Mounts) -> None:
    """The old target fits on the target's disk, the converted one does not: nothing is switched."""
    disk = mounts.tmpfs(tmp_path / "target-disk", "1m")
    cfg = make_app(tmp_path / "app", target_dir=disk)
    before = app_files(cfg)

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        if (name, event) == ("convert", "start"):
            fill(disk)

    err = assert_clean_outcome(rollback(cfg, on_step), {6})
    assert "disk full" in err.message
    assert app_files(cfg) == before
    assert stray(disk, ("app-sqljs.sqlite",)) == []


def test_rollback_with_the_target_disk_too_small_cli(tmp_path: Path, mounts: Mounts) -> None:
    """The same through the CLI, the disk simply too small (no filler): SQLite meets ENOSPC mid-build."""
    disk = mounts.tmpfs(tmp_path / "target-disk", "1m")
    cfg = make_app(tmp_path / "app", target_dir=disk)
    room = shutil.disk_usage(disk).free - 48 * 1024  # leave 48 KB: the converted target needs more
    (disk / "ballast").write_bytes(bytes(room))
    before = app_files(cfg)
    res = run_cli("rollback", "-c", str(cfg), "--yes", cwd=tmp_path)
    line = assert_clean_error(res, {3, 6})  # 3: the risk gate saw the missing space before anything was written
    assert "disk full" in line or "free" in line, line
    assert app_files(cfg) == before
    assert stray(disk, ("app-sqljs.sqlite", "ballast")) == []


def test_rollback_with_the_backup_layer_on_a_full_disk(tmp_path: Path, mounts: Mounts) -> None:
    disk = mounts.tmpfs(tmp_path / "backup-disk", "256k")
    cfg = make_app(tmp_path / "app", primary=disk / "primary")
    before = app_files(cfg)
    res = run_cli("rollback", "-c", str(cfg), "--yes", cwd=tmp_path)
    line = assert_clean_error(res, {1, 6})
    assert "free space" in line or "disk full" in line, line
    assert app_files(cfg) == before
    assert stray(disk) == []  # no partial backup (a folder without a verified copy and manifest)


# -- read-only folders and files ------------------------------------------------------------------------------
def test_export_into_a_read_only_folder(tmp_path: Path, mounts: Mounts) -> None:
    create_demo(tmp_path / "app", notes=NOTES)
    ro = mounts.tmpfs(tmp_path / "ro", "16m")
    mounts.readonly(ro)
    res = run_cli("export", str(tmp_path / "app" / "native.sqlite"), str(ro / "out.sqlite"), cwd=tmp_path)
    assert "read-only" in assert_clean_error(res, {6})
    assert stray(ro) == []


def test_rollback_with_a_read_only_target_folder(tmp_path: Path, mounts: Mounts) -> None:
    disk = mounts.tmpfs(tmp_path / "target-disk", "2m")
    cfg = make_app(tmp_path / "app", target_dir=disk)
    mounts.readonly(disk)
    before = app_files(cfg)
    res = run_cli("rollback", "-c", str(cfg), "--yes", cwd=tmp_path)
    assert "read-only" in assert_clean_error(res, {6})
    assert app_files(cfg) == before


def test_rollback_when_the_app_config_cannot_be_written(tmp_path: Path, mounts: Mounts) -> None:
    """Permission denied on the app's config (a read-only mount: root ignores file modes)."""
    conf = mounts.tmpfs(tmp_path / "etc-app", "64k")
    cfg = make_app(tmp_path / "app", app_env_dir=conf)
    mounts.readonly(conf)
    before = app_files(cfg)
    res = run_cli("rollback", "-c", str(cfg), "--yes", cwd=tmp_path)
    assert_clean_error(res, {6})
    assert app_files(cfg) == before


# -- the source deleted or replaced mid-run -------------------------------------------------------------------
def _delete(source: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(source) + suffix).unlink(missing_ok=True)


def _replace_with_other_db(source: Path) -> None:
    other = source.with_name("other.sqlite")
    conn = connect(other, create=True)
    conn.execute("CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT); INSERT INTO note VALUES (1, 'other')")
    conn.close()
    os.replace(other, source)
    for suffix in ("-wal", "-shm"):
        Path(str(source) + suffix).unlink(missing_ok=True)


def _replace_with_text(source: Path) -> None:
    tmp = source.with_name("text.tmp")
    tmp.write_text("not a database any more\n")
    os.replace(tmp, source)


@pytest.mark.parametrize(
    ("when", "action", "exits"),
    [
        (("snapshot", "start"), _delete, {2}),
        (("convert", "done"), _delete, {5}),
        (("backup", "done"), _replace_with_text, {5}),
        (("verify", "done"), _replace_with_other_db, {5}),
    ],
    ids=["deleted-before-snapshot", "deleted-after-convert", "replaced-by-text-after-backup", "replaced-after-verify"],
)
def test_source_deleted_or_replaced_between_steps(
    tmp_path: Path, when: tuple[str, str], action: Callable[[Path], None], exits: set[int]
) -> None:
    cfg_path = make_app(tmp_path / "app")
    cfg = load_config(cfg_path)
    keep = {str(p): sha(p) for p in (cfg.app_config_path, cfg.target_path)}
    done: list[str] = []

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        if (name, event) == when:
            action(cfg.source_path)
            done.append(name)

    assert_clean_outcome(rollback(cfg_path, on_step), exits)
    assert done, f"step {when} never happened"
    assert {str(p): sha(p) for p in (cfg.app_config_path, cfg.target_path)} == keep
    assert not list(cfg.target_path.parent.glob(f".{cfg.target_path.name}.failback-*")), "a temp target was left"


# -- a mirror layer vanishing --------------------------------------------------------------------------------
def test_mirror_made_read_only_between_steps(tmp_path: Path, mounts: Mounts) -> None:
    mirror = mounts.tmpfs(tmp_path / "mirror", "8m")
    cfg = make_app(tmp_path / "app", mirrors=(mirror,), min_layers=2)
    before = app_files(cfg)

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        if (name, event) == ("snapshot", "done"):  # the backup starts right after
            mounts.readonly(mirror)

    err = assert_clean_outcome(rollback(cfg, on_step), {1, 6})
    assert "read-only" in err.message and "1 of 2" in err.message, err.message
    assert app_files(cfg) == before
    assert stray(mirror) == []


def test_mirror_folder_removed_between_steps(tmp_path: Path) -> None:
    """A removed layer folder is created again (it is a folder failback owns): the run completes, and the
    mirror holds a verified copy."""
    mirror = tmp_path / "mirror"
    cfg = make_app(tmp_path / "app", mirrors=(mirror / "layer",), min_layers=2)
    (mirror / "layer").mkdir(parents=True)

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        if (name, event) == ("snapshot", "done"):
            shutil.rmtree(mirror)

    outcome = rollback(cfg, on_step)
    assert outcome.exit_code == 0, outcome.error
    assert len(list_backups([mirror / "layer"])) == 2  # the source and the previous target


def test_mirror_folder_replaced_by_a_file_between_steps(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    cfg = make_app(tmp_path / "app", mirrors=(mirror,), min_layers=2)
    before = app_files(cfg)

    def on_step(name: str, event: str, _: dict[str, Any]) -> None:
        if (name, event) == ("snapshot", "done"):
            mirror.rmdir()
            mirror.write_text("not a folder\n")

    assert_clean_outcome(rollback(cfg, on_step), {1, 6})
    assert app_files(cfg) == before and mirror.read_text() == "not a folder\n"


# -- security -----------------------------------------------------------------------------------------------
def _stored_backup(tmp_path: Path) -> tuple[Path, Path, str]:
    """A real backup of a small database in layer ``tmp_path/layer``: (layer, its folder, its id)."""
    db = tmp_path / "db.sqlite"
    conn = connect(db, create=True)
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    conn.close()
    snap = take_snapshot(db, tmp_path / "snap.sqlite")
    snap.guard.close()
    layer = tmp_path / "layer"
    result = create_backup(snap.path, [layer], label="sec", source=db)
    return layer, layer / result.id, result.id


def _forge(folder: Path, **changes: Any) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "changes",
    [
        {"file": "../../outside.sqlite.zst"},
        {"file": "/etc/passwd"},
        {"id": "../../outside"},
        {"id": "20240101T000000-x-abcdef/../../../outside"},
    ],
    ids=["file-dotdot", "file-absolute", "id-dotdot", "id-nested-dotdot"],
)
def test_manifest_paths_cannot_escape_the_backup_folder(tmp_path: Path, changes: dict[str, str]) -> None:
    layer, folder, bid = _stored_backup(tmp_path)
    outside = tmp_path / "outside.sqlite.zst"
    shutil.copyfile(folder / DATA, outside)
    _forge(folder, **changes)
    assert list_backups([layer]) == []  # a manifest that names another file or folder is not a backup
    with pytest.raises(FailbackError) as caught:
        restore_backup([layer], bid, tmp_path / "restored.sqlite")
    assert caught.value.exit_code in DOCUMENTED_EXITS
    assert not (tmp_path / "restored.sqlite").exists() and not (tmp_path / "outside").exists()


def test_backup_data_behind_a_symlink_is_not_read(tmp_path: Path) -> None:
    """A data file replaced by a symlink (to a copy outside with the right checksum) is refused."""
    layer, folder, bid = _stored_backup(tmp_path)
    outside = tmp_path / "elsewhere.zst"
    shutil.move(folder / DATA, outside)
    os.symlink(outside, folder / DATA)
    with pytest.raises(FailbackError) as caught:
        restore_backup([layer], bid, tmp_path / "restored.sqlite")
    assert caught.value.exit_code in DOCUMENTED_EXITS
    assert not (tmp_path / "restored.sqlite").exists()


def test_backup_folder_that_is_a_symlink_is_ignored(tmp_path: Path) -> None:
    layer, folder, _ = _stored_backup(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(folder, elsewhere)
    os.symlink(elsewhere, folder)
    assert list_backups([layer]) == []


def test_backup_and_run_files_are_owner_only(tmp_path: Path) -> None:
    cfg_path = make_app(tmp_path / "app", mirrors=(tmp_path / "mirror" / "deep" / "layer",), min_layers=2)
    outcome = rollback(cfg_path)
    assert outcome.exit_code == 0, outcome.error
    cfg = load_config(cfg_path)
    roots = [*cfg.backup_layers, cfg.state_path, tmp_path / "mirror"]
    loose = []
    for root in roots:
        for p in [root, *root.rglob("*")]:
            if p.name == "previous-target.sqlite":
                continue  # the app's old target itself, kept by a hard link (its mode is the app's), in a 0700 folder
            mode = stat.S_IMODE(p.lstat().st_mode)
            want = 0o700 if p.is_dir() else 0o600
            if mode != want:
                loose.append(f"{p}: {mode:o}")
    assert loose == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key", "X; rm -rf / #"),
        ("key", "A=B"),
        ("rollback_value", "sqljs; touch PWNED"),
        ("rollback_value", "$(touch PWNED)"),
        ("rollback_value", "sqljs\nEVIL=1"),
        ("native_value", "`id`"),
    ],
)
def test_app_keys_and_values_that_a_shell_would_run_are_refused(tmp_path: Path, field: str, value: str) -> None:
    """The rollback writes [app] key=value into the app's .env, which shells often source: a key or value a
    shell would interpret is a config error, before anything runs."""
    cfg = make_app(tmp_path / "app")
    text = cfg.read_text().replace("[app]\n", f"[app]\n{field} = {json.dumps(value)}\n")
    cfg.write_text(text)
    res = run_cli("rollback", "-c", str(cfg), "--yes", cwd=tmp_path)
    assert f"app.{field}" in assert_clean_error(res, {2})
    assert not list(tmp_path.rglob("PWNED"))


def test_pending_sql_from_the_config_only_reads(tmp_path: Path) -> None:
    """[sync] pending_sql is the app's own query; it runs under a read-only authorizer, on the snapshot."""
    cfg = make_app(tmp_path / "app")
    probes = ["SELECT 1; DROP TABLE note", "DELETE FROM note"]
    cfg.write_text(cfg.read_text() + f"\n[sync]\npending_sql = {json.dumps(probes)}\n")
    before = app_files(cfg)
    res = run_cli("assess", "-c", str(cfg), "--json", cwd=tmp_path)
    assert res.returncode == 3, res.stderr  # the demo app has unsynced notes: high risk
    assert app_files(cfg) == before
    found = {
        p["where"]: (p["count"], p["error"]) for p in json.loads(res.stdout)["facts"]["pending"] if p["kind"] == "sql"
    }
    # the first statement's row is the count (the DROP after it is never prepared); the DELETE is refused
    assert found == {probes[0]: (1, ""), probes[1]: (None, "not authorized")}


def test_sql_from_the_config_stays_data(tmp_path: Path) -> None:
    """A collation mapping from the config reaches the target's DDL only as a quoted name; the app's queries
    that the probe runs on the live source run read-only."""
    cfg = make_app(tmp_path / "app")
    hostile = "NOCASE); DROP TABLE folder; --"
    queries = ["DROP TABLE note", "DELETE FROM folder"]
    text = cfg.read_text().replace(
        'swiftLocalizedCaseInsensitiveCompare = "NOCASE"',
        f"swiftLocalizedCaseInsensitiveCompare = {json.dumps(hostile)}",
    )
    cfg.write_text(
        text + f"\n[benchmark]\nqueries = {json.dumps(queries)}\nruns = 1\n"
        '\n[triggers]\nprobe = true\n[[triggers.rules]]\nname = "errors"\nmetric = "probe.errors"\n'
        f"threshold = {len(queries) + 1}\nfor = 1\n"
    )
    before = app_files(cfg)
    exported = run_cli("export", "native.sqlite", str(tmp_path / "out.sqlite"), "--config", str(cfg), cwd=cfg.parent)
    # the whole hostile text is one collation name: sql.js has no such collation, so the plan does not load
    line = assert_clean_error(exported, {3})
    assert line == f"error: the planned schema does not load in sqljs-1.16.0: no such collation sequence: {hostile}"
    assert not (tmp_path / "out.sqlite").exists()
    checked = run_cli("check", "-c", str(cfg), "--json", cwd=tmp_path)
    assert checked.returncode == 0 and "Traceback" not in checked.stderr, checked.stderr
    [rule] = json.loads(checked.stdout)["evaluations"][0]["rules"]
    assert (rule["status"], rule["value"]) == ("ok", len(queries))  # every write refused: one error per query
    assert app_files(cfg) == before


METRICS = """\
# HELP app_errors_total Errors $(touch PWNED) `touch PWNED`; DROP TABLE note; --
# TYPE app_errors_total counter
app_errors_total{route="'; DROP TABLE note; --",cmd="$(touch PWNED)",q="\\"; rm -rf / #"} 7
"""


def test_metrics_endpoint_text_stays_data(tmp_path: Path) -> None:
    """Names, labels and help text from /metrics never reach SQL or a shell."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = make_app(tmp_path / "app")
        cfg.write_text(
            cfg.read_text() + f'\n[triggers]\nprometheus_url = "http://127.0.0.1:{server.server_port}/metrics"\n'
            '[[triggers.rules]]\nname = "errors"\nmetric = "app_errors_total"\nop = ">"\nthreshold = 5\nfor = 1\n'
            '[triggers.rules.labels]\ncmd = "$(touch PWNED)"\n'
        )
        before = app_files(cfg)
        res = run_cli("check", "-c", str(cfg), "--json", cwd=tmp_path)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert res.returncode == 3, res.stdout + res.stderr  # the rule fired on the sample with those labels
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert app_files(cfg) == before
