"""Backups on real files: consistent snapshots under a concurrent writer, layers, checksums, permissions,
restore, retention, full disks (a small tmpfs mounted by the test) and manifests that try to mislead."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
import zstandard

from failback.backup.keep import run_needs
from failback.backup.manifest import DATA, MANIFEST, read_manifest
from failback.backup.prune import prune_backups
from failback.backup.retention import ABORTABLE, RESUMABLE, Item, Policy, RunNeeds, decide, must_keep, parse_duration
from failback.backup.sets import (
    backup_source,
    check_folder,
    create_backup,
    describe_database,
    find_backup,
    list_backups,
    restore_backup,
    verify_folder,
)
from failback.config import load_config
from failback.db.connect import connect
from failback.db.integrity import index_checks, known_fts_damage, quick_check_file
from failback.errors import BackupError, ConfigError, EnvironmentFailure, InputError
from failback.journal import DEBT, RunDir
from failback.pipeline.rollback import Options, Rollback
from failback.snapshot import MAX_RESTARTS, take_snapshot

from .conftest import Mounts
from .test_source_integrity import FTS4, bad_fts_db

Cli = Callable[..., subprocess.CompletedProcess[str]]
Mount = Callable[[str], Path]


# -- helpers --------------------------------------------------------------------------------------
def write_config(base: Path, source: Path, **backup: Any) -> Path:
    """A failback.toml in ``base`` for ``source``, two layers (primary, mirror) unless ``backup`` says otherwise."""
    backup = {"dir": "backups/primary", "mirrors": ["backups/mirror"], **backup}
    lines = [f"{key} = {json.dumps(value)}" for key, value in backup.items()]
    path = base / "failback.toml"
    path.write_text(
        f'[source]\npath = "{source}"\n[target]\npath = "app-sqljs.sqlite"\n[app]\nconfig = "app.env"\n'
        "[backup]\n" + "\n".join(lines) + "\n"
    )
    return path


def flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tables(db: Path) -> dict[str, Any]:
    return describe_database(db)[0]["tables"]


def fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its disk is full (bounded: a tiny tmpfs fills in a few writes)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(100_000):
            os.write(fd, bytes(1 << 16))
        pytest.fail("the disk never filled up")
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def tiny_disk(tmp_path: Path, mounts: Mounts) -> Mount:
    """Mount small tmpfs file systems (root only; the test is skipped where mounting is not permitted)."""
    return lambda size: mounts.tmpfs(tmp_path / f"disk{len(mounts.mounted)}", size)


# -- consistency under a concurrent writer ---------------------------------------------------------
WRITER = """
import sys, random, time, apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(20000)
rng = random.Random(7)
for _ in range(int(sys.argv[2])):
    n = rng.randrange(1, 1000)  # one transaction: the same amount into both tables, a page rewritten
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO a(v, pad) VALUES (?, randomblob(3000))", (n,))
    conn.execute("INSERT INTO b(v, pad) VALUES (?, randomblob(3000))", (n,))
    conn.execute("UPDATE a SET pad = randomblob(3000) WHERE id = ?", (rng.randrange(1, 200),))
    conn.execute("COMMIT")
    time.sleep(0.001)  # an app writing in a loop; without a pause no reader gets a rollback-journal lock
"""


def invariant_db(path: Path, journal: str) -> Path:
    """Two tables that every committed state keeps equal in row count and sum."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA journal_mode = {journal}").get  # noqa: B018
    conn.execute(
        "BEGIN; CREATE TABLE a(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB);"
        "CREATE TABLE b(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB);"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)"
        " INSERT INTO a(v, pad) SELECT i, randomblob(3000) FROM n;"
        "INSERT INTO b(v, pad) SELECT v, randomblob(3000) FROM a; COMMIT"
    )
    conn.close()
    return path


