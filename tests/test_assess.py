"""Risk assessment: every fact gathered on real files built here, the pure evaluation, the gate, the CLI."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback.assess.calibration import calibration
from failback.assess.facts import MB, Assessment, Calibration, DiskNeed, Facts, Finding, Pending, SideFiles
from failback.assess.gather import disk_needs, folder_space, gather
from failback.assess.liveness import file_locks, observe_sides, watch_source
from failback.assess.pending import describe_time, timestamp_column
from failback.assess.rules import disk_parts, estimate_steps, evaluate, gate
from failback.audit import AuditLog
from failback.config import Config, load_config
from failback.db.connect import connect, run_script
from failback.db.schema import Column, Table
from failback.demo.sample import build_native
from failback.errors import RiskRefused
from failback.mode import mode_policy
from failback.pipeline.export import PlanSettings, read_plan
from failback.profiles import load_profile
from failback.snapshot import take_snapshot

from .conftest import Mounts, copy_db, db_files, file_hashes

Cli = Callable[..., subprocess.CompletedProcess[str]]
Builder = Callable[[apsw.Connection], None]


# -- helpers ------------------------------------------------------------------------------------------
def toml(sections: dict[str, dict[str, Any]]) -> str:
    """A failback.toml from plain sections (strings, numbers, booleans, lists of strings)."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This machine's calibration, measured once for the session, then copied into each app's state folder."""
    base = tmp_path_factory.mktemp("calibration")
    cfg = Config.model_validate({"source": {"path": "n"}, "target": {"path": "t"}, "app": {"config": "a"}})
    cfg.base = base
    assert calibration(cfg, measure=True) is not None
    return cfg.state_path / "calibration.json"


@pytest.fixture
def make_app(calibration_file: Path) -> Callable[..., Path]:
    """An app folder: native.sqlite (built by ``build`` unless already there), app.env and failback.toml."""

    def make(root: Path, build: Builder | None = None, **sections: dict[str, Any]) -> Path:
        native = root / "native.sqlite"
        root.mkdir(exist_ok=True)
        if build is not None:
            conn = apsw.Connection(str(native))
            try:
                build(conn)
            finally:
                conn.close()
        (root / "app.env").write_text("DATABASE_PROVIDER=native\n")
        config: dict[str, dict[str, Any]] = {
            "source": {"path": "native.sqlite"},
            "target": {"path": "app-sqljs.sqlite"},
            "app": {"config": "app.env"},
            "backup": {"dir": "backups/primary"},
            "assess": {"liveness_seconds": 0.1},
        }
        for name, values in sections.items():
            config[name] = {**config.get(name, {}), **values}
        (root / "failback.toml").write_text(toml(config))
        seed_calibration(root / ".failback", calibration_file)
        return root / "failback.toml"

    return make


