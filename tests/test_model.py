"""A model-based crash and concurrency test: a hypothesis state machine drives REAL `failback` processes over a
real demo app folder, and after every step checks the safety invariants against a model of what the app wrote.

Actions (rules): the app writes notes (apsw, WAL, the Swift collation, foreign keys on — as GRDB would);
`rollback --yes` (standard or emergency), killed at a named crash point (FAILBACK_KILL_AT) or by SIGKILL after
a random delay; the app writing while a rollback runs (the rollback is frozen with SIGSTOP after its snapshot,
the write committed, SIGCONT); two rollbacks started at once (the second maybe with --break-lock); `resume`;
`abort`; `backup prune` under an aggressive retention (keep_last=1, keep_within=0d, keep_daily=0); a rollback
fired by `watch --once`; a rollback whose config points the target at the source, a backup or a file in the
state folder (which must be refused).

The model: the notes committed to native.sqlite (id → title, body), and — once app.env says sqljs — the notes
in the sql.js file app.env names. Once switched, the app writes to that sql.js file (as the real app does after
a restart), never to native.sqlite again, so a later abort must not drop those writes; from then on only the
plain `rollback` rule starts rollbacks (each must be refused), the costlier ways wait for an app on native.

Invariants after every step:
* every command ends with a documented exit code and no traceback; a misplaced target is refused;
* the switch happens only to content equal to the native database at that moment (every committed row, every
  table digest): a write after the snapshot means no switch; afterwards the sql.js file holds the model's rows;
  going back to native after the app wrote to sql.js loses nothing;
* app.env changes only its provider line; nothing else in the app folder changes (native.sqlite and its -wal
  only by the model's writes) outside .failback/, the backup folders, the target and temp files of unfinished
  runs; a stored backup is never modified, and deleted only by prune and never while a resume, an abort or an
  unpaid verification debt needs it;
* the audit chain is valid and append-only, every ended run has its final record, and every switch moves the
  app from native (two switches mean two runs acted at once).
At teardown the switched file is also read by the real sql.js.

Profiles: CI (fixed seed, a few short examples) runs in `make test`; FAILBACK_SOAK=1 (`make soak`) runs many
long examples with a printed FAILBACK_SOAK_SEED, which replays the same run when set.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import apsw
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from failback.audit import verify_chain
from failback.db.digest import DigestSpec
from failback.demo import create_demo
from failback.demo.sample import SWIFT_COLLATION
from failback.journal import list_runs
from failback.pipeline.switch import read_provider

from .conftest import apsw_digests, digest_specs_of, sqljs_digests
from .test_crash import KILLS, SMALL

NOTES = 60
KEY, NATIVE, SQLJS = "DATABASE_PROVIDER", "native", "sqljs"
DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6}
UNFINISHED = {"running", "interrupted"}
RETENTION = 'keep_last = 1\nkeep_within = "0d"\nkeep_daily = 0\n'
WATCH = """
[triggers]
interval = 0.01
jsonl_path = "metrics.jsonl"

