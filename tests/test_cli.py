"""CLI paths as real processes (`python -m failback …`): the terminal confirmation on a pty, backup restore
--force, verify --level, export --force, audit verify, check --samples, resume/abort by id and abort's
refusals, status of done, failed and source-changed runs. Each test checks the exit code and what was said
and done; every app is a copy of one demo built per module."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from failback.config import load_config
from failback.db.connect import connect, run_script
from failback.demo import create_demo
from failback.journal import RunLock
from failback.pipeline.export import export_database
from failback.pipeline.rollback import Options, Rollback

from .conftest import apsw_digests, db_files, digest_specs_of, file_hashes, sqljs_digests

Cli = Callable[..., subprocess.CompletedProcess[str]]
NOTES = 120  # a small GRDB-style app: every test below runs real rollbacks on it
KILL_POINT = "verify.end"  # FAILBACK_KILL_AT: the run dies after verifying, before the switch


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "demo"
    create_demo(directory, notes=NOTES)
    return directory


@pytest.fixture
def app(demo_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the demo app (never its -shm); the source's bytes are guarded unless a test writes it."""
    directory = tmp_path / "app"
    shutil.copytree(demo_template, directory, ignore=shutil.ignore_patterns("*-shm"))
    native = directory / "native.sqlite"
    before = file_hashes(*db_files(native))
    yield directory
    if not (directory / "source-written").exists():
        assert file_hashes(*db_files(native)) == before, "the source database was modified"


def provider(app: Path) -> str:
    [line] = [ln for ln in (app / "app.env").read_text().splitlines() if ln.startswith("DATABASE_PROVIDER=")]
    return line.split("=", 1)[1]


def audit_events(app: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (app / ".failback" / "audit.jsonl").read_text().splitlines()]


def runs(cli: Cli, app: Path) -> dict[str, dict[str, Any]]:
    res = cli("status", "-c", str(app / "failback.toml"), "--json")
    assert res.returncode == 0, res.stderr
    return {r["id"]: r for r in json.loads(res.stdout)["runs"]}


def killed_run(cli: Cli, app: Path) -> str:
    """Start a rollback that dies (SIGKILL) after verification; return its run id."""
    res = subprocess.run(
        [sys.executable, "-m", "failback", "rollback", "-c", str(app / "failback.toml"), "--yes"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FAILBACK_KILL_AT": KILL_POINT},
    )
    assert res.returncode == -9, res.stderr
    [(run_id, run)] = runs(cli, app).items()
    assert run["status"] == "running" and provider(app) == "native"
    return run_id


def write(db: Path, sql: str) -> None:
    conn = connect(db)
    try:
        run_script(conn, sql)
    finally:
        conn.close()


def rows_of(db: Path, table: str) -> int:
    conn = connect(db, readonly=True)
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').get)
    finally:
        conn.close()


# -- the terminal confirmation of a high-risk rollback ---------------------------------------------------
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("answer", "code"), [("y", 0), ("n", 3)])
def test_high_risk_rollback_asks_on_a_terminal(app: Path, answer: str, code: int) -> None:
    """No --yes, stdin a terminal: the rollback shows the findings and asks; "y" goes on, "n" refuses."""
    target = (app / "app-sqljs.sqlite").read_bytes()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "failback", "rollback", "-c", str(app / "failback.toml")],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    try:
        os.write(leader, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=240)
    finally:
        os.close(leader)
    assert proc.returncode == code, err
    assert "Risk is high. Roll back anyway? [y/N]" in err
    assert out.startswith("Risk: high") and "change(s) not yet synced" in out  # the findings, shown to decide
    if answer == "y":
        assert provider(app) == "sqljs" and "gate.confirmed" in audit_events(app)
        assert (app / "app-sqljs.sqlite").read_bytes() != target
    else:
        assert "error: risk high: " in err and "re-run with --yes" in err
        assert provider(app) == "native" and "gate.confirmed" not in audit_events(app)
        assert (app / "app-sqljs.sqlite").read_bytes() == target