def committed(conn: apsw.Connection) -> int:
    return int(conn.execute("SELECT max(id) FROM a").get)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_snapshot_is_a_committed_state_while_another_process_writes(tmp_path: Path, journal: str) -> None:
    db = invariant_db(tmp_path / "live.sqlite", journal)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "100000"])
    watch = apsw.Connection(f"file:{db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    watch.set_busy_timeout(20000)

    def await_commit() -> None:
        """Block until the writer has committed again (bounded), so the copy always races a commit."""
        seen = committed(watch)
        for _ in range(20_000):
            if committed(watch) > seen:
                return
            assert writer.poll() is None, "the writer died"
            time.sleep(0.001)
        pytest.fail("the writer stopped committing")

    def between_steps(phase: str, done: int, total: int) -> None:
        if done < total:  # never while the final step holds its read transaction
            await_commit()

    try:
        await_commit()
        snap = take_snapshot(db, tmp_path / "snap.sqlite", between_steps, step_bytes=16 << 10)
        await_commit()
        changed = snap.guard.changed()
        snap.guard.close()
        last = committed(watch)
    finally:
        writer.kill()
        writer.wait()
        watch.close()
    assert snap.pages > 100 and mode(snap.path) == 0o600
    if journal == "wal":
        assert snap.restarts == 0  # one read transaction: writers went on in the WAL
    else:
        assert 1 <= snap.restarts <= MAX_RESTARTS + 1  # restarted by commits, then finished in one step
    assert changed == "a transaction was committed to the source after the snapshot"
    copy = apsw.Connection(str(snap.path))
    try:
        assert copy.execute("PRAGMA integrity_check").get == "ok"
        assert copy.execute("PRAGMA journal_mode").get == "delete"
        (count_a, sum_a, top), (count_b, sum_b, _) = (
            copy.execute(f"SELECT count(*), sum(v), max(id) FROM {t}").get for t in "ab"
        )
    finally:
        copy.close()
    assert (count_a, sum_a) == (count_b, sum_b), "the snapshot mixes two states"
    assert 200 < top < last  # it holds commits from before the snapshot, not those made after it
    assert not list(tmp_path.glob("snap.sqlite?*")), "temp files left behind"


# -- create, layers, manifest, permissions --------------------------------------------------------
def test_backup_in_every_layer_with_manifest_and_owner_only_files(native_db: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, native_db))
    result = backup_source(cfg, "before upgrade!")
    assert [x.ok for x in result.layers] == [True, True] and result.verified_layers == 2
    assert "-before-upgrade--" in result.id  # the label, made safe for a folder name
    assert result.snapshot["restarts"] == 0
    m = result.manifest
    for key in ("sha256", "bytes", "page_size", "page_count", "sqlite_version", "user_version", "tables"):
        assert key in m
    assert m["source"] == str(native_db) and m["host"] and m["tool"].startswith("failback")
    assert m["tables"] == tables(native_db) and m["tables"]["note"]["rows"] > 0
    assert m["bytes"]["compressed"] < m["bytes"]["raw"]
    for layer in cfg.backup_layers:
        folder = layer / result.id
        assert read_manifest(folder) == m
        assert mode(layer) == mode(folder) == 0o700
        assert {p.name: mode(p) for p in folder.iterdir()} == {DATA: 0o600, MANIFEST: 0o600}
    assert not list((cfg.state_path / "tmp").iterdir()), "the snapshot was left behind"


def test_a_failing_layer_is_reported_and_the_others_go_on(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "blocked").write_text("a regular file where a folder should be")
    cfg = write_config(tmp_path, native_db, mirrors=["blocked/mirror", "backups/mirror"], min_layers=3)
    res = cli("backup", "create", "-c", str(cfg), "--label", "nightly")
    assert res.returncode == 1 and "only 2 of 3 required layer(s) verified" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout.count("✓") == 2 and "✗" in res.stdout and "blocked/mirror" in res.stdout
    listed = json.loads(cli("backup", "list", "-c", str(cfg), "--json").stdout)
    assert len(listed) == 1 and listed[0]["label"] == "nightly" and len(listed[0]["folders"]) == 2


