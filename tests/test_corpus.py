"""Every failback command that takes a file, run as a real subprocess against each input of the bad-input
corpus (tests/data/, built by tests/make_corpus.py).

For each run: an exit code in {0, 1, 2, 3, 5, 6} (never 70, never a traceback); when it fails, stderr's
first line is ``error: …`` and a ``hint: …`` line follows; the input's bytes (and its -wal/-journal) are
unchanged; nothing is written but what the command owns (no partial target, no stray temp file). The odd but
valid databases must export with identical content. Each input is copied into its own folder first; the runs
go through a small thread pool (they are separate processes), and each test checks one (input, command).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from failback.backup.sets import create_backup
from failback.cli import main as cli_main
from failback.db.connect import connect
from failback.db.digest import table_digest
from failback.db.schema import digest_specs, read_schema
from failback.snapshot import take_snapshot

from .make_corpus import DATA, ENTRIES, Entry, small_db

# the first test waits for the module fixture that runs ~300 subprocesses (about 4 minutes on a busy 2-core machine)
pytestmark = pytest.mark.timeout(1200)
ALLOWED_EXITS = {0, 1, 2, 3, 5, 6}
TEMP = re.compile(r"\.failback-|-journal$")  # failback's temp names (files.tmp_name) and a leftover journal
CONFIG = """\
[source]
path = "{source}"

[target]
path = "target.sqlite"

[app]
config = "app.env"

[backup]
dir = "backups"

[assess]
liveness_seconds = 0

[benchmark]
queries = ["SELECT 1"]
runs = 1
"""
APP_ENV = "# the app's provider setting\nDATABASE_PROVIDER=native\n"
MISSING = Entry("missing.sqlite", "a path that does not exist", "error", lambda *_: None)
DB_INPUTS = [e for e in ENTRIES if e.kind == "db"] + [MISSING]
CONFIG_INPUTS = [e for e in ENTRIES if e.kind == "config" and e.expect == "error"]


# -- running and judging one command -------------------------------------------------------------------
@dataclass
class Run:
    """One command's outcome and every rule it broke."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    cwd: Path
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"failback {' '.join(self.args)} → {self.code}\n{self.stderr[-2000:]}\n" + "\n".join(self.problems)