def seed_calibration(state: Path, calibration_file: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(calibration_file, state / "calibration.json")


def assess(cfg_path: Path, *, mode: str = "standard", sides: SideFiles | None = None) -> Assessment:
    """Snapshot the app's source (as a dry run does), then assess it."""
    cfg = load_config(cfg_path)
    snap = take_snapshot(cfg.source_path, cfg_path.parent / "snapshot.sqlite")
    try:
        schema, plan = read_plan(snap.path, PlanSettings.of(cfg))  # as a run plans it
        return evaluate(gather(cfg, snap.path, schema, plan, mode=mode_policy(mode), sides=sides))
    finally:
        snap.guard.close()


def found(a: Assessment, code: str) -> list[Finding]:
    return [f for f in a.findings if f.code == code]


def script(conn: apsw.Connection, sql: str) -> None:
    with conn:
        run_script(conn, sql)


# -- pure evaluation and the gate ---------------------------------------------------------------------
def test_the_level_is_the_worst_finding_and_the_gate_follows_it() -> None:
    low = evaluate(Facts())
    assert (low.level, low.go) == ("low", True)
    gate(low)
    medium = evaluate(Facts(target_bytes=300 * MB))
    assert (medium.level, medium.go) == ("medium", True)
    gate(medium)

    high = evaluate(Facts(pending=[Pending("flag", "note.isSynced = 0", 2)]))
    assert (high.level, high.go) == ("high", False)
    for refused in ({}, {"confirm": lambda _: False}, {"reason": "because"}):
        with pytest.raises(RiskRefused, match="risk high: 2 change"):
            gate(high, **refused)  # type: ignore[arg-type]
    for allowed in ({"yes": True}, {"force": True}, {"confirm": lambda _: True}):
        gate(high, **allowed)  # type: ignore[arg-type]

    critical = evaluate(Facts(disk=[DiskNeed(["/backups"], free=10 * MB, parts={"backup": 20 * MB})]))
    assert (critical.level, critical.go) == ("critical", False)
    for refused in ({}, {"yes": True}, {"force": True}, {"force": True, "reason": "  "}, {"reason": "why"}):
        with pytest.raises(RiskRefused, match=r"/backups: 10\.0 MB free, 20\.0 MB needed") as err:
            gate(critical, **refused)  # type: ignore[arg-type]
        assert err.value.exit_code == 3
    with pytest.raises(RiskRefused) as err:
        gate(critical, force=True)
    assert "--reason" in err.value.hint
    gate(critical, force=True, reason="the mirror is on another disk, checked by hand")


def test_every_finding_carries_a_fix_when_it_asks_for_action() -> None:
    a = evaluate(
        Facts(
            target_bytes=2 * MB,
            memory_critical_bytes=MB,
            pending=[Pending("sql", "SELECT …", None, error="no such table: outbox")],
            integrity=["Tree 4 page 9: btreeInitPage() returns error code 11"],
            old_only_rows={"note": 3},
            plan_findings=[
                {"kind": "virtual table", "name": "v", "action": "refuse", "reason": "module 'x'", "severity": "high"}
            ],
        )
    )
    assert a.level == "critical"
    assert {f.code for f in a.findings if f.severity in ("high", "critical")} == {
        "target-memory",
        "pending-probe",
        "integrity",
        "old-only-rows",
        "convert-refuse",
    }
    assert all(f.fix for f in a.findings if f.severity in ("high", "critical"))
    assert found(a, "convert-refuse")[0].severity == "critical"  # a refused object stops the run


def test_estimates_and_disk_needs_are_plain_arithmetic(tmp_path: Path) -> None:
    rates = {"snapshot": 100.0, "digest": 200.0, "sha256": 500.0, "export": 50.0, "integrity": 100.0}
    snapshot = Facts(snapshot_bytes=1000 * MB, zstd_ratio=2.0, zstd_mb_per_s=100.0)
    est = estimate_steps(Calibration({}, rates, 1.0), snapshot, layers=2)
    # backup: digest 5 s + zstd 10 s + 3 passes over 500 MB compressed (write+read-back, copy+read-back)
    assert est == pytest.approx({"snapshot": 10, "backup": 18, "convert": 20, "verify": 15})
    a, b, t, state, temp = (tmp_path / n for n in ("a", "b", "t", "state", "temp"))
    sizes: dict[str, Any] = {
        "target_bytes": 900,
        "previous_target_bytes": 300,
        "snapshot_bytes": 1000,
        "zstd_ratio": 2.0,
        "layers": [a, b],
        "target_dir": t,
        "state_dir": state,
        "temp_dir": temp,
        "sort_bytes": 7,
    }
    parts = disk_parts(**sizes, previous_linked=False)
    assert parts == [
        (a, "backup", 500),
        (a, "backup of the current target", 150),
        (b, "backup", 500),
        (b, "backup of the current target", 150),
        (t, "converted target", 900),
        (state, "run journal and reports", MB),
        (state, "kept copy of the current target", 300),
        (temp, "SQLite sort files", 7),
    ]
    [need] = disk_needs(parts, folder_space([a, b, t, state, temp]))  # one file system: the needs add up
    assert need.folders == [str(p) for p in (a, b, t, state, temp)]
    assert need.needed == 1300 + 900 + MB + 300 + 7
    assert "kept copy of the current target" not in {what for _, what, _ in disk_parts(**sizes, previous_linked=True)}


def test_proc_locks_lines_are_matched_to_the_files(tmp_path: Path) -> None:
    f = tmp_path / "db"
    f.write_bytes(b"x")
    st = f.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    text = (
        f"1: POSIX  ADVISORY  WRITE 4242 {dev} 1073741825 1073741825\n"
        f"1: -> POSIX  ADVISORY  WRITE 4343 {dev} 0 EOF\n"
        f"2: FLOCK  ADVISORY  READ 77 {dev} 0 EOF\n"
        f"3: POSIX  ADVISORY  READ {os.getpid()} {dev} 128 128\n"
        "4: POSIX  ADVISORY  READ 99 00:01:1 0 EOF\n"
    )
    locks = file_locks([f], text)
    assert locks is not None
    assert [(x.pid, x.write, x.path) for x in locks] == [(4242, True, str(f)), (77, False, str(f))]
    assert locks[0].covers(1073741825) and not locks[0].covers(120) and locks[1].covers(10**12)


def test_timestamps_are_found_and_shown() -> None:
    def table(*cols: tuple[str, str]) -> Table:
        return Table("t", "", "table", tuple(Column(n, typ, False, None, 0) for n, typ in cols))

    assert timestamp_column(table(("id", "INTEGER"), ("createdAt", "DATETIME"), ("updatedAt", "DATETIME"))) == (
        "updatedAt"
    )
    assert timestamp_column(table(("format", "TEXT"), ("created_at", ""))) == "created_at"
    assert timestamp_column(table(("userModificationTime", "INTEGER"))) == "userModificationTime"
    assert timestamp_column(table(("format", "TEXT"), ("flat", "INTEGER"))) is None
    assert describe_time(1_700_000_000) == "1700000000 (2023-11-14 22:13:20 UTC)"
    assert describe_time(1_700_000_000_123) == "1700000000123 (2023-11-14 22:13:20 UTC)"
    assert describe_time("2024-01-01 10:00:00.000") == "2024-01-01 10:00:00.000"
    assert describe_time(None) is None and describe_time(42) == "42"


# -- facts on real files ------------------------------------------------------------------------------
def test_demo_app_facts(demo_dir: Path, calibration_file: Path) -> None:
    cfg_path = demo_dir / "failback.toml"
    cfg_path.write_text(cfg_path.read_text().replace("liveness_seconds = 0.5", "liveness_seconds = 0.1"))
    seed_calibration(demo_dir / ".failback", calibration_file)
    a = assess(cfg_path)
    f = a.facts
    native = connect(demo_dir / "native.sqlite", readonly=True)
    try:
        rows = {t: native.execute(f'SELECT count(*) FROM "{t}"').get for t in ("note", "folder", "syncState")}
        unsynced = native.execute('SELECT count(*) FROM "note" WHERE NOT "isSynced"').get
        unconfirmed = native.execute('SELECT count(*) FROM "syncState" WHERE "lastKnownServerRecord" IS NULL').get
        # the snapshot is a page-for-page copy: its b-trees are the source's (a table's indexes counted with it)
        sizes = dict.fromkeys(f.tables, (None, None)) | {
            table: (size, payload)
            for table, size, payload in native.execute(
                "SELECT coalesce(s.tbl_name, d.name), sum(d.pgsize), max(d.mx_payload) FROM dbstat('main', 1) AS d"
                " LEFT JOIN sqlite_schema AS s ON s.name = d.name GROUP BY 1"
            )
        }
        largest = native.execute(
            "SELECT max(d.pgsize) FROM dbstat('main', 1) AS d JOIN sqlite_schema AS s ON s.name = d.name"
            " AND s.type = 'index'"
        ).get
        # rows of the pre-migration sql.js file whose primary key the native database does not hold
        native.execute("ATTACH ? AS old", (f"file:{demo_dir / 'app-sqljs.sqlite'}?mode=ro",))
        old_only = {
            t: n
            for t in ("folder", "note", "attachment")
            if (n := native.execute(f'SELECT count(*) FROM old."{t}" WHERE id NOT IN (SELECT id FROM main."{t}")').get)
        }
    finally:
        native.close()
    assert {t: f.tables[t].rows for t in rows} == rows
    assert all(f.tables[t].bytes for t in ("note", "note_ft_data", "sqlite_schema"))  # dbstat, indexes included
    assert {t: (s.bytes, s.max_payload) for t, s in f.tables.items()} == sizes
    assert [n.parts["SQLite sort files"] for n in f.disk if "SQLite sort files" in n.parts] == [largest]
    assert f.counts["foreign_keys"] == 2 and f.counts["virtual_tables"] == 1
    assert f.integrity == [] and f.errors == [] and f.skipped == []
    assert set(f.estimates) == {"snapshot", "backup", "convert", "verify"} and f.zstd_ratio > 1
    assert {(p.kind, p.count) for p in f.pending} == {("cloudkit", unconfirmed), ("flag", unsynced)}
    assert all(p.oldest for p in f.pending)
    assert old_only and f.migrations[-1] == "v6.syncMetadata" and f.old_only_rows == old_only
    assert f.liveness.writes_seen == 0 and f.liveness.open_pids == []
    assert {lim.limit for lim in f.limits} >= {"max_column", "max_page_size", "max_length", "max_sql_length"}
    # the backups are still to be written (a rollback writes them while it assesses): every layer counts
    [disk] = f.disk
    assert {str(demo_dir / "backups" / "primary"), str(demo_dir / "backups" / "mirror")} <= set(disk.folders)
    assert a.level == "high"
    assert {x.code for x in a.findings if x.severity == "high"} == {"pending-changes", "old-only-rows"}
    # drift from the old sql.js file: what the native migrations changed, as the old app meets it
    assert f.drift_from == str(demo_dir / "app-sqljs.sqlite")
    drift = {(d.kind, d.name, d.change, d.severity) for d in f.drift}
    assert {
        ("table", "syncState", "added", "info"),
        ("column", "note.isSynced", "added", "info"),  # NOT NULL DEFAULT 0: old INSERTs still work
        ("table", "note", "constraint", "warn"),  # CHECK (json_valid(tags))
        ("column", "folder.name", "collation", "warn"),
        ("index", "note_folder", "renamed", "info"),
        ("index", "folder_on_name", "added", "warn"),
        ("trigger", "__note_ft_ai", "added", "warn"),
    } <= drift
    assert not any(d.kind == "pragma" and d.severity == "high" for d in f.drift)  # user_version kept at 3


SYNC_LAYOUTS = """
CREATE TABLE pending_changes (id INTEGER PRIMARY KEY, op TEXT NOT NULL, createdAt DATETIME NOT NULL);
INSERT INTO pending_changes(op, createdAt) VALUES
  ('insert', '2024-03-02 08:00:00'), ('update', '2024-03-01 09:00:00'), ('delete', '2024-03-04 10:00:00');
CREATE TABLE sqlitedata_icloud_metadata (
  recordPrimaryKey TEXT NOT NULL,
  recordType TEXT NOT NULL,
  recordName TEXT GENERATED ALWAYS AS (recordPrimaryKey || ':' || recordType) VIRTUAL,
  lastKnownServerRecord BLOB,
  _isDeleted INTEGER NOT NULL DEFAULT 0,
  userModificationTime INTEGER NOT NULL,
  PRIMARY KEY (recordPrimaryKey, recordType)) WITHOUT ROWID;
INSERT INTO sqlitedata_icloud_metadata(recordPrimaryKey, recordType, lastKnownServerRecord, _isDeleted,
  userModificationTime) VALUES
  ('1', 'item', NULL, 0, 1700000300),      -- created, never sent
  ('2', 'item', NULL, 0, 1700000100),      -- created, never sent
  ('3', 'item', x'0102', 1, 1700000050),   -- deleted here, the server still has it
  ('4', 'item', NULL, 1, 1600000000),      -- created and deleted before it was ever sent: nothing to send
  ('5', 'item', x'0102', 0, 1500000000);   -- in sync
CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, needsSync BOOLEAN NOT NULL DEFAULT 0, modified_at TEXT);
INSERT INTO item(name, needsSync, modified_at) VALUES
  ('apple', 0, '2024-05-01'), ('banana', 1, '2024-05-04'), ('blueberry', 0, '2024-05-03'),
  ('cherry', 1, '2024-05-02'), ('damson', 0, '2024-05-05');
"""


def test_pending_changes_in_each_preset_layout_and_by_probe(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    probes = [
        "SELECT count(*), min(modified_at) FROM item WHERE name LIKE 'b%'",
        "SELECT count(*) FROM outbox_v2",
        "DELETE FROM item",
        "ATTACH 'elsewhere.db' AS elsewhere",
        "SELECT 'many'",
    ]
    cfg_path = make_app(tmp_path, lambda c: script(c, SYNC_LAYOUTS), sync={"pending_sql": probes})
    a = assess(cfg_path)
    got = {(p.kind, p.where): (p.count, p.oldest) for p in a.facts.pending if not p.error}
    assert got == {
        ("outbox", "rows of pending_changes"): (3, "2024-03-01 09:00:00"),
        ("cloudkit", "sqlitedata_icloud_metadata rows the server has not confirmed"): (
            3,
            "1700000050 (2023-11-14 22:14:10 UTC)",
        ),
        ("flag", "item.needsSync <> 0"): (2, "2024-05-02"),
        ("sql", probes[0]): (2, "2024-05-03"),
    }
    errors = {p.where: p.error for p in a.facts.pending if p.error}
    assert errors.keys() == set(probes[1:])
    assert "no such table" in errors[probes[1]]
    assert "not authorized" in errors[probes[2]] and "not authorized" in errors[probes[3]]
    assert "not a count" in errors[probes[4]]
    assert len(found(a, "pending-changes")) == 4 and len(found(a, "pending-probe")) == 4
    assert a.level == "high"
    source = connect(tmp_path / "native.sqlite", readonly=True)
    assert source.execute("SELECT count(*) FROM item").get == 5
    source.close()

    only_sql = make_app(tmp_path / "nopresets", lambda c: script(c, SYNC_LAYOUTS), sync={"presets": False})
    assert assess(only_sql).facts.pending == []


@pytest.fixture
def small_mount(tmp_path: Path, mounts: Mounts) -> Path:
    """A 64 KB tmpfs (needs root; skipped otherwise)."""
    return mounts.tmpfs(tmp_path / "small", "64k")


def test_too_little_disk_for_a_backup_layer(
    native_db: Path, small_mount: Path, make_app: Callable[..., Path], cli: Cli
) -> None:
    cfg_path = make_app(native_db.parent, backup={"mirrors": [str(small_mount / "mirror")]})
    a = assess(cfg_path)
    [short] = found(a, "disk")
    assert short.severity == "critical" and str(small_mount / "mirror") in short.message
    assert a.level == "critical"
    res = cli("assess", "-c", str(cfg_path))
    assert res.returncode == 3, res.stderr
    assert "--force --reason" in res.stderr


def test_a_mirror_on_the_primarys_disk_is_a_warning(
    tmp_path: Path, mounts: Mounts, make_app: Callable[..., Path], cli: Cli
) -> None:
    build_native(tmp_path / "native.sqlite", notes=50)
    other = mounts.tmpfs(tmp_path / "other-disk", "8m")
    near = tmp_path / "offsite"  # not created yet: its nearest existing folder, tmp_path, decides its disk
    cfg_path = make_app(tmp_path, backup={"mirrors": [str(near), str(other / "mirror")]})
    [w] = found(assess(cfg_path), "mirror-same-disk")
    assert w.severity == "warn"
    assert (
        w.message
        == f"mirror {near} shares the primary's disk: it protects against deletion, not against a disk failure"
    )
    res = cli("backup", "create", "-c", str(cfg_path))
    assert res.returncode == 0, res.stderr
    assert f"warning: mirror {near} shares the primary's disk" in res.stderr
    assert str(other) not in res.stderr
    apart = make_app(tmp_path, backup={"mirrors": [str(other / "mirror")]})
    assert found(assess(apart), "mirror-same-disk") == []


BIG = 2**53  # the first integer a JavaScript number cannot tell from its neighbour


def big_integer_app(conn: apsw.Connection) -> None:
    """Integers on both sides of ±(2^53−1), in every place a column can keep them: a rowid alias, an indexed
    column, a partially indexed one, columns without an index, a WITHOUT ROWID key; and the same numbers as
    text and as floats, which sql.js reads without rounding surprises."""
    script(
        conn,
        """
        CREATE TABLE t(id INTEGER PRIMARY KEY, plain INTEGER, indexed INTEGER, part INTEGER, anything,
                       num NUMERIC, txt TEXT, real REAL, edge INTEGER);
        CREATE INDEX t_indexed ON t(indexed);
        CREATE INDEX t_part ON t(part) WHERE part > 0;
        CREATE TABLE k(key INTEGER PRIMARY KEY, v INTEGER) WITHOUT ROWID;
        CREATE TABLE small(id INTEGER PRIMARY KEY, n INTEGER);
        """,
    )
    big, limit = BIG, BIG - 1
    rows = [
        (1, 5, -(2**63), 7, "x", limit, 2**63 - 1, 1e300, limit),
        (big, 2**63 - 1, 3, -big, -big, -limit, str(big), float(big), -limit),
        (3, None, "text", 2, b"\x00", 1.5, "t", 2.0, 0),
    ]
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO k VALUES (?, ?)", [(-(2**62), 1), (2, limit)])
        conn.executemany("INSERT INTO small VALUES (?, ?)", [(1, limit), (2, -limit)])


def expected_big_integer_columns(db: Path) -> list[str]:
    """``table.column`` holding an integer beyond ±(2^53−1), as Python reads the stored values."""
    conn = connect(db, readonly=True)
    try:
        out = []
        for table in ("k", "small", "t"):  # the schema's order: by name
            cur = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
            out += [
                f"{table}.{name}"
                for i, name in enumerate(names)
                if any(type(r[i]) is int and abs(r[i]) >= BIG for r in rows)
            ]
        return out
    finally:
        conn.close()


def test_integers_beyond_2_53_are_a_finding_in_assess_and_plan(
    tmp_path: Path, make_app: Callable[..., Path], cli: Cli
) -> None:
    cfg_path = make_app(tmp_path, big_integer_app)
    expected = expected_big_integer_columns(tmp_path / "native.sqlite")
    assert expected == ["k.key", "t.id", "t.plain", "t.indexed", "t.part", "t.anything"]  # the input's intent
    [f] = found(assess(cfg_path), "js-integer-precision")
    assert f.severity == "warn" and f.message.startswith(", ".join(expected) + " hold(s) integers beyond")
    assert "{useBigInt: true}" in f.fix
    res = cli("plan", str(tmp_path / "native.sqlite"), "--json")
    assert res.returncode == 0, res.stderr
    [shown] = json.loads(res.stdout)["findings"]
    assert (shown["code"], shown["message"], shown["fix"]) == (f.code, f.message, f.fix)
    text = cli("plan", str(tmp_path / "native.sqlite"))
    assert ", ".join(expected) + " hold(s) integers beyond" in text.stdout.replace("\n", "")


def test_no_integer_finding_without_big_integers(demo_dir: Path, cli: Cli) -> None:
    res = cli("plan", str(demo_dir / "native.sqlite"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["findings"] == []


def test_a_source_bigger_than_the_memory_budget(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    build_native(tmp_path / "native.sqlite", notes=1000)  # about 2 MB
    warn = assess(make_app(tmp_path, assess={"memory_warn_mb": 1, "memory_critical_mb": 100}))
    assert [f.severity for f in found(warn, "target-memory")] == ["warn"]
    critical = assess(make_app(tmp_path, assess={"memory_warn_mb": 1, "memory_critical_mb": 1}))
    [f] = found(critical, "target-memory")
    assert f.severity == "critical" and "1.0 MB" in f.message and critical.level == "critical"


def test_contentless_fts5_is_data_loss(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    def build(c: apsw.Connection) -> None:
        script(
            c,
            "CREATE VIRTUAL TABLE search USING fts5(body, content='');"
            "INSERT INTO search(rowid, body) VALUES (1, 'text that is indexed but not stored');",
        )

    refused = assess(make_app(tmp_path, build))
    [f] = found(refused, "convert-refuse")
    assert f.severity == "critical" and "DATA LOSS" in f.message and "allow_drop" in f.fix
    dropped = assess(make_app(tmp_path, convert={"allow_drop": ["search"]}))
    [f] = found(dropped, "convert-drop")
    assert f.severity == "critical" and dropped.level == "critical"


class _Module:
    """A Python virtual-table module, registered only while the test database is built."""

    def Create(self, db: Any, module: str, dbname: str, table: str, *args: str) -> tuple[str, _VTable]:
        return "CREATE TABLE x(reading REAL)", _VTable()

    Connect = Create


class _VTable:
    def BestIndex(self, *args: Any) -> None:
        return None

    def Disconnect(self) -> None:
        return None

    Destroy = Disconnect


def test_unknown_virtual_table_module(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    def build(c: apsw.Connection) -> None:
        c.create_module("sensorfeed", _Module())
        script(c, "CREATE TABLE reading (id INTEGER PRIMARY KEY, v REAL); CREATE VIRTUAL TABLE live USING sensorfeed;")

    a = assess(make_app(tmp_path, build))
    [f] = found(a, "convert-refuse")
    assert f.severity == "critical" and "'sensorfeed'" in f.message and a.level == "critical"
    assert a.facts.errors == [] and "live" not in a.facts.tables


def test_rows_only_in_the_old_sqljs_file(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    schema = (
        "CREATE TABLE note (id INTEGER PRIMARY KEY, title TEXT);"
        "CREATE TABLE tag (name TEXT PRIMARY KEY, color TEXT) WITHOUT ROWID;"
        "CREATE TABLE log (line TEXT);"  # no primary key: not compared
    )
    old = apsw.Connection(str(tmp_path / "app-sqljs.sqlite"))
    script(
        old,
        schema + "INSERT INTO note VALUES (1, 'a'), (2, 'b'), (3, 'only here'), (9, 'only here too');"
        "INSERT INTO tag VALUES ('work', 'red'), ('home', 'blue'), ('old', 'grey');"
        "INSERT INTO log VALUES ('x'), ('y');",
    )
    old.close()
    cfg_path = make_app(
        tmp_path,
        lambda c: script(
            c,
            schema + "INSERT INTO note VALUES (1, 'a'), (2, 'b'), (4, 'new');"
            "INSERT INTO tag VALUES ('work', 'red'), ('home', 'blue');",
        ),
    )
    a = assess(cfg_path)
    assert a.facts.old_only_rows == {"note": 2, "tag": 1}
    assert sorted(f.message.split(" row")[0] for f in found(a, "old-only-rows")) == ["1", "2"]

    (tmp_path / "app-sqljs.sqlite").write_bytes(b"not a database at all" * 100)
    unreadable = assess(cfg_path)
    unread = found(unreadable, "unreadable")  # its rows and its schema (the drift) could not be read
    assert unread and all("app-sqljs.sqlite" in f.message and f.severity == "high" for f in unread)


WRITER = """
import sys, time, apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(5000)
for i in range(4000):  # bounded: the test stops it long before
    conn.execute("INSERT INTO grdb_migrations(identifier) VALUES (?)", (f"writer-{i}",))
    if i == 0:
        print("ready", flush=True)
    time.sleep(0.005)
"""

HOLDER = """
import sys, apsw
conn = apsw.Connection("file:" + sys.argv[1] + "?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
conn.execute("SELECT count(*) FROM grdb_migrations").get
print("ready", flush=True)
sys.stdin.read()  # held open until the test closes stdin
"""


def start(code: str, db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.timeout(120)  # a child process that never says ready must not hang the run
def test_a_writer_active_during_the_assessment(
    native_template: Path, tmp_path: Path, make_app: Callable[..., Path]
) -> None:
    native = copy_db(native_template, tmp_path / "native.sqlite")
    cfg_path = make_app(tmp_path, assess={"liveness_seconds": 0.3})
    writer = start(WRITER, native)
    try:
        a = assess(cfg_path)
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    live = a.facts.liveness
    assert live.wal_mode and live.writes_seen > 0 and live.evidence
    [f] = found(a, "live-writes")
    assert f.severity == "high" and "exit 5" in f.fix and a.level == "high"


@pytest.mark.timeout(120)  # a child process that never says ready must not hang the run
def test_a_process_holding_the_source_open(native_db: Path, make_app: Callable[..., Path]) -> None:
    if file_locks([native_db]) is None:
        pytest.skip("no /proc/locks on this system")
    cfg_path = make_app(native_db.parent)
    holder = start(HOLDER, native_db)
    try:
        a = assess(cfg_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert a.facts.liveness.writes_seen == 0 and holder.pid in a.facts.liveness.open_pids
    [f] = found(a, "live-open")
    assert f.severity == "warn" and str(holder.pid) in f.message


CRASH = """
import os, sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("PRAGMA cache_size = 1")
conn.execute("BEGIN")
for _ in range(300):
    conn.execute("INSERT INTO t VALUES (randomblob(1000))")
os._exit(0)  # dies mid-transaction: the -journal stays, hot
"""


def test_a_hot_journal_is_seen_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "hot.sqlite"
    conn = apsw.Connection(str(db))
    script(conn, "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
    conn.close()
    subprocess.run([sys.executable, "-c", CRASH, str(db)], check=True, timeout=60)
    journal = Path(f"{db}-journal")
    before = file_hashes(db, journal)
    live = watch_source(db, 0.1, observe_sides(db))
    assert file_hashes(db, journal) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "hot.sqlite",
        "hot.sqlite-journal",
    ]
    assert live.hot_journal == journal.stat().st_size > 0 and not live.wal_mode
    [f] = found(evaluate(Facts(liveness=live)), "hot-journal")
    assert f.severity == "critical"


def test_a_wal_without_shm_is_seen_and_not_repaired(native_db: Path, make_app: Callable[..., Path]) -> None:
    shm = Path(f"{native_db}-shm")
    sides = observe_sides(native_db)  # copy_db copies the -wal, never the -shm
    assert sides.wal_bytes and not sides.shm
    live = watch_source(native_db, 0.1, sides)
    assert live.wal_without_shm == sides.wal_bytes and not shm.exists()  # watching opened nothing
    a = assess(make_app(native_db.parent), sides=sides)  # sides as seen before the snapshot opened the source
    [f] = found(a, "wal-without-shm")
    assert f.severity == "warn" and a.facts.wal_bytes == sides.wal_bytes


def test_a_damaged_snapshot_fails_quick_check(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    def build(c: apsw.Connection) -> None:
        script(
            c,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
            " INSERT INTO t(body) SELECT printf('%.500c', 'x') FROM n;",
        )

    cfg_path = make_app(tmp_path, build)
    with (tmp_path / "native.sqlite").open("r+b") as fh:  # wreck a leaf page of t
        fh.seek(4096 * 20)
        fh.write(b"\x0d\x00\x00\xff\xff\xff\xff\xff" + b"\xab" * 64)
    a = assess(cfg_path)
    [f] = found(a, "integrity")
    assert f.severity == "critical" and "malformed" in f.message
    assert any("table sizes" in e for e in a.facts.errors)  # counting t failed too, and said so


def test_the_profile_limits(tmp_path: Path, make_app: Callable[..., Path]) -> None:
    profile = load_profile("sqljs-1.16.0").model_copy(update={"name": "tiny", "limits": {"max_column": 3}})
    (tmp_path / "tiny.toml").write_text(profile.to_toml())
    cfg_path = make_app(
        tmp_path,
        lambda c: script(c, "CREATE TABLE wide (a, b, c, d);"),
        target={"profile": str(tmp_path / "tiny.toml")},
    )
    a = assess(cfg_path)
    [f] = found(a, "limit-max_column")
    assert f.severity == "critical" and "table wide: 4 exceeds the target's max_column (3)" in f.message
    assert a.facts.calibration is not None and a.facts.calibration.key["profile"] == str(tmp_path / "tiny.toml")


def test_emergency_mode_skips_slow_facts_but_not_pending_or_disk(
    native_db: Path, make_app: Callable[..., Path]
) -> None:
    cfg_path = make_app(native_db.parent)
    (native_db.parent / ".failback" / "calibration.json").unlink()
    a = assess(cfg_path, mode="emergency")
    f = a.facts
    assert f.mode == "emergency" and f.skipped == ["calibration", "dbstat", "quick_check"]
    assert f.integrity is None and f.estimates == {} and all(t.bytes is None for t in f.tables.values())
    assert not (native_db.parent / ".failback" / "calibration.json").exists()  # nothing measured
    assert f.pending and f.disk and f.tables["note"].rows
    assert found(a, "pending-changes") and found(a, "skipped")


def test_the_calibration_is_cached_per_machine_and_settings(calibration_file: Path, tmp_path: Path) -> None:
    cfg = Config.model_validate({"source": {"path": "n"}, "target": {"path": "t"}, "app": {"config": "a"}})
    cfg.base = tmp_path
    seed_calibration(cfg.state_path, calibration_file)
    cached = calibration(cfg, measure=False)
    assert cached is not None and set(cached.mb_per_s) == {"snapshot", "sha256", "digest", "export", "integrity"}
    assert all(rate > 0 for rate in cached.mb_per_s.values())
    other = cfg.model_copy(update={"target": cfg.target.model_copy(update={"profile": "sqlite-3.54"})})
    assert calibration(other, measure=False) is None


def test_a_process_measures_the_calibration_once(calibration_file: Path, tmp_path: Path) -> None:
    """A fleet worker's tenants each have a state folder: the second gets this process's measurement, cached."""
    cfg = Config.model_validate({"source": {"path": "n"}, "target": {"path": "t"}, "app": {"config": "a"}})
    cfg.base = tmp_path
    cal = calibration(cfg, measure=True)
    measured = json.loads(calibration_file.read_text())
    assert cal is not None and cal.seconds == measured["seconds"] and cal.mb_per_s == measured["mb_per_s"]
    assert json.loads(cfg.state.calibration.read_text()) == measured
    assert not list(cfg.state_path.glob(".calibrate-*"))


# -- the CLI: report, exit codes, gates ---------------------------------------------------------------
def test_assess_command_on_a_quiet_app(tmp_path: Path, make_app: Callable[..., Path], cli: Cli) -> None:
    cfg_path = make_app(
        tmp_path,
        lambda c: script(c, "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO item VALUES (1, 'a');"),
    )
    res = cli("assess", "-c", str(cfg_path))
    assert res.returncode == 0, res.stderr
    assert "Risk: low" in res.stdout and "Tables" in res.stdout and "Disk" in res.stdout
    res = cli("assess", "-c", str(cfg_path), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert (data["level"], data["go"]) == ("low", True) and data["facts"]["tables"]["item"]["rows"] == 1


def test_assess_command_refuses_high_risk(demo_dir: Path, calibration_file: Path, cli: Cli) -> None:
    cfg_path = demo_dir / "failback.toml"
    cfg_path.write_text(cfg_path.read_text().replace("liveness_seconds = 0.5", "liveness_seconds = 0.1"))
    seed_calibration(demo_dir / ".failback", calibration_file)
    res = cli("assess", "-c", str(cfg_path))
    assert res.returncode == 3, res.stderr
    assert "Risk: high" in res.stdout and "needs --yes" in res.stderr
    res = cli("assess", "-c", str(cfg_path), "--mode", "emergency", "--json")
    assert res.returncode == 3
    data = json.loads(res.stdout)
    assert data["level"] == "high" and "dbstat" in data["facts"]["skipped"]
    res = cli("rollback", "-c", str(cfg_path))
    assert res.returncode == 3 and "risk high" in res.stderr
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()


def test_rollback_gate_at_critical_risk_needs_force_and_a_reason(
    tmp_path: Path, make_app: Callable[..., Path], cli: Cli
) -> None:
    build_native(tmp_path / "native.sqlite", notes=1000)
    cfg_path = make_app(tmp_path, assess={"memory_critical_mb": 1, "liveness_seconds": 0})
    for flags in ((), ("--yes", "--force")):
        res = cli("rollback", "-c", str(cfg_path), *flags)
        assert res.returncode == 3, res.stderr
        assert "risk critical" in res.stderr
    assert "--reason" in res.stderr
    assert "DATABASE_PROVIDER=native" in (tmp_path / "app.env").read_text()
    reason = "the app only runs on desktops with 8 GB"
    res = cli("rollback", "-c", str(cfg_path), "--force", "--reason", reason)
    assert res.returncode == 0, res.stderr
    assert "DATABASE_PROVIDER=sqljs" in (tmp_path / "app.env").read_text()
    overrides = [r for r in AuditLog(tmp_path / ".failback" / "audit.jsonl").records() if r["event"] == "gate.override"]
    assert [r["data"]["reason"] for r in overrides] == [reason]


CONFIRM = """
from failback.assess import Facts, Pending, evaluate, gate
from failback.cli.assess import confirm_high_risk
gate(evaluate(Facts(pending=[Pending("flag", "note.isSynced = 0", 3)])), confirm=confirm_high_risk)
print("proceeding")
"""


def test_high_risk_is_confirmed_on_a_terminal_only() -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", CONFIRM], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    os.close(follower)
    try:
        os.write(leader, b"y\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    assert proc.returncode == 0, err
    assert "Roll back anyway?" in err and "3 change(s) not yet synced" in out and "proceeding" in out
    piped = subprocess.run(
        [sys.executable, "-c", CONFIRM], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode != 0 and "RiskRefused" in piped.stderr and "proceeding" not in piped.stdout


def test_assessment_never_writes_the_source(native_db: Path, make_app: Callable[..., Path]) -> None:
    before = file_hashes(*db_files(native_db))
    assess(make_app(native_db.parent))
    assert file_hashes(*db_files(native_db)) == before