[[triggers.rules]]
name = "p95"
metric = "p95_ms"
threshold = 200
for = 1
severity = "rollback"
"""
MODES = st.sampled_from(["standard", "emergency"])
WRITES = st.sampled_from(["insert", "update", "delete"])
PICKS = st.integers(0, 1 << 16)
Notes = dict[int, tuple[str, str]]

KILL_POINTS = [k.at for k in KILLS if k.notes == SMALL]  # the points a small demo reaches


# -- the app's view of its databases ------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_notes(db: Path) -> Notes:
    """The note rows of a database, read-only (as a reader of the file sees them, -wal included)."""
    conn = apsw.Connection(f"file:{db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        return {i: (t, b) for i, t, b in conn.execute("SELECT id, title, body FROM note")}
    finally:
        conn.close()


def app_write(db: Path, op: str, pick: int, serial: int, rows: Notes) -> str:
    """Commit one write to ``db`` as the app would and apply it to the model ``rows``; says what it did."""
    ids = sorted(rows)
    if not ids:
        op = "insert"
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.create_collation(
            SWIFT_COLLATION, lambda a, b: (a.casefold() > b.casefold()) - (a.casefold() < b.casefold())
        )
        conn.set_busy_timeout(30_000)
        conn.execute("PRAGMA foreign_keys = ON")
        stamp = "2026-01-01 00:00:00.000"
        if op == "insert":
            title, body = f"model note {serial}", f"written by the model, serial {serial}"
            conn.execute(
                "INSERT INTO note(title, body, createdAt, updatedAt) VALUES (?, ?, ?, ?)", (title, body, stamp, stamp)
            )
            note = conn.last_insert_rowid()
            rows[note] = (title, body)
        elif op == "update":
            note = ids[pick % len(ids)]
            rows[note] = (f"edited by the model {serial}", rows[note][1])
            conn.execute("UPDATE note SET title = ?, updatedAt = ? WHERE id = ?", (rows[note][0], stamp, note))
        else:
            note = ids[pick % len(ids)]
            conn.execute("DELETE FROM note WHERE id = ?", (note,))
            del rows[note]
    finally:
        conn.close()
    return f"{op} note {note} in {db.name}"


def diff_notes(want: Notes, got: Notes) -> str:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    changed = sorted(i for i in set(want) & set(got) if want[i] != got[i])
    return f"missing ids {missing[:5]}, unexpected ids {extra[:5]}, changed ids {changed[:5]}"


# -- processes ------------------------------------------------------------------------------------------
def start(demo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A real `failback` process in its own process group (so a SIGKILL/SIGSTOP reaches its Node child too)."""
    return subprocess.Popen(
        [sys.executable, "-m", "failback", *args],
        cwd=demo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    if proc.poll() is None:  # not reaped yet: the group id cannot have been reused
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def wait_until(done: Callable[[], bool], proc: subprocess.Popen[str], bound: float = 120.0) -> bool:
    """Poll ``done`` until it holds or ``proc`` ends (bounded; a bound hit is not a failure, just no wait)."""
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if done():
            return True
        if proc.poll() is not None:
            return done()
        time.sleep(0.02)
    return False


def run_states(state: Path) -> dict[str, dict[str, Any]]:
    """Every run's state.json (a run being written this instant is skipped)."""
    out = {}
    for rd in list_runs(state):
        with contextlib.suppress(OSError, ValueError):
            out[rd.id] = json.loads(rd.file("state.json").read_text())
    return out


def step_status(run: dict[str, Any], name: str) -> str:
    return next(s["status"] for s in run["steps"] if s["name"] == name)


def native_only(fn: Callable[..., None]) -> Callable[..., None]:
    """Once switched, every rollback is refused at its start: one plain `rollback` rule keeps checking that, the
    costlier ways to start one do nothing. A no-op, not a precondition: whether a killed run got to switch depends
    on timing, and the rules Hypothesis may choose must depend on its own choices alone (else a busy machine makes
    the derandomized CI profile fail with FlakyStrategyDefinition)."""

    @functools.wraps(fn)
    def rule_body(machine: AppModel, **kwargs: Any) -> None:
        if machine.target_rows is not None:
            machine.history.append(f"({fn.__name__}: nothing done, the app is switched)")
            return
        fn(machine, **kwargs)

    return rule_body


# -- the machine ------------------------------------------------------------------------------------------
class AppModel(RuleBasedStateMachine):
    """One demo app folder per example, copied from a template; see the module docstring."""

    template: ClassVar[Path]
    workdir: ClassVar[Path]
    specs: ClassVar[list[DigestSpec]]

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(dir=self.workdir))
        self.demo = self.root / "demo"
        shutil.copytree(self.template, self.demo)
        self.state = self.demo / ".failback"
        self.native = self.demo / "native.sqlite"
        self.app_env = (self.demo / "app.env").read_text()
        self.native_rows = read_notes(self.native)
        self.target_rows: Notes | None = None  # the sql.js file's notes, once app.env says sqljs
        self.wrote_sqljs = False
        self.serial = 0
        self.guarded = self._outside_files()
        self.backups = self._backup_files()
        self.audit_seen: list[str] = []
        self.problems: list[str] = []
        self.history: list[str] = []
        self.pruning = False
        self.failed = False

    # -- helpers ---------------------------------------------------------------------------------------
    def sqljs_file(self) -> Path:
        """The file the app's config names for the sql.js provider."""
        return self.demo / (read_provider((self.demo / "app.env").read_text(), "SQLJS_DATABASE_PATH") or "")

    def write(self, op: str, pick: int) -> None:
        """The app commits one write to the database its config selects (native until switched, then sql.js)."""
        self.serial += 1
        if self.target_rows is None:
            self.history.append(app_write(self.native, op, pick, self.serial, self.native_rows))
            self.guarded = self._outside_files()  # the model's own write is the only change allowed there
        else:
            self.history.append(app_write(self.sqljs_file(), op, pick, self.serial, self.target_rows))
            self.wrote_sqljs = True

    def finish(self, proc: subprocess.Popen[str], what: str, killed: bool = False) -> int:
        _, err = proc.communicate(timeout=900)
        code = proc.returncode
        said = [line for line in err.splitlines() if line.startswith("error:")]
        self.history.append(f"{what} → exit {code}{': ' + said[0] if said else ''}"[:300])
        if not (code in DOCUMENTED_EXITS or (killed and code == -signal.SIGKILL)):
            self.problems.append(f"{what}: undocumented exit code {code}: {err[-400:]}")
        if "Traceback" in err:
            self.problems.append(f"{what}: a traceback instead of a one-line error: {err[-400:]}")
        return code

    def run(self, *args: str, env: dict[str, str] | None = None, killed: bool = False) -> int:
        return self.finish(start(self.demo, *args, env=env), " ".join(args), killed)

    def _outside_files(self) -> dict[str, str]:
        """Hashes of every file failback must not touch: all but .failback/, backups/, the target and its
        manifest, app.env, native.sqlite-shm and hidden temp files beside them. An empty -wal counts as none
        (any reader of a WAL database creates one, and SQLite reads the two alike)."""
        out = {}
        for p in self.demo.rglob("*"):
            rel = p.relative_to(self.demo).as_posix()
            if not p.is_file() or rel.split("/")[0] in (".failback", "backups"):
                continue
            if rel.endswith("-wal") and p.stat().st_size == 0:
                continue
            if rel in (
                "app-sqljs.sqlite",
                "app-sqljs.sqlite-journal",
                "app-sqljs.sqlite.manifest.json",  # what the web module checks the target against
                "app.env",
                "native.sqlite-shm",
            ):
                continue
            if rel.startswith(
                (".app-sqljs.sqlite.failback-", ".app-sqljs.sqlite.manifest.json.failback-", ".app.env.failback-")
            ):
                continue
            out[rel] = sha256(p)
        return out

    def _backup_files(self) -> dict[str, str]:
        """Hashes of the files of every complete backup (a folder with its manifest, not one still being built
        under a hidden name; temp files aside)."""
        return {
            p.relative_to(self.demo).as_posix(): sha256(p)
            for manifest in self.demo.glob("backups/*/*/manifest.json")
            if not manifest.parent.name.startswith(".")
            for p in manifest.parent.iterdir()
            if p.is_file() and not p.name.startswith(".")
        }

    def _needed_backups(self, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Backup ids a resume or abort (unfinished runs) or an unpaid verification debt needs, with why."""
        need = {}
        for run_id, run in runs.items():
            if run["status"] in UNFINISHED:
                used = next(s["result"] for s in run["steps"] if s["name"] == "backup")
                ids = [v["id"] for v in used.values() if isinstance(v, dict) and "id" in v]
                need.update({i: f"unfinished run {run_id}" for i in ids})
            debt = self.state / "runs" / run_id / "verification-debt.json"
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(debt.read_text())
                if data.get("backup") and not (data.get("paid") or {}).get("ok"):
                    need[data["backup"]] = f"unpaid verification debt of run {run_id}"
        return need

    # -- rules -----------------------------------------------------------------------------------------
    @rule(op=WRITES, pick=PICKS)
    def app_writes(self, op: str, pick: int) -> None:
        self.write(op, pick)

    @rule(mode=MODES)
    def rollback(self, mode: str) -> None:
        self.run("rollback", "--yes", "--mode", mode)

    @rule(point=st.sampled_from(KILL_POINTS), mode=MODES)
    @native_only
    def rollback_killed_at(self, point: str, mode: str) -> None:
        self.run("rollback", "--yes", "--mode", mode, env={"FAILBACK_KILL_AT": point}, killed=True)

    @rule(ms=st.integers(0, 6000))
    @native_only
    def rollback_killed_after(self, ms: int) -> None:
        proc = start(self.demo, "rollback", "--yes")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(ms / 1000)
        signal_group(proc, signal.SIGKILL)
        self.finish(proc, f"rollback --yes, SIGKILL after {ms} ms", killed=True)

    def rollback_reaching(self, step: str, *statuses: str) -> tuple[subprocess.Popen[str], Callable[[], Any]]:
        """Start a rollback and wait (bounded) until its ``step`` has one of ``statuses``; returns the process
        and a reader of its current run state (None before its run directory exists)."""
        before = set(run_states(self.state))
        proc = start(self.demo, "rollback", "--yes")

        def new_run() -> dict[str, Any] | None:
            return next((r for i, r in run_states(self.state).items() if i not in before), None)

        wait_until(lambda: (r := new_run()) is not None and step_status(r, step) in statuses, proc)
        return proc, new_run

    @rule(op=WRITES, pick=PICKS)
    @native_only
    def app_writes_during_rollback(self, op: str, pick: int) -> None:
        """Freeze a rollback once its snapshot is taken, commit a write, let it go on."""
        proc, new_run = self.rollback_reaching("snapshot", "done")
        signal_group(proc, signal.SIGSTOP)
        try:
            run = new_run()
            if proc.poll() is None and run is not None and step_status(run, "switch") != "pending":
                self.history.append("(no write: the frozen run had reached its switch)")
            else:
                self.write(op, pick)
        finally:
            signal_group(proc, signal.SIGCONT)
        self.finish(proc, "rollback --yes (the app wrote after its snapshot)")

    @rule(staggered=st.booleans(), break_lock=st.booleans())
    @native_only
    def two_rollbacks(self, staggered: bool, break_lock: bool) -> None:
        """A second rollback started at once, or once the first holds the lock (its first step started)."""
        first = (
            self.rollback_reaching("snapshot", "running", "done")[0]
            if staggered
            else start(self.demo, "rollback", "--yes")
        )
        second = start(self.demo, "rollback", "--yes", *(["--break-lock"] if break_lock else []))
        how = f"{'while the first runs' if staggered else 'at once'}{', --break-lock' if break_lock else ''}"
        self.finish(first, f"rollback --yes (first of two, {how})")
        self.finish(second, f"rollback --yes (second of two, {how})")

    @rule()
    def resume(self) -> None:
        self.run("resume")

    @rule()
    def abort(self) -> None:
        self.run("abort")

    @rule()
    def prune(self) -> None:
        self.pruning = True
        self.run("backup", "prune")

    @rule()
    @native_only
    def watch_fires(self) -> None:
        """A rule over a JSONL metric fires on its first sample and the watch rolls back."""
        (self.demo / "watch.toml").write_text((self.demo / "failback.toml").read_text() + WATCH)
        (self.demo / "metrics.jsonl").write_text('{"p95_ms": 250}\n')
        self.guarded = self._outside_files()
        self.run("watch", "-c", "watch.toml", "--once")

    @rule(kind=st.sampled_from(["native.sqlite", "./native.sqlite", "backup", "state"]))
    @native_only
    def rollback_with_misplaced_target(self, kind: str) -> None:
        """[target] path at the source (two spellings), a stored backup or a file in the state folder: refused."""
        found = {
            "backup": sorted(self.demo.glob("backups/*/*/*.zst")),
            "state": sorted(self.state.glob("runs/*/previous-target.sqlite")),
        }.get(kind, [self.demo / kind])
        path = found[0].relative_to(self.demo).as_posix() if found else "native.sqlite"  # none stored yet
        text = (self.demo / "failback.toml").read_text().replace('path = "app-sqljs.sqlite"', f'path = "{path}"')
        (self.demo / "wrong.toml").write_text(text)
        self.guarded = self._outside_files()
        if self.run("rollback", "-c", "wrong.toml", "--yes") == 0:
            self.problems.append(f"a rollback whose target is {path} was not refused")

    # -- invariants ------------------------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        runs = run_states(self.state)
        self._check_switch()
        self._check_files(runs)
        self._check_audit(runs)
        self.pruning = False
        problems, self.problems = self.problems, []
        self.failed = self.failed or bool(problems)
        assert not problems, "\n".join(["invariant violated:", *problems, "steps so far:", *self.history])

    def _check_switch(self) -> None:
        env = (self.demo / "app.env").read_text()
        provider = read_provider(env, KEY)
        others = [line for line in env.splitlines() if not line.startswith(f"{KEY}=")]
        if others != [line for line in self.app_env.splitlines() if not line.startswith(f"{KEY}=")]:
            self.problems.append(f"app.env changed beyond its {KEY} line:\n{env}")
        named = self.sqljs_file()
        if provider == SQLJS:
            switched_now = self.target_rows is None
            if switched_now:  # the model's committed native rows are what the app must find in sql.js
                self.target_rows, self.wrote_sqljs = dict(self.native_rows), False
            assert self.target_rows is not None
            try:
                notes = read_notes(named)
                got = apsw_digests(named, self.specs) if switched_now else {}
                want = apsw_digests(self.native, self.specs) if switched_now else {}
            except (apsw.Error, OSError) as err:
                self.problems.append(f"app.env names {named.name} for sql.js, which cannot be read: {err}")
                return
            if notes != self.target_rows:
                when = "at the switch" if switched_now else "since the switch"
                self.problems.append(
                    f"{named.name} lacks rows the app committed {when}: {diff_notes(self.target_rows, notes)}"
                )
            if got != want:
                bad = sorted(t for t in want if got.get(t) != want[t])
                self.problems.append(f"switched to {named.name}, whose tables {bad} differ from the native database")
        elif provider == NATIVE:
            if self.target_rows is not None and self.wrote_sqljs:
                self.problems.append("the app went back to native after it wrote to sql.js: those writes are lost")
            self.target_rows = None
        else:
            self.problems.append(f"app.env has {KEY}={provider!r}")

    def _check_files(self, runs: dict[str, dict[str, Any]]) -> None:
        now = self._outside_files()
        for rel in sorted(set(now) | set(self.guarded)):
            if now.get(rel) != self.guarded.get(rel):
                change = "appeared" if rel not in self.guarded else "vanished" if rel not in now else "changed"
                self.problems.append(f"{rel} {change}: failback may only touch its state, backups, target and config")
        for p in self.demo.glob(".app-sqljs.sqlite.failback-*"):
            owner = next((i for i in runs if p.name.endswith(i) or p.name.endswith(f"{i}-journal")), None)
            if owner is not None and runs[owner]["status"] not in UNFINISHED:
                self.problems.append(f"temp target {p.name} outlived its run ({runs[owner]['status']})")
        backups = self._backup_files()
        for rel, digest in self.backups.items():
            if rel in backups and backups[rel] != digest:
                self.problems.append(f"stored backup file {rel} was modified")
            elif rel not in backups and not self.pruning:
                self.problems.append(f"stored backup file {rel} was deleted outside `backup prune`")
        self.backups = backups
        stored = {p.parent.name for p in self.demo.glob("backups/*/*/manifest.json")}
        for backup_id, why in self._needed_backups(runs).items():
            if backup_id not in stored:
                self.problems.append(f"backup {backup_id} is gone, but the {why} needs it")

    def _check_audit(self, runs: dict[str, dict[str, Any]]) -> None:
        log = self.state / "audit.jsonl"
        chain = verify_chain(log)
        if not chain.ok:
            self.problems.append(f"audit chain broken: {chain.problem}")
            return
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        hashes = [r["hash"] for r in records]
        if hashes[: len(self.audit_seen)] != self.audit_seen:
            self.problems.append(f"audit log lost or rewrote records ({len(self.audit_seen)} seen, {len(hashes)} now)")
        self.audit_seen = hashes
        for run_id, run in runs.items():
            final = "run.aborted" if run["status"] == "aborted" else "run.end"
            if run["status"] not in UNFINISHED and not any(r["run"] == run_id and r["event"] == final for r in records):
                self.problems.append(f"run {run_id} ended ({run['status']}) without a {final} audit record")
        for r in records:
            if r["event"] == "switch.config" and r["data"].get("from") != NATIVE:
                self.problems.append(f"run {r['run']} switched an app that was on {r['data'].get('from')!r}")

    def teardown(self) -> None:
        """The switched file as the real sql.js reads it: what apsw read (and, unwritten since, the native db)."""
        try:
            if self.target_rows is not None and not self.failed:
                named = self.sqljs_file()
                in_sqljs = sqljs_digests(named, self.specs)
                assert in_sqljs == apsw_digests(named, self.specs), "sql.js reads other content than apsw"
                if not self.wrote_sqljs:
                    assert in_sqljs == apsw_digests(self.native, self.specs), "sql.js reads other data than native"
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- profiles and tests ----------------------------------------------------------------------------------
CI = settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOAK = settings(
    CI,
    max_examples=int(os.environ.get("FAILBACK_SOAK_EXAMPLES", "200")),
    stateful_step_count=int(os.environ.get("FAILBACK_SOAK_STEPS", "30")),
    derandomize=False,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[AppModel]]:
    """The machine bound to a demo template (built once, with the aggressive retention) and a work folder."""
    template = tmp_path_factory.mktemp("model") / "demo"
    create_demo(template, notes=NOTES)
    cfg = template / "failback.toml"
    text = cfg.read_text()
    assert "zstd_level = 3\n" in text
    cfg.write_text(text.replace("zstd_level = 3\n", "zstd_level = 3\n" + RETENTION))
    attrs = {
        "template": template,
        "workdir": tmp_path_factory.mktemp("runs"),
        "specs": digest_specs_of(template / "native.sqlite"),
    }
    yield type("AppModel", (AppModel,), attrs)


def replay(model: type[AppModel], *steps: tuple[str, dict[str, Any]]) -> None:
    """Run a fixed sequence of rules, checking the invariants after each (as hypothesis does)."""
    machine = model()
    try:
        machine.invariants_hold()
        for name, kwargs in steps:
            getattr(machine, name)(**kwargs)
            machine.invariants_hold()
    finally:
        machine.teardown()


def test_model_ci(model: type[AppModel]) -> None:
    """The CI profile: a few short derandomized examples (the same sequences on every run)."""
    run_state_machine_as_test(model, settings=CI)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("FAILBACK_SOAK") != "1", reason="the long profile: FAILBACK_SOAK=1 (make soak)")
def test_model_soak(model: type[AppModel]) -> None:
    """Many long random examples; FAILBACK_SOAK_SEED=<printed seed> replays a run."""
    chosen = int(os.environ.get("FAILBACK_SOAK_SEED") or random.randrange(1 << 32))
    print(f"\nFAILBACK_SOAK_SEED={chosen}", flush=True)
    try:
        run_state_machine_as_test(seed(chosen)(model), settings=SOAK)
    except BaseException as err:
        err.add_note(f"replay with: FAILBACK_SOAK_SEED={chosen} make soak")
        raise


# Sequences found by the machine, replayed as fixed scenarios so CI checks them on every run.
def test_resume_after_a_kill_at_switch_renamed_does_not_drop_app_writes(model: type[AppModel]) -> None:
    replay(
        model,
        ("rollback_killed_at", {"point": "switch.renamed", "mode": "standard"}),
        ("app_writes", {"op": "insert", "pick": 0}),
        ("resume", {}),
    )


@pytest.mark.parametrize("kind", ["native.sqlite", "./native.sqlite"])
def test_a_target_at_the_source_is_refused(model: type[AppModel], kind: str) -> None:
    replay(model, ("rollback_with_misplaced_target", {"kind": kind}))


def test_prune_keeps_the_backup_an_unpaid_debt_needs(model: type[AppModel]) -> None:
    replay(model, ("rollback", {"mode": "emergency"}), ("prune", {}))


def test_a_second_rollback_cannot_break_the_lock_of_a_live_one(model: type[AppModel]) -> None:
    replay(model, ("two_rollbacks", {"staggered": True, "break_lock": True}))