def test_rollback_refuses_to_continue_without_enough_verified_layers(native_db: Path, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a regular file where a folder should be")
    (tmp_path / "app.env").write_text("DATABASE_PROVIDER=native\n")
    cfg_path = write_config(tmp_path, native_db, mirrors=["blocked/mirror"], min_layers=2)
    outcome = Rollback(load_config(cfg_path), cfg_path, Options(yes=True)).run()
    assert outcome.exit_code == 1 and outcome.status == "failed"
    assert "only 1 of 2 required backup layer(s) verified" in str(outcome.error)
    assert not {"verify", "switch"} & set(outcome.results)
    assert (tmp_path / "app.env").read_text() == "DATABASE_PROVIDER=native\n"
    assert [p.name for p in tmp_path.glob("*app-sqljs*")] == []


# -- paths in the config ---------------------------------------------------------------------------
def test_config_paths_expand_home_and_environment_variables(
    native_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, offsite = tmp_path / "home", tmp_path / "elsewhere"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FB_OFFSITE", str(offsite))
    monkeypatch.setenv("FB_NAME", "state")
    cfg_path = write_config(tmp_path, native_db, dir="~/fb-backups", mirrors=["${FB_OFFSITE}/copy", "$FB_OFFSITE/b"])
    cfg_path.write_text('state_dir = "~/$FB_NAME"\n' + cfg_path.read_text())
    cfg = load_config(cfg_path)
    assert cfg.backup_layers == [home / "fb-backups", offsite / "copy", offsite / "b"]
    assert cfg.state_path == home / "state"
    bid = backup_source(cfg, "x").id
    assert [p.parent for p in (home / "fb-backups").glob(f"{bid}/{MANIFEST}")] == [home / "fb-backups" / bid]
    assert not (tmp_path / "~").exists()
    monkeypatch.delenv("FB_OFFSITE")
    with pytest.raises(ConfigError, match=r"backup\.mirrors\.0: .*environment variable FB_OFFSITE is not set"):
        load_config(cfg_path)


def test_an_unset_variable_is_a_one_line_error(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    cfg_path = write_config(tmp_path, native_db, dir="$FAILBACK_TEST_UNSET_DIR/backups")
    res = cli("backup", "list", "-c", str(cfg_path))
    assert res.returncode == 2
    [line, hint] = res.stderr.splitlines()
    assert "backup.dir" in line and "environment variable FAILBACK_TEST_UNSET_DIR is not set" in line
    assert hint.startswith("hint:")


# -- verify ---------------------------------------------------------------------------------------
def test_verify_names_a_damaged_copy(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    cfg_path = write_config(tmp_path, native_db)
    cfg = load_config(cfg_path)
    bid = backup_source(cfg, "x").id
    damaged = cfg.backup_layers[1] / bid / DATA
    assert cli("backup", "verify", "-c", str(cfg_path), "--all").returncode == 0
    flip_byte(damaged)
    res = cli("backup", "verify", "-c", str(cfg_path), bid[:20])
    assert res.returncode == 1
    assert f"{damaged}: checksum mismatch" in res.stdout.replace("\n", "")
    assert f"✓ {cfg.backup_layers[0] / bid}" in res.stdout
    # restore uses the copy that is intact
    restore_backup(cfg.backup_layers, bid, tmp_path / "restored.sqlite")
    assert tables(tmp_path / "restored.sqlite") == tables(native_db)


def test_deep_verify_compares_content_digests_with_the_manifest(native_db: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, native_db))
    bid = backup_source(cfg, "x").id
    primary, mirror = (layer / bid for layer in cfg.backup_layers)
    work = tmp_path / "work"
    work.mkdir()
    assert verify_folder(mirror, deep=True, work=work) == []
    m = json.loads((primary / MANIFEST).read_text())
    m["tables"]["note"]["digest"] = "0" * 32  # the data still matches its checksum; its content does not
    (primary / MANIFEST).write_text(json.dumps(m))
    assert verify_folder(primary) == []
    assert verify_folder(primary, deep=True, work=work) == [
        f"{primary / DATA}: content digests differ from the manifest: note"
    ]
    assert not list(work.iterdir()), "deep verify left its temp copy behind"


# -- restore --------------------------------------------------------------------------------------
def test_restore_round_trip_and_refusals(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    cfg = write_config(tmp_path, native_db)
    bid = backup_source(load_config(cfg), "x").id
    dest = tmp_path / "out" / "restored.sqlite"
    res = cli("backup", "restore", "-c", str(cfg), bid, str(dest))
    assert res.returncode == 0, res.stderr
    assert tables(dest) == tables(native_db) and mode(dest) == 0o600
    again = cli("backup", "restore", "-c", str(cfg), bid, str(dest))
    assert again.returncode == 2 and "exists; refusing to overwrite" in again.stderr
    dest.unlink()
    stale_wal = Path(f"{dest}-wal")
    stale_wal.write_bytes(b"a leftover write-ahead log from another database")
    layers = load_config(cfg).backup_layers
    with pytest.raises(InputError, match="-wal exists"):
        restore_backup(layers, bid, dest)
    assert not dest.exists()
    restore_backup(layers, bid, dest, force=True)
    assert not stale_wal.exists() and tables(dest) == tables(native_db)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["restored.sqlite"]
    with pytest.raises(InputError, match="no backup"):
        restore_backup(layers, "../" + bid, tmp_path / "x.sqlite")


def _set_raw_sha256(folder: Path, sha: str) -> None:
    m = json.loads((folder / MANIFEST).read_text())
    m["sha256"]["raw"] = sha
    (folder / MANIFEST).write_text(json.dumps(m))


def test_restore_skips_a_copy_whose_raw_checksum_is_wrong(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    cfg_path = write_config(tmp_path, native_db)
    cfg = load_config(cfg_path)
    bid = backup_source(cfg, "x").id
    primary, mirror = (layer / bid for layer in cfg.backup_layers)
    wrong = hashlib.sha256(b"not the snapshot").hexdigest()
    _set_raw_sha256(primary, wrong)  # its compressed data still matches: only decompressing shows it
    check = cli("backup", "verify", "-c", str(cfg_path), "--all", "--json")
    assert check.returncode == 1
    assert json.loads(check.stdout) == {
        str(primary): [f"{primary / DATA}: the decompressed data does not match its checksum"],
        str(mirror): [],
    }
    dest = tmp_path / "out" / "restored.sqlite"
    res = cli("backup", "restore", "-c", str(cfg_path), bid, str(dest), "--json")
    assert res.returncode == 0, res.stderr
    conn = connect(dest, readonly=True)
    try:
        notes = [c.note() for c in index_checks(conn)]  # how each index on an app collation was checked
    finally:
        conn.close()
    assert json.loads(res.stdout) == {
        "path": str(dest),
        "copy": str(mirror),
        "skipped": [
            {"folder": str(primary), "problem": f"{primary / DATA}: the decompressed data does not match its checksum"}
        ],
        "notes": notes,
    }
    assert tables(dest) == tables(native_db)
    dest.unlink()
    text = cli("backup", "restore", "-c", str(cfg_path), bid, str(dest))
    assert text.returncode == 0, text.stderr
    assert f"skipped {primary}: {primary / DATA}: the decompressed data" in text.stdout
    assert f"restored {bid} to {dest} from {mirror}" in text.stdout


def test_restore_checks_content_digests_and_names_every_bad_copy(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    cfg_path = write_config(tmp_path, native_db)
    cfg = load_config(cfg_path)
    bid = backup_source(cfg, "x").id
    primary, mirror = (layer / bid for layer in cfg.backup_layers)
    m = json.loads((primary / MANIFEST).read_text())
    table = sorted(m["tables"])[0]
    m["tables"][table]["digest"] = "0" * 32  # data and checksums intact; the recorded content is not this data
    (primary / MANIFEST).write_text(json.dumps(m))
    result = restore_backup(cfg.backup_layers, bid, tmp_path / "r1.sqlite")
    assert result.copy == str(mirror)
    assert result.skipped == [(str(primary), f"{primary / DATA}: content digests differ from the manifest: {table}")]
    flip_byte(mirror / DATA)
    dest = tmp_path / "out" / "r2.sqlite"
    res = cli("backup", "restore", "-c", str(cfg_path), bid, str(dest))
    assert res.returncode == 1
    stderr = res.stderr.replace("\n", "")
    assert "no stored copy passes every check" in stderr
    assert f"{primary / DATA}: content digests differ" in stderr
    assert f"{mirror / DATA}: checksum mismatch" in stderr
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# -- manifests are data ---------------------------------------------------------------------------
def test_only_complete_backups_with_trustworthy_manifests_exist(native_db: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, native_db, mirrors=[]))
    layer = cfg.backup_layers[0]
    bid = backup_source(cfg, "good").id
    good = layer / bid
    outside = tmp_path / "outside" / "20200101T000000-evil-abcdef"
    outside.mkdir(parents=True)
    m = read_manifest(good)

    def plant(name: str, manifest: dict[str, Any] | None, where: Path = layer) -> Path:
        folder = where / name
        folder.mkdir(exist_ok=True)
        (folder / DATA).write_bytes((good / DATA).read_bytes())
        if manifest is not None:
            (folder / MANIFEST).write_text(json.dumps(manifest))
        return folder

    plant("20200101T000000-nomanifest-000001", None)  # a backup interrupted before its manifest
    plant("20200101T000000-renamed-000002", m)  # a manifest whose id is not its folder
    plant("20200101T000000-escape-000003", {**m, "id": "20200101T000000-escape-000003", "file": "../../x"})
    (layer / "20200101T000000-partial-000004").mkdir()
    (layer / "20200101T000000-partial-000004" / MANIFEST).write_text('{"format": 1, "id": ')
    plant(outside.name, {**m, "id": outside.name}, outside.parent)
    (layer / outside.name).symlink_to(outside)  # a folder elsewhere, linked into the layer
    assert [e["manifest"]["id"] for e in list_backups([layer])] == [bid]
    with pytest.raises(InputError, match="no backup"):
        find_backup([layer], "20200101")
    # the data file itself must not be a link either, even to bytes that match the checksum
    (good / DATA).rename(tmp_path / "elsewhere.zst")
    (good / DATA).symlink_to(tmp_path / "elsewhere.zst")
    problems = verify_folder(good)
    assert len(problems) == 1 and problems[0].startswith(str(good / DATA))
    with pytest.raises(BackupError, match="no stored copy passes"):
        restore_backup([layer], bid, tmp_path / "r.sqlite")


def test_restore_stops_at_the_size_the_manifest_records(native_db: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, native_db, mirrors=[]))
    folder = cfg.backup_layers[0] / backup_source(cfg, "x").id
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))  # 64 MB of zeros in a few KB
    (folder / DATA).write_bytes(bomb)
    m = json.loads((folder / MANIFEST).read_text())
    m["sha256"]["compressed"] = hashlib.sha256(bomb).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(m))
    dest = tmp_path / "out" / "r.sqlite"
    with pytest.raises(BackupError, match="decompresses to more than"):
        restore_backup(cfg.backup_layers, folder.name, dest)
    assert list(dest.parent.iterdir()) == []


# A process storing a backup into one layer that, at the first compression tick, dies (SIGKILL) or waits for a
# line on stdin (a live builder, mid-compression); it prints the backup's id when it finishes.
BUILDER = """
import os, signal, sys
from pathlib import Path
from failback.backup import create_backup

snapshot, layer, source, then = sys.argv[1:5]
ticks = []

def midway(phase: str, done: int, total: int) -> None:
    ticks.append(phase)
    if ticks.count("compress") == 1 and phase == "compress":
        if then == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        print("building", flush=True)
        sys.stdin.readline()

print(create_backup(Path(snapshot), [Path(layer)], label=then, source=Path(source), progress=midway).id)
"""


def builder(snapshot: Path, layer: Path, source: Path, then: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(snapshot), str(layer), str(source), then],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def killed_builder(snapshot: Path, layer: Path, source: Path) -> set[Path]:
    """Kill a backup mid-compression; returns what it left in the layer (beside what was there)."""
    before = set(layer.iterdir()) if layer.exists() else set()
    proc = builder(snapshot, layer, source, "die")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    return set(layer.iterdir()) - before


def test_a_backup_folder_appears_whole_and_a_killed_ones_temp_goes_once_its_builder_is_gone(
    native_db: Path, tmp_path: Path, cli: Cli
) -> None:
    """Defect: a kill inside compression left a folder without a manifest in the layer forever (list and prune
    ignore it). Now a backup is built under a hidden name and renamed whole; what a killed builder left goes at
    the next backup or prune, and a live builder's folder stays."""
    cfg_path = write_config(tmp_path, native_db, mirrors=[])
    cfg = load_config(cfg_path)
    layer = cfg.backup_layers[0]
    snap = take_snapshot(native_db, tmp_path / "snap.sqlite")
    snap.guard.close()

    (dead,) = killed_builder(snap.path, layer, native_db)
    assert dead.name.startswith(".") and dead.is_dir() and not (dead / MANIFEST).exists()
    assert list_backups([layer]) == [] and json.loads(cli("backup", "list", "-c", str(cfg_path), "--json").stdout) == []

    live = builder(snap.path, layer, native_db, "wait")
    assert live.stdout is not None
    assert live.stdout.readline() == "building\n"
    (building,) = layer.iterdir()  # the next backup removed what the killed one left
    assert building != dead and not dead.exists()
    (dead,) = killed_builder(snap.path, layer, native_db)  # this one's start must keep the live builder's folder
    assert set(layer.iterdir()) == {building, dead}
    pruned = cli("backup", "prune", "-c", str(cfg_path), "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["leftovers_removed"] == [str(dead)]
    assert set(layer.iterdir()) == {building}, "the live builder's folder must stay"
    out, err = live.communicate("go\n", timeout=120)
    assert live.returncode == 0, err
    bid = out.split()[-1]
    assert [p.name for p in layer.iterdir()] == [bid] and verify_folder(layer / bid, deep=True) == []


def test_a_backup_of_a_source_with_a_malformed_fts_index_restores_with_exactly_that_damage(tmp_path: Path) -> None:
    """Defect: restoring refused the faithful backup of a snapshot whose FTS index was malformed (so `verify
    --debt` could not be paid after a --repair-fts rollback). The manifest now records the snapshot's
    quick_check findings; a restore accepts exactly those FTS index findings, says so, and nothing else."""
    db = bad_fts_db(tmp_path)
    found = quick_check_file(db)
    assert found == [FTS4.format("note_ft")]

    def stored(label: str, recorded: list[str] | None) -> Path:
        layer = tmp_path / label
        return layer / create_backup(db, [layer], label=label, source=db, quick_check=lambda: recorded).id

    faithful = stored("recorded", found)
    assert read_manifest(faithful)["quick_check"] == found
    check = check_folder(faithful, deep=True)
    assert check.problems == [] and any("FTS index of note_ft malformed, as the source's" in n for n in check.notes)
    restored = restore_backup([faithful.parent], faithful.name, tmp_path / "restored.sqlite")
    assert restored.path.read_bytes() == db.read_bytes()
    for other in (stored("unrecorded", None), stored("other", [FTS4.format("another_ft")])):
        assert "fails integrity_check" in check_folder(other, deep=True).problems[0]
        with pytest.raises(BackupError, match="fails integrity_check"):
            restore_backup([other.parent], other.name, tmp_path / f"{other.parent.name}.sqlite")


def test_known_fts_damage_accepts_only_recorded_fts_index_findings() -> None:
    ft, other_ft, btree = FTS4.format("ft"), FTS4.format("other"), "Tree 2 page 3 cell 0: invalid page number 99"
    assert known_fts_damage([ft], [ft, other_ft]) == ("ft",)
    assert known_fts_damage([ft, other_ft], [other_ft, ft, btree]) == ("ft", "other")
    assert known_fts_damage([], [ft]) == ()  # nothing to accept
    assert known_fts_damage([ft], []) == ()  # not recorded
    assert known_fts_damage([other_ft], [ft]) == ()  # another index
    assert known_fts_damage([ft, btree], [ft, btree]) == ()  # damage a restore may not accept, recorded or not
    assert known_fts_damage([ft] * 5, [ft]) == ()  # a list cut at check_integrity's limit may hide more


# -- full disks -----------------------------------------------------------------------------------
def test_a_layer_without_room_is_refused_before_writing(native_db: Path, tmp_path: Path, tiny_disk: Mount) -> None:
    small = tiny_disk("256k")
    snap = take_snapshot(native_db, tmp_path / "snap.sqlite")
    snap.guard.close()
    result = create_backup(snap.path, [small, tmp_path / "mirror"], label="x", source=native_db)
    assert not result.layers[0].ok and "not enough free space" in result.layers[0].error
    assert result.layers[1].ok and list_backups([tmp_path / "mirror"])
    assert list(small.iterdir()) == []


def test_a_disk_that_fills_up_midway_leaves_nothing(native_db: Path, tmp_path: Path, tiny_disk: Mount) -> None:
    disk = tiny_disk("8m")
    snap = take_snapshot(native_db, tmp_path / "snap.sqlite")
    snap.guard.close()

    def another_process_fills_the_disk(phase: str, done: int, total: int) -> None:
        if phase == "compress" and not (disk / "filler").exists():
            fill(disk)

    result = create_backup(
        snap.path, [disk, tmp_path / "mirror"], label="x", source=native_db, progress=another_process_fills_the_disk
    )
    assert not result.layers[0].ok and "disk full" in result.layers[0].error
    assert result.layers[1].ok and verify_folder(tmp_path / "mirror" / result.id) == []
    assert [p.name for p in disk.iterdir()] == ["filler"]


def test_snapshot_on_a_disk_that_fills_up_is_a_clean_failure(native_db: Path, tiny_disk: Mount) -> None:
    disk = tiny_disk("4m")

    def fill_once(phase: str, done: int, total: int) -> None:
        if not (disk / "filler").exists():
            fill(disk)

    with pytest.raises(EnvironmentFailure, match="disk full"):
        take_snapshot(native_db, disk / "snap.sqlite", fill_once, step_bytes=64 << 10)
    assert [p.name for p in disk.iterdir()] == ["filler"]


def test_restore_refuses_a_disk_without_room(native_db: Path, tmp_path: Path, tiny_disk: Mount) -> None:
    cfg = load_config(write_config(tmp_path, native_db, mirrors=[]))
    bid = backup_source(cfg, "x").id
    disk = tiny_disk("512k")
    with pytest.raises(EnvironmentFailure, match="not enough free space"):
        restore_backup(cfg.backup_layers, bid, disk / "r.sqlite")
    assert list(disk.iterdir()) == []


# -- retention ------------------------------------------------------------------------------------
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def kept(items: list[Item], policy: Policy, protected: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    return [v.id for v in decide(items, policy, NOW, protected) if v.keep]


def spread() -> list[Item]:
    """Backups over ten weeks, newest first: four today, three a day for the 14 days before, then weekly."""
    moments = [NOW - timedelta(hours=h) for h in (0, 2, 4, 6)]
    moments += [NOW - timedelta(days=d, hours=h) for d in range(1, 15) for h in (1, 3, 5)]
    moments += [NOW - timedelta(weeks=w) for w in range(3, 11)]
    return [Item(m.strftime("%Y%m%dT%H%M%S"), m) for m in moments]


def test_parse_duration() -> None:
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(" 30d") == timedelta(days=30)
    assert parse_duration("8w") == timedelta(weeks=8)
    for bad in ("30", "d", "1.5d", "3m", "-1d", ""):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(ValueError):
        Policy(keep_last=1, keep_within="forever", keep_daily=0)


def test_keep_last_keeps_only_the_newest() -> None:
    items = spread()
    assert kept(items, Policy(keep_last=3, keep_within="0h", keep_daily=0)) == [i.id for i in items[:3]]


def test_keep_within_keeps_everything_younger() -> None:
    got = kept(spread(), Policy(keep_last=0, keep_within="2d", keep_daily=0))
    assert len(got) == 4 + 3  # today's and those of the day before (25 to 29 hours old)
    assert all(NOW - datetime.strptime(i, "%Y%m%dT%H%M%S").replace(tzinfo=UTC) < timedelta(days=2) for i in got)


def test_keep_daily_keeps_the_newest_of_each_day_that_has_backups() -> None:
    items = spread()
    got = kept(items, Policy(keep_last=0, keep_within="0h", keep_daily=20))
    days = [i[:8] for i in got]
    assert len(got) == 20 and len(set(days)) == 20  # one per day, days without backups skipped
    for bid in got:  # and it is the newest of its day
        assert bid == max(i.id for i in items if i.id[:8] == bid[:8])
    assert got[-1][:8] == "20260210"  # 15 days of daily backups, then five of the weekly ones


def test_rules_combine_and_protected_backups_are_never_deleted() -> None:
    items = spread()
    oldest = items[-1].id
    verdicts = decide(items, Policy(2, "1d", 3), NOW, {oldest: ("used by interrupted run r1",)})
    by_id = {v.id: v for v in verdicts}
    assert by_id[items[0].id].reasons == ("one of the 2 newest", "younger than 1d", "newest of 2026-03-31")
    assert by_id[oldest].reasons == ("used by interrupted run r1",)
    assert sum(v.keep for v in verdicts) == 4 + 2 + 1  # the last day, two more days, the protected one
    assert [v.id for v in verdicts] == sorted((i.id for i in items), reverse=True)


def test_prune_never_deletes_the_newest_verified_or_a_backup_an_unfinished_run_uses(
    native_db: Path, tmp_path: Path, cli: Cli
) -> None:
    cfg_path = write_config(tmp_path, native_db, keep_last=1, keep_within="0h", keep_daily=0)
    cfg = load_config(cfg_path)
    oldest, middle, newest = (backup_source(cfg, "nightly").id for _ in range(3))
    for layer in cfg.backup_layers:
        flip_byte(layer / newest / DATA)  # the newest backup no longer verifies anywhere
    run, state = RunDir.create(cfg.state_path, cfg_path, "standard")
    state.status = "interrupted"
    state.step("backup").result = {"source": {"id": oldest}}
    run.save(state)

    def prune(*flags: str) -> dict[str, dict[str, Any]]:
        res = cli("backup", "prune", "-c", str(cfg_path), "--json", *flags)
        assert res.returncode == 0, res.stderr
        return {b["id"]: b for b in json.loads(res.stdout)["backups"]}

    first = prune()
    assert [b["action"] for b in first.values()] == ["keep"] * 3
    assert first[middle]["reasons"] == ["newest verified backup labelled 'nightly'"]
    assert first[oldest]["reasons"] == [f"the snapshot a resume of interrupted run {run.id} needs"]
    state.status = "done"
    run.save(state)
    dry = prune("--dry-run")
    assert dry[oldest]["action"] == "delete" and len(list_backups(cfg.backup_layers)) == 3
    prune()
    assert [e["manifest"]["id"] for e in list_backups(cfg.backup_layers)] == [newest, middle]
    assert not any((layer / oldest).exists() for layer in cfg.backup_layers)


def test_prune_with_a_bad_duration_is_a_config_error(native_db: Path, tmp_path: Path, cli: Cli) -> None:
    res = cli("backup", "prune", "-c", str(write_config(tmp_path, native_db, keep_within="a month")))
    assert res.returncode == 2 and "backup.keep_within" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(ConfigError, match="'30x' is not a duration"):
        prune_backups(load_config(write_config(tmp_path, native_db, keep_within="30x")))


# -- what backups must keep ---------------------------------------------------------------------------
def labelled(*specs: tuple[str, str, int]) -> list[Item]:
    """Items from (id, label, hours before NOW)."""
    return [Item(bid, NOW - timedelta(hours=h), label) for bid, label, h in specs]


def test_must_keep_the_newest_verified_backup_of_each_label_asking_only_as_far_as_needed() -> None:
    items = labelled(("s3", "source", 1), ("s2", "source", 5), ("s1", "source", 9), ("p2", "previous-target", 2))
    items += labelled(("p1", "previous-target", 6), ("m1", "manual", 30))
    damaged, asked = {"s3"}, []

    def verified(bid: str) -> bool:
        asked.append(bid)
        return bid not in damaged

    keep = must_keep(items, [], verified)
    newest_good = {
        label: max((i for i in items if i.label == label and i.id not in damaged), key=lambda i: i.created)
        for label in {i.label for i in items}
    }
    assert keep == {i.id: (f"newest verified backup labelled {label!r}",) for label, i in newest_good.items()}
    assert sorted(asked) == sorted([*damaged, *(i.id for i in newest_good.values())])


@pytest.mark.parametrize("status", [*ABORTABLE, "done", "aborted", "dry-run"])
def test_must_keep_what_a_resume_or_an_abort_needs(status: str) -> None:
    run = RunNeeds("r1", status, {"source": "s1", "previous_target": "p1"})
    keep = must_keep([], [run], lambda _: True)  # listed though no such backup exists: status says "missing"
    expected = {}
    if status in RESUMABLE:
        expected["s1"] = (f"the snapshot a resume of {status} run r1 needs",)
    if status in ABORTABLE:
        expected["p1"] = (f"the previous target an abort of {status} run r1 needs",)
    assert keep == expected
    assert status not in ("done", "aborted", "dry-run") or keep == {}


def test_must_keep_what_an_unpaid_debt_needs_and_decide_keeps_it_against_every_rule() -> None:
    items = labelled(("s2", "source", 1), ("s1", "source", 3), ("s0", "source", 20))
    runs = [RunNeeds("r2", "done", {"source": "s2"}), RunNeeds("r1", "done", {"source": "s1"}, debt="s1")]
    keep = must_keep(items, runs, lambda _: True)
    assert keep == {
        "s2": ("newest verified backup labelled 'source'",),
        "s1": ("the unpaid verification debt of run r1 needs",),
    }
    verdicts = {v.id: v for v in decide(items, Policy(0, "0h", 0), NOW, keep)}
    assert {bid for bid, v in verdicts.items() if v.keep} == set(keep)
    assert verdicts["s1"].reasons == keep["s1"]


def test_run_needs_reads_each_run_and_its_debt(tmp_path: Path) -> None:
    state_dir, cfg_path = tmp_path / "state", tmp_path / "failback.toml"
    debts = {"unpaid": None, "payment-failed": {"ok": False}, "paid": {"ok": True}}
    made = {}
    for n, (name, paid) in enumerate(debts.items()):
        rd, state = RunDir.create(state_dir, cfg_path, "emergency")
        state.status = "done"
        state.step("backup").result = {"source": {"id": f"s{n}"}, "previous_target": {"id": f"p{n}"}, "x": 1}
        rd.save(state)
        rd.file(DEBT).write_text(json.dumps({"backup": f"s{n}", "paid": paid}))
        made[rd.id] = (n, name)
    needs = {r.run: r for r in run_needs(state_dir)}
    assert set(needs) == set(made)
    for run_id, (n, name) in made.items():
        owed = None if name == "paid" else f"s{n}"
        assert needs[run_id] == RunNeeds(run_id, "done", {"source": f"s{n}", "previous_target": f"p{n}"}, owed)
    broken, _ = RunDir.create(state_dir, cfg_path, "standard")
    broken.file("state.json").write_text("{not json")
    with pytest.raises(BackupError, match="refusing to prune what it may still need"):
        run_needs(state_dir)


def test_prune_after_an_emergency_rollback_keeps_what_the_debt_needs(demo_dir: Path, cli: Cli) -> None:
    """Defect: keep_last=1, keep_within=0d, keep_daily=0, an emergency rollback, then `backup prune` deleted the
    source snapshot and `verify --debt` failed for good."""
    cfg_path = demo_dir / "failback.toml"
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("[backup]\n", '[backup]\nkeep_last = 1\nkeep_within = "0d"\nkeep_daily = 0\n'))
    rolled = cli("rollback", "-c", str(cfg_path), "--mode", "emergency", "--yes", "--json")
    assert rolled.returncode == 0, rolled.stderr
    run = json.loads(rolled.stdout)["run"]
    owed = json.loads(RunDir(demo_dir / ".failback", run).file(DEBT).read_text())["backup"]
    debt_reason = f"the unpaid verification debt of run {run} needs"

    def prune() -> dict[str, dict[str, Any]]:
        res = cli("backup", "prune", "-c", str(cfg_path), "--json")
        assert res.returncode == 0, res.stderr
        return {b["id"]: b for b in json.loads(res.stdout)["backups"]}

    first = prune()
    assert first[owed]["action"] == "keep" and debt_reason in first[owed]["reasons"]
    # a newer backup with the same label: now only the debt holds the emergency snapshot
    assert cli("backup", "create", "-c", str(cfg_path), "--label", "source").returncode == 0
    status = cli("status", "-c", str(cfg_path), "--json")
    protected = {b["id"]: b for b in json.loads(status.stdout)["protected_backups"]}
    assert protected[owed] == {"id": owed, "present": True, "reasons": [debt_reason]}
    second = prune()
    assert second[owed]["action"] == "keep" and len(second) == 3
    assert {bid for bid, b in second.items() if b["action"] == "keep"} == set(protected)
    paid = cli("verify", "-c", str(cfg_path), "--debt")
    assert paid.returncode == 0, paid.stdout + paid.stderr
    third = prune()  # paid: the rules alone decide
    assert {bid for bid, b in third.items() if b["action"] == "delete"} == {owed}
    assert owed not in {e["manifest"]["id"] for e in list_backups(load_config(cfg_path).backup_layers)}