# -- backups --------------------------------------------------------------------------------------------
def test_backup_restore_needs_force_to_overwrite(app: Path, cli: Cli) -> None:
    cfg = str(app / "failback.toml")
    created = cli("backup", "create", "-c", cfg, "--json")
    assert created.returncode == 0, created.stderr
    backup_id = json.loads(created.stdout)["id"]
    dest = app / "restored.sqlite"
    export_database(app / "native.sqlite", dest)  # another database is in the way, with a stale -wal
    stale_wal = Path(str(dest) + "-wal")
    stale_wal.write_bytes(b"stale")
    in_the_way = file_hashes(dest, stale_wal)
    refused = cli("backup", "restore", "-c", cfg, backup_id, str(dest))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--force" in refused.stderr
    assert file_hashes(dest, stale_wal) == in_the_way
    forced = cli("backup", "restore", "-c", cfg, backup_id, str(dest), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not stale_wal.exists()
    specs = digest_specs_of(app / "native.sqlite")
    assert apsw_digests(dest, specs) == apsw_digests(app / "native.sqlite", specs)


# -- verify and export ----------------------------------------------------------------------------------
@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src.sqlite"
    conn = connect(src, create=True)
    run_script(
        conn,
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INT);"
        "INSERT INTO item VALUES (1, 'apple', 1), (2, 'pear', 2), (3, 'fig', 3);"
        "CREATE TABLE tag(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID; INSERT INTO tag VALUES ('a', 1), ('b', 2);",
    )
    conn.close()
    out = tmp_path / "out.sqlite"
    export_database(src, out)
    return src, out


def test_verify_levels(exported: tuple[Path, Path], cli: Cli) -> None:
    """quick counts rows; standard adds content digests in sql.js; deep also digests the target in apsw."""
    src, out = exported
    specs = digest_specs_of(src)
    expected = apsw_digests(src, specs)
    reports = {}
    for level in ("quick", "standard", "deep"):
        res = cli("verify", str(src), str(out), "--level", level, "--json")
        assert res.returncode == 0, res.stderr
        reports[level] = json.loads(res.stdout)
        assert reports[level]["level"] == level and reports[level]["ok"]

    def seen(level: str, side: str) -> dict[str, tuple[int, str]]:
        return {t["table"]: (t[side]["rows"], t[side]["digest"]) for t in reports[level]["tables"]}

    assert seen("quick", "sqljs") == {t: (n, "") for t, (n, _) in expected.items()}
    assert "content digests" in reports["quick"]["deferred"]
    assert seen("standard", "sqljs") == expected and reports["standard"]["deferred"] == []
    assert seen("deep", "sqljs") == seen("deep", "target") == expected
    # one changed value, the row counts equal: quick cannot see it, standard and deep name the row
    changed = 2
    write(out, f"UPDATE item SET name = 'Pear' WHERE id = {changed}")
    quick = cli("verify", str(src), str(out), "--level", "quick")
    assert quick.returncode == 0 and "Verification (quick): passed" in quick.stdout, quick.stdout
    for level in ("standard", "deep"):
        res = cli("verify", str(src), str(out), "--level", level)
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"Verification ({level}): FAILED" in res.stdout
        assert f"; rowid {changed}: values differ" in res.stdout