def failback(args: list[str], cwd: Path) -> Run:
    res = subprocess.run(
        [sys.executable, "-m", "failback", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FAILBACK_DEBUG": "", "COLUMNS": "200"},
    )
    return Run(args, res.returncode, res.stdout, res.stderr, cwd)


def judge_output(run: Run, report_exits: tuple[int, ...] = ()) -> None:
    """Exit code, no traceback, and ``error:`` + ``hint:`` when it fails (step lines of a rollback aside)."""
    if run.code not in ALLOWED_EXITS:
        run.problems.append(f"exit code {run.code} (allowed: {sorted(ALLOWED_EXITS)})")
    if "Traceback" in run.stderr or "internal error" in run.stderr:
        run.problems.append("a traceback or internal error on stderr")
    if run.code == 0 or (run.code in report_exits and "error:" not in run.stderr):
        return
    lines = [ln for ln in run.stderr.splitlines() if ln.strip() and not ln.startswith(("✓ ", "✗ "))]
    if not lines or not lines[0].startswith("error: "):
        run.problems.append(f"stderr does not start with 'error:': {lines[:1]}")
    elif len(lines) < 2 or not lines[1].startswith("hint: "):
        run.problems.append("no 'hint:' line after the error")
    elif len(lines[0]) > 600:
        run.problems.append("the error is not one short line")


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` → what it is (file hash, symlink target, folder)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def judge_files(run: Run, before: dict[str, str], after: dict[str, str], may_write: tuple[str, ...]) -> None:
    """Inputs unchanged; new or changed paths only under ``may_write`` (top-level names); no temp names."""
    for rel, what in before.items():
        top = rel.split(os.sep, 1)[0]
        if after.get(rel) != what and top not in may_write:
            run.problems.append(f"{rel} was changed or removed")
    for rel in after.keys() - before.keys():
        top = rel.split(os.sep, 1)[0]
        if top.endswith("-shm") and top[: -len("-shm")] + "-wal" in before:
            continue  # SQLite's shared-memory index of a WAL database it read (it keeps no data)
        if top not in may_write:
            run.problems.append(f"{rel} was written")
        elif TEMP.search(Path(rel).name):
            run.problems.append(f"temp file {rel} left behind")


# -- expected content -------------------------------------------------------------------------------------
def content(db: Path) -> dict[str, Any]:
    """What must survive a conversion: per-table rows and digests, user_version, application_id."""
    scratch = db.parent / ".content-scratch"  # a copy: reading must not touch the file under test
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    copy = scratch / db.name
    shutil.copyfile(db, copy)
    if Path(str(db) + "-wal").exists():
        shutil.copyfile(str(db) + "-wal", str(copy) + "-wal")
    conn = connect(copy, readonly=True)
    try:
        schema = read_schema(conn)
        tables = {s.table: table_digest(conn, s) for s in digest_specs(schema)}
        return {
            "tables": {t: (d.rows, d.digest) for t, d in tables.items()},
            "user_version": schema.user_version,
            "application_id": schema.application_id,
        }
    finally:
        conn.close()
        shutil.rmtree(scratch)


# -- the matrix ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """A command run against an input: its arguments and the top-level names it may write."""

    name: str
    args: Callable[[str, Path], list[str]]
    may_write: tuple[str, ...] = ()
    may_write_on_success: tuple[str, ...] = ()
    report_exits: tuple[int, ...] = ()  # exits that report a finding (verify 1, plan 3, assess 3)
    applies: Callable[[Entry], bool] = lambda e: True


STATE = (".failback",)
VALID = "export"  # Entry.expect of the odd but valid databases
EITHER = "either"  # Entry.expect of the inputs that may export (then with identical content) or fail cleanly
DEMO_INPUTS = ("empty.sqlite", "text.sqlite", "folder.sqlite", "loop-a.sqlite")
NOT_FILES = ("empty.sqlite", "text.sqlite", "encrypted.sqlite", "folder.sqlite", "loop-a.sqlite", "missing.sqlite")


def _bad(e: Entry) -> bool:
    return e.expect != VALID


DB_STEPS = [
    Step(
        "export",
        lambda n, ws: ["export", n, "out.sqlite"],
        may_write_on_success=("out.sqlite", "out.sqlite.manifest.json"),  # the web module's manifest beside it
    ),
    Step(
        "verify-source",
        lambda n, ws: ["verify", n, "out.sqlite" if (ws / "out.sqlite").exists() else "good.sqlite"],
        report_exits=(1,),
    ),
    Step("plan", lambda n, ws: ["plan", n], report_exits=(3,)),
    # a database (or no file at all) where a profile file is expected
    Step("plan-profile", lambda n, ws: ["plan", "good.sqlite", "--profile", n], applies=lambda e: e.name in NOT_FILES),
    Step("verify-target", lambda n, ws: ["verify", "good.sqlite", n], report_exits=(1,), applies=_bad),
    Step("baseline", lambda n, ws: ["baseline", "record", "-c", "failback.toml", "--database", n], STATE, applies=_bad),
    # rollback runs snapshot, backup and assess too: on valid inputs, the separate commands add nothing
    Step("backup-create", lambda n, ws: ["backup", "create", "-c", "failback.toml"], (*STATE, "backups"), applies=_bad),
    Step("assess", lambda n, ws: ["assess", "-c", "failback.toml"], STATE, report_exits=(3,), applies=_bad),
    Step(
        "rollback",
        lambda n, ws: ["rollback", "-c", "failback.toml", "--yes"],
        (*STATE, "backups"),
        may_write_on_success=("target.sqlite", "target.sqlite.manifest.json", "app.env"),
    ),
    # commands whose path is a folder or an output: a file, a folder that is no demo, a loop
    Step("demo", lambda n, ws: ["demo", n, "--notes", "20"], applies=lambda e: e.name in DEMO_INPUTS),
    Step("probe-output", lambda n, ws: ["probe", "-o", n], applies=lambda e: e.name == "folder.sqlite"),
    # last: restoring over the input (a folder, a symlink loop, a file with side files, or no file at all)
    Step(
        "backup-restore",
        lambda n, ws: ["backup", "restore", "-c", "restore.toml", (ws / "backup-id").read_text(), n],
        may_write_on_success=("missing.sqlite",),
        applies=lambda e: e.name in NOT_FILES or bool(e.extra),
    ),
]


def _entries_needing_workspace(entry: Entry) -> list[Path]:
    """The corpus paths an input consists of (the file, its side files, the other end of a symlink loop)."""
    if entry is MISSING:
        return []
    names = [entry.name, *(entry.name + s for s in entry.extra)]
    if entry.name == "loop-a.sqlite":
        names.append("loop-b.sqlite")
    return [DATA / n for n in names]


def workspace(root: Path, entry: Entry, good: Path, stored: tuple[Path, str]) -> Path:
    """A folder holding a copy of the input (symlinks and folders as they are), a valid database, the app's
    config, a failback.toml whose source is the input, and restore.toml naming a layer with a backup."""
    ws = root / entry.name
    ws.mkdir(parents=True)
    for p in _entries_needing_workspace(entry):
        if p.is_symlink():
            os.symlink(os.readlink(p), ws / p.name)
        elif p.is_dir():
            shutil.copytree(p, ws / p.name)
        else:
            shutil.copyfile(p, ws / p.name)
    shutil.copyfile(good, ws / "good.sqlite")
    (ws / "app.env").write_text(APP_ENV)
    (ws / "failback.toml").write_text(CONFIG.format(source=entry.name))
    layer, backup_id = stored
    (ws / "restore.toml").write_text(CONFIG.format(source="good.sqlite").replace('"backups"', f'"{layer}"'))
    (ws / "backup-id").write_text(backup_id)
    return ws


def run_steps(entry: Entry, ws: Path) -> dict[str, Run]:
    """Run every step against one input, in order, judging each."""
    out: dict[str, Run] = {}
    valid = entry.expect == VALID
    for step in DB_STEPS:
        if not step.applies(entry):
            continue
        before = tree(ws)
        run = failback(step.args(entry.name, ws), ws)
        judge_output(run, step.report_exits)
        may = step.may_write + (step.may_write_on_success if run.code == 0 else ())
        judge_files(run, before, tree(ws), may)
        if entry.expect == "error" and run.code == 0 and step.name in ("export", "rollback", "backup-create"):
            run.problems.append("a bad input was accepted")
        if entry.expect == "repair" and step.name in ("export", "rollback"):
            judge_refused_repair(run)
        if valid:
            judge_valid(run, step, entry, ws)
        elif entry.expect == EITHER and run.code == 0:
            judge_produced(run, step, entry, ws)  # a correct result: the same content as the source
        if step.name == "backup-restore" and run.code == 0 and content(ws / entry.name) != content(ws / "good.sqlite"):
            run.problems.append("the restored database differs from the backed-up one")
        out[step.name] = run
    return out


def judge_refused_repair(run: Run) -> None:
    """A source whose only damage is an FTS index the target would rebuild: refused (exit 3) without
    --repair-fts, the error naming the index and the hint the option (a backup of it is fine: it is faithful)."""
    if run.code != 3 or "FTS index of note_ft is malformed" not in run.stderr or "--repair-fts" not in run.stderr:
        run.problems.append("a damaged FTS index was not refused by name (exit 3) without --repair-fts")


def judge_valid(run: Run, step: Step, entry: Entry, ws: Path) -> None:
    """An odd but valid database: export, verify, plan and rollback succeed with identical content."""
    if step.name in ("plan-profile", "backup-restore"):
        return
    if run.code != 0:
        run.problems.append("a valid database was not handled (exit code not 0)")
        return
    judge_produced(run, step, entry, ws)


def judge_produced(run: Run, step: Step, entry: Entry, ws: Path) -> None:
    """The file an export or a rollback wrote holds the source's content; the rollback switched the app."""
    produced = {"export": "out.sqlite", "rollback": "target.sqlite"}.get(step.name)
    if produced:
        expected = content(DATA / entry.name)
        got = content(ws / produced)
        if got != expected:
            run.problems.append(f"{produced} differs from the source: {got} != {expected}")
    if step.name == "rollback" and "DATABASE_PROVIDER=sqljs" not in (ws / "app.env").read_text():
        run.problems.append("app.env was not switched")


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_db(tmp_path_factory.mktemp("good") / "good.sqlite")


@pytest.fixture(scope="module")
def stored_backup(tmp_path_factory: pytest.TempPathFactory, good_db: Path) -> tuple[Path, str]:
    """A layer holding one real backup of the valid database: (layer, backup id)."""
    root = tmp_path_factory.mktemp("stored")
    snap = take_snapshot(good_db, root / "snap.sqlite")
    snap.guard.close()
    return root / "layer", create_backup(snap.path, [root / "layer"], label="corpus", source=good_db).id


@pytest.fixture(scope="module")
def db_runs(
    tmp_path_factory: pytest.TempPathFactory, good_db: Path, stored_backup: tuple[Path, str]
) -> dict[tuple[str, str], Run]:
    """Every DB step against every DB input (inputs run in parallel, steps of one input in order)."""
    root = tmp_path_factory.mktemp("corpus")
    spaces = {e.name: workspace(root, e, good_db, stored_backup) for e in DB_INPUTS}
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        done = dict(zip(spaces, pool.map(lambda e: run_steps(e, spaces[e.name]), DB_INPUTS), strict=True))
    return {(name, step): run for name, runs in done.items() for step, run in runs.items()}


def db_cases() -> Iterator[Any]:
    for entry in DB_INPUTS:
        for step in [s for s in DB_STEPS if s.applies(entry)]:
            yield pytest.param(entry.name, step.name, id=f"{entry.name}-{step.name}")


@pytest.mark.parametrize(("name", "step"), list(db_cases()))
def test_command_on_input(db_runs: dict[tuple[str, str], Run], name: str, step: str) -> None:
    run = db_runs[(name, step)]
    assert not run.problems, str(run)


# -- configs: every command with a config option, against each bad config ----------------------------------
def config_commands() -> list[tuple[list[str], list[str]]]:
    """(command path, extra arguments) of every CLI command that takes -c/--config, found in the CLI itself
    (so a new command is covered without editing this list). Required arguments get a placeholder."""
    found: list[tuple[list[str], list[str]]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):  # the lazy group loads each command by name
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
            return
        params = {p.name: p for p in cmd.params}
        if "config_path" not in params:
            return
        extra: list[str] = []
        for p in cmd.params:
            if isinstance(p, click.Argument) and p.required:
                extra.append({"source": "good.sqlite", "target": "out.sqlite"}.get(p.name or "", "x"))
            elif isinstance(p, click.Option) and p.required:
                extra += [p.opts[0], "x"]
        if "once" in params:
            extra.append("--once")  # watch: one sample at most
        found.append((path, extra))

    walk(cli_main, [])
    return found


CONFIG_COMMANDS = config_commands()


def test_every_config_command_is_found() -> None:
    names = {" ".join(path) for path, _ in CONFIG_COMMANDS}
    assert {"rollback", "assess", "backup create", "backup restore", "status", "export", "plan"} <= names


# Every command loads its config through failback.config.load_config: every command meets two of the bad
# configs (syntax and types); the others are run by the commands that act on the source.
EVERY_COMMAND = ("config-not-toml.toml", "config-wrong-types.toml")
CORE_COMMANDS = ("rollback", "assess", "backup create", "export", "status")


def config_flag(path: list[str]) -> str:
    return "--config" if path in (["export"], ["plan"]) else "-c"


def run_config(entry: Entry, root: Path, good: Path, path: list[str], extra: list[str]) -> Run:
    ws = root / f"{entry.name}-{'-'.join(path)}"
    ws.mkdir()
    shutil.copyfile(DATA / entry.name, ws / "failback.toml")
    shutil.copyfile(good, ws / "good.sqlite")
    (ws / "app.env").write_text(APP_ENV)
    args = [*path, *extra, config_flag(path), "failback.toml"]
    before = tree(ws)
    run = failback(args, ws)
    judge_output(run)
    if run.code == 0:
        run.problems.append("a bad config was accepted")
    judge_files(run, before, tree(ws), ())
    return run


@pytest.fixture(scope="module")
def config_runs(tmp_path_factory: pytest.TempPathFactory, good_db: Path) -> dict[tuple[str, str], Run]:
    root = tmp_path_factory.mktemp("configs")
    jobs = [
        (e, path, extra)
        for e in CONFIG_INPUTS
        for path, extra in CONFIG_COMMANDS
        if e.name in EVERY_COMMAND or " ".join(path) in CORE_COMMANDS
    ]
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        runs = list(pool.map(lambda j: run_config(j[0], root, good_db, j[1], j[2]), jobs))
    return {(e.name, " ".join(path)): run for (e, path, _), run in zip(jobs, runs, strict=True)}


@pytest.mark.parametrize("name", [e.name for e in CONFIG_INPUTS])
def test_every_config_command_on_bad_config(config_runs: dict[tuple[str, str], Run], name: str) -> None:
    runs = [run for (cfg, _), run in config_runs.items() if cfg == name]
    assert len(runs) >= len(CORE_COMMANDS)
    bad = [str(run) for run in runs if run.problems]
    assert not bad, "\n\n".join(bad)


# -- the corpus itself ---------------------------------------------------------------------------------------
def test_corpus_matches_a_fresh_build(tmp_path: Path) -> None:
    """tests/data is what make_corpus.py builds (deterministic, and nobody edited a file by hand)."""
    script = Path(__file__).with_name("make_corpus.py")
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=120)
    assert tree(tmp_path) == tree(DATA), "run .venv/bin/python tests/make_corpus.py (a new SQLite changes headers)"


def test_corpus_files_are_small() -> None:
    sizes = {rel: (DATA / rel).lstat().st_size for rel in tree(DATA)}
    assert all(size <= 32 << 10 or rel == "pagesize-65536.sqlite" for rel, size in sizes.items()), sizes


def test_readme_lists_every_input() -> None:
    readme = (DATA / "README.md").read_text()
    assert all(f"`{e.name}`" in readme for e in ENTRIES)


def test_names_survive_export_as_data_not_sql(db_runs: dict[tuple[str, str], Run]) -> None:
    """The injection-looking names reached SQL only quoted: table y, which they try to drop, is intact, and
    the view and trigger on them work in the converted file."""
    for step, produced in (("export", "out.sqlite"), ("rollback", "target.sqlite")):
        run = db_runs[("names.sqlite", step)]
        assert run.code == 0, str(run)
        conn = connect(run.cwd / produced, readonly=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            assert {'x"; DROP TABLE y; --', "y", "table", "my table ☃"} <= tables
            assert conn.execute('SELECT count(*) FROM "view ""of"" x"').get == 1
            trigger = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'").get
            assert trigger == "trg'; DROP TABLE y; --"
        finally:
            conn.close()