def test_export_replaces_an_existing_target_only_with_force(exported: tuple[Path, Path], cli: Cli) -> None:
    src, out = exported
    write(src, "INSERT INTO item VALUES (4, 'kiwi', 4)")  # the source moved on since `out`
    before = file_hashes(out)
    refused = cli("export", str(src), str(out))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--force" in refused.stderr
    assert file_hashes(out) == before
    forced = cli("export", str(src), str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    specs = digest_specs_of(src)
    assert sqljs_digests(out, specs) == apsw_digests(src, specs)
    assert rows_of(out, "item") == 4


# -- audit, check ---------------------------------------------------------------------------------------
def test_audit_verify_intact_and_broken(app: Path, cli: Cli) -> None:
    cfg = str(app / "failback.toml")
    assert cli("rollback", "-c", cfg, "--yes").returncode == 0
    log = app / ".failback" / "audit.jsonl"
    lines = log.read_text().splitlines()
    intact = cli("audit", "verify", "-c", cfg)
    assert intact.returncode == 0, intact.stderr
    assert f"audit chain intact: {len(lines)} record(s)" in intact.stdout
    moved = 2  # two lines swapped: each still matches its own hash, the chain does not
    lines[moved], lines[moved + 1] = lines[moved + 1], lines[moved]
    log.write_text("\n".join(lines) + "\n")
    broken = cli("audit", "verify", "-c", cfg)
    assert broken.returncode == 1
    assert f"line {moved + 1}: does not follow line {moved} (removed or reordered)" in broken.stdout + broken.stderr


CHECK_RULE = """
[triggers]
interval = 0.05
probe = true
[[triggers.rules]]
name = "broken-query"
metric = "probe.errors"
op = ">"
threshold = 0
for = {streak}
"""


def test_check_samples_until_a_rule_fires(app: Path, cli: Cli) -> None:
    """A rule needing `for` failing samples in a row fires only when --samples reaches `for`; check never acts."""
    streak = 2
    cfg_path = app / "failback.toml"
    broken = ["SELECT * FROM no_such_table", "SELECT nope FROM note"]  # each fails once per probe
    text = cfg_path.read_text().replace("]\nruns = 20", "".join(f'  "{q}",\n' for q in broken) + "]\nruns = 20")
    cfg_path.write_text(text + CHECK_RULE.format(streak=streak))
    assert load_config(cfg_path).benchmark.queries[-len(broken) :] == broken
    for samples, code, status in ((streak - 1, 0, "failing"), (streak, 3, "firing")):
        res = cli("check", "-c", str(cfg_path), "--samples", str(samples), "--json")
        assert res.returncode == code, res.stderr
        evaluations = json.loads(res.stdout)["evaluations"]
        assert len(evaluations) == samples
        [rule] = evaluations[-1]["rules"]
        assert (rule["status"], rule["streak"], rule["value"]) == (status, samples, len(broken))
        assert evaluations[-1]["decision"]["action"] == ("would-rollback" if code else "none")
    assert provider(app) == "native" and not (app / "backups").exists()


# -- resume, abort, status ------------------------------------------------------------------------------
def test_resume_a_run_by_id(app: Path, cli: Cli) -> None:
    run_id = killed_run(cli, app)
    res = cli("resume", "-c", str(app / "failback.toml"), run_id)
    assert res.returncode == 0, res.stderr
    assert f"run {run_id}: done" in res.stdout
    assert runs(cli, app)[run_id]["status"] == "done" and provider(app) == "sqljs"
    specs = digest_specs_of(app / "native.sqlite")
    assert sqljs_digests(app / "app-sqljs.sqlite", specs) == apsw_digests(app / "native.sqlite", specs)


def test_abort_a_run_by_id_and_its_refusals(app: Path, cli: Cli) -> None:
    cfg = str(app / "failback.toml")
    target = file_hashes(app / "app-sqljs.sqlite", app / "app.env")
    run_id = killed_run(cli, app)
    aborted = cli("abort", "-c", cfg, run_id)
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.startswith(f"run {run_id} aborted: nothing had been switched; temp files removed")
    assert runs(cli, app)[run_id]["status"] == "aborted"
    assert file_hashes(app / "app-sqljs.sqlite", app / "app.env") == target
    assert not list(app.glob(".app-sqljs.sqlite.failback-*")) and RunLock(app / ".failback").holder() == {}
    again = cli("abort", "-c", cfg, run_id)
    assert again.returncode == 2 and again.stderr.startswith(f"error: run {run_id} is aborted; nothing to abort")
    unknown = cli("abort", "-c", cfg, "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no single run matches 'nope'")
    done = cli("rollback", "-c", cfg, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    done_id = json.loads(done.stdout)["run"]
    refused = cli("abort", "-c", cfg, done_id)
    assert refused.returncode == 2 and refused.stderr.startswith(f"error: run {done_id} is done; nothing to abort")
    assert provider(app) == "sqljs"


def test_status_of_done_failed_and_source_changed_runs(app: Path, cli: Cli) -> None:
    cfg_path = app / "failback.toml"
    native = app / "native.sqlite"

    def spoil_the_target(step: str, event: str, result: dict[str, Any]) -> None:
        if (step, event) == ("convert", "done"):  # the converted file loses a row before verification
            write(Path(result["path"]), "DELETE FROM note WHERE id = (SELECT max(id) FROM note)")

    def the_app_writes(step: str, event: str, _: dict[str, Any]) -> None:
        if (step, event) == ("verify", "done"):
            (app / "source-written").touch()
            write(native, "UPDATE note SET title = title || ' (late edit)' WHERE id = (SELECT min(id) FROM note)")

    outcomes = {}
    for name, hook in (("failed", spoil_the_target), ("source-changed", the_app_writes), ("done", None)):
        outcome = Rollback(load_config(cfg_path), cfg_path, Options(yes=True), on_step=hook).run()
        outcomes[name] = outcome
        assert outcome.status == name, outcome.error
    assert (outcomes["failed"].exit_code, outcomes["source-changed"].exit_code) == (1, 5)
    shown = runs(cli, app)
    assert {o.run_id: name for name, o in outcomes.items()} == {i: r["status"] for i, r in shown.items()}
    table = cli("status", "-c", str(cfg_path))
    assert table.returncode == 0, table.stderr
    lines = {o.run_id: next(ln for ln in table.stdout.splitlines() if o.run_id in ln) for o in outcomes.values()}
    assert "read its report.md; `failback abort` removes what it left" in lines[outcomes["failed"].run_id]
    assert "stop the app's writers, then run again" in lines[outcomes["source-changed"].run_id]
    assert "switch:done" in lines[outcomes["done"].run_id] and "verify:failed" in lines[outcomes["failed"].run_id]


# -- conventions: FAILBACK_* variables, --json everywhere, errors as JSON, a lazy start --------------------
def failback(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_failback_config_names_the_config(app: Path, tmp_path: Path) -> None:
    """FAILBACK_CONFIG stands for -c; FAILBACK_<CMD>_<OPTION> for any option; the command line wins."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = failback("status", cwd=elsewhere)
    assert missing.returncode == 2 and "failback.toml: no such config file" in missing.stderr
    env = {"FAILBACK_CONFIG": str(app / "failback.toml"), "FAILBACK_STATUS_JSON": "1"}
    res = failback("status", cwd=elsewhere, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"runs": [], "protected_backups": []}
    res = failback("status", "-c", str(elsewhere / "none.toml"), cwd=elsewhere, env=env)
    assert res.returncode == 2 and "none.toml: no such config file" in res.stderr


def test_option_variables_follow_the_command_path_and_the_long_option() -> None:
    from failback.cli import main

    ctx = click.Context(main)
    backup = main.get_command(ctx, "backup")
    assert isinstance(backup, click.Group)
    verify = backup.get_command(ctx, "verify")
    assert verify is not None
    variables = {max(p.opts, key=len): p.envvar for p in verify.params if isinstance(p, click.Option)}
    assert variables == {
        "--config": "FAILBACK_CONFIG",
        "--all": "FAILBACK_BACKUP_VERIFY_ALL",
        "--deep": "FAILBACK_BACKUP_VERIFY_DEEP",
        "--json": "FAILBACK_BACKUP_VERIFY_JSON",
    }


@pytest.mark.parametrize(
    ("args", "code", "kind", "message"),
    [
        (["status", "-c", "none.toml", "--json"], 2, "ConfigError", "none.toml: no such config file"),
        (["audit", "verify", "--json", "-c", "none.toml"], 2, "ConfigError", "none.toml: no such config file"),
        (["backup", "create", "--json", "--bogus"], 2, "NoSuchOption", "No such option '--bogus'."),
        (["check", "--jsonl", "-c", "none.toml"], 2, "ConfigError", "none.toml: no such config file"),
    ],
)
def test_a_json_error_is_one_json_object(tmp_path: Path, args: list[str], code: int, kind: str, message: str) -> None:
    res = failback(*args, cwd=tmp_path)
    assert res.returncode == code and res.stdout == ""
    [line] = res.stderr.splitlines()
    error = json.loads(line)
    assert error["exit_code"] == code and error["kind"] == kind and error["error"].endswith(message)
    assert error["hint"]


def test_every_command_accepts_json() -> None:
    from failback.cli import main
    from failback.docs import walk_commands

    commands = list(walk_commands(main, click.Context(main, info_name="failback")))
    leaves = {ctx.command_path: cmd for cmd, ctx in commands if not isinstance(cmd, click.Group)}
    assert len(leaves) > 20
    assert [path for path, cmd in leaves.items() if not any("--json" in p.opts for p in cmd.params)] == []


def test_the_lazy_command_table_matches_the_commands() -> None:
    """`--help` lists commands from COMMANDS without importing them: each entry names its command and its help."""
    from failback.cli import COMMANDS, main

    ctx = click.Context(main)
    for name, (_, short_help) in COMMANDS.items():
        cmd = main.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
        assert cmd.get_short_help_str(10_000) == short_help


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_heavy_module(tmp_path: Path, args: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "failback", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert "click" in imported and not imported & {"apsw", "pydantic", "rich", "xxhash", "zstandard"}
    assert not any(
        line.split("|")[-1].strip().startswith(("failback.db", "failback.config", "failback.pipeline"))
        for line in res.stderr.splitlines()
    )


def test_consent_is_never_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FAILBACK_ROLLBACK_YES left in a shell must not pass the high-risk gate: --yes, --force, --break-lock
    and --repair-fts read no variable, and the generated docs list none for them."""
    from failback.cli import CONSENT_OPTIONS, main
    from failback.docs import option_variables, walk_commands

    ctx = click.Context(main, auto_envvar_prefix="FAILBACK")
    commands = list(walk_commands(main, ctx))
    assert [(v, o) for cmd, _ in commands for v, o in option_variables(cmd) if o in CONSENT_OPTIONS] == []
    consents = [
        (cmd_ctx, p)
        for cmd, cmd_ctx in commands
        for p in cmd.params
        if isinstance(p, click.Option) and CONSENT_OPTIONS.intersection(p.opts)
    ]
    assert {o for _, p in consents for o in p.opts} >= {"--yes", "--force", "--break-lock", "--repair-fts"}
    for cmd_ctx, p in consents:
        cmd_ctx.auto_envvar_prefix = f"FAILBACK_{cmd_ctx.info_name or ''}".upper()
        monkeypatch.setenv(f"{cmd_ctx.auto_envvar_prefix}_{(p.name or '').upper()}", "1")
        assert p.resolve_envvar_value(cmd_ctx) is None, (cmd_ctx.command_path, p.opts)
