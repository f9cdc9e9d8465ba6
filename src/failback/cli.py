"""The command line: parse, call the library, render (rich tables and progress, or --json). Nothing more."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .config import DEFAULT_NAME, Config, load_config
from .errors import FailbackError

F = TypeVar("F", bound=Callable[..., Any])
out = Console()
err = Console(stderr=True)
INTERNAL_ERROR = 70


def handle_errors(fn: F) -> F:
    """Turn FailbackError into one line + hint + exit code; never a traceback for user error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FailbackError as e:
            err.print(f"[bold red]error:[/] {e.message}", highlight=False, soft_wrap=True)
            if e.hint:
                err.print(f"[dim]hint:[/] {e.hint}", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            sys.exit(4)
        except Exception as e:  # a bug, not a user error: say so in one line
            if os.environ.get("FAILBACK_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/] {type(e).__name__}: {e}", highlight=False, soft_wrap=True)
            err.print("[dim]hint:[/] run again with FAILBACK_DEBUG=1 for the traceback and report it")
            sys.exit(INTERNAL_ERROR)

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawing one bar per phase (nothing when disabled or not a terminal)."""
    if not enabled:
        yield lambda *_: None
        return
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            key = phase.split(" ", 1)[0]
            if key not in tasks:
                tasks[key] = bar.add_task(phase, total=max(total, 1))
            bar.update(tasks[key], completed=done, total=max(total, 1), description=phase[:22])

        yield update


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_NAME,
    show_default=True,
    help="Path of failback.toml.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="failback")
def main() -> None:
    """failback: roll an app's SQLite data back from a native provider to sql.js, safely and verifiably."""


# -- rollback ---------------------------------------------------------------------------------------
@main.command()
@config_option
@click.option(
    "--mode",
    type=click.Choice(["standard", "emergency"]),
    default="standard",
    show_default=True,
    help="emergency: one backup layer, quick verification (the rest is recorded as debt).",
)
@click.option("--dry-run", is_flag=True, help="Snapshot, assess and plan; change nothing.")
@click.option("--yes", is_flag=True, help="Proceed when the risk is high.")
@click.option("--force", is_flag=True, help="Proceed when the risk is critical (needs --reason).")
@click.option("--reason", default="", help="Why a critical risk is overridden (written to the audit log).")
@click.option("--break-lock", is_flag=True, help="Break a lock left by a run whose process is gone.")
@json_option
@handle_errors
def rollback(
    config_path: Path,
    mode: str,
    dry_run: bool,
    yes: bool,
    force: bool,
    reason: str,
    break_lock: bool,
    as_json: bool,
) -> None:
    """Roll the app back: snapshot, backup, assess, convert, verify, switch, report."""
    from .rollback import Options

    cfg = load_config(config_path)
    outcome = run_rollback(cfg, config_path, Options(mode, dry_run, yes, force, reason, break_lock), as_json)
    if outcome.error is not None:
        raise outcome.error


def run_rollback(cfg: Config, config_path: Path, options: Any, as_json: bool) -> Any:
    """Run a rollback with live step lines and progress bars, then print its summary."""
    from .rollback import Rollback

    def on_step(name: str, event: str, result: dict[str, Any]) -> None:
        if as_json:
            return
        if event == "done":
            err.print(f"[green]✓[/] {name:<9} {_step_line(name, result)}", highlight=False)
        elif event == "failed":
            err.print(f"[red]✗[/] {name:<9} {result.get('error', '')}", highlight=False, soft_wrap=True)

    with progress_bar(not as_json and err.is_terminal) as progress:
        outcome = Rollback(cfg, config_path, options, progress, on_step).run()
    if as_json:
        emit_json(
            {
                "run": outcome.run_id,
                "status": outcome.status,
                "exit_code": outcome.exit_code,
                "results": outcome.results,
                "error": str(outcome.error) if outcome.error else None,
            }
        )
    else:
        if "assess" in outcome.results:
            render_assessment(outcome.results["assess"])
        if options.dry_run and "assess" in outcome.results:
            render_plan(outcome.results["assess"]["plan"]["decisions"])
        out.print(
            f"run [bold]{outcome.run_id}[/]: {outcome.status} — report: {outcome.run_dir / 'report.md'}",
            highlight=False,
        )
    return outcome


def _step_line(name: str, r: dict[str, Any]) -> str:
    if name == "snapshot":
        return f"{r['bytes'] / 1e6:.1f} MB, {r['pages']} pages, {r['restarts']} restart(s)"
    if name == "backup":
        s = r["source"]
        ok = sum(x["ok"] for x in s["layers"])
        return f"{s['id']} → {ok}/{len(s['layers'])} layer(s) verified, sha256 {s['sha256']['compressed'][:16]}…"
    if name == "assess":
        return f"risk {r['level']} ({len(r['findings'])} findings)"
    if name == "convert":
        return f"{r['bytes'] / 1e6:.1f} MB built in {r['seconds'].get('total', 0):.2f} s ({r['decisions']} decisions)"
    if name == "verify":
        checks = sum(c["ok"] for c in r["checks"])
        return f"{len(r['tables'])} tables equal in snapshot/target/sql.js, {checks}/{len(r['checks'])} checks passed"
    if name == "switch":
        return f"{r['config']}: {r['from']} → {r['to']}"
    return ", ".join(Path(f).name for f in r.get("files", []))


def render_assessment(a: dict[str, Any]) -> None:
    colors = {"low": "green", "medium": "yellow", "high": "red", "critical": "bold red"}
    t = Table(title=f"Risk: [{colors[a['level']]}]{a['level']}[/]", show_lines=False, expand=False)
    for col in ("severity", "finding", "fix"):
        t.add_column(col, overflow="fold")
    for f in a["findings"]:
        t.add_row(f["severity"], f["message"], f["fix"])
    out.print(t)


def render_plan(decisions: list[dict[str, Any]]) -> None:
    t = Table(title="Conversion plan")
    for col in ("kind", "object", "action", "reason"):
        t.add_column(col, overflow="fold")
    style = {"keep": "green", "convert": "yellow", "drop": "red", "refuse": "bold red", "skip": "dim"}
    for d in decisions:
        t.add_row(d["kind"], d["name"], f"[{style[d['action']]}]{d['action']}[/]", d["reason"])
    out.print(t)


# -- export / plan / probe -----------------------------------------------------------------------
@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--profile", default="sqljs-1.16.0", show_default=True, help="Target profile (name or file).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Take [convert] and [verify] settings from this failback.toml.",
)
@click.option("--force", is_flag=True, help="Replace TARGET if it exists.")
@json_option
@handle_errors
def export(source: Path, target: Path, profile: str, config_path: Path | None, force: bool, as_json: bool) -> None:
    """Convert SOURCE into a database the target engine accepts, verify it, write TARGET."""
    from .export import export_database

    cfg = load_config(config_path) if config_path else None
    with progress_bar(not as_json and err.is_terminal) as progress:
        result = export_database(source, target, profile=profile, cfg=cfg, force=force, progress=progress)
    if as_json:
        emit_json(result.to_json())
        return
    render_plan([d.to_json() for d in result.plan.decisions])
    v = result.verification
    out.print(
        f"[green]✓[/] {target}: {result.bytes / 1e6:.1f} MB in {result.seconds:.2f} s; "
        f"{len(v.tables)} tables equal in source, target and sql.js {v.sqljs_version}; "
        f"{sum(c.ok for c in v.checks)}/{len(v.checks)} checks passed",
        highlight=False,
    )


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--profile", default="sqljs-1.16.0", show_default=True, help="Target profile (name or file).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Take [convert] settings from this failback.toml.",
)
@json_option
@handle_errors
def plan(source: Path, profile: str, config_path: Path | None, as_json: bool) -> None:
    """Show what each schema object of SOURCE becomes in the target, and why."""
    from .export import plan_for

    p = plan_for(source, profile, load_config(config_path).convert if config_path else None)
    if as_json:
        emit_json(p.to_json())
    else:
        render_plan([d.to_json() for d in p.decisions])
    if p.refused:
        sys.exit(3)


@main.command()
@click.option("--engine", type=click.Choice(["sqljs", "sqlite"]), default="sqljs", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write the profile here.")
@handle_errors
def probe(engine: str, output: Path | None) -> None:
    """Probe a real engine's capabilities and print (or write) its profile."""
    from .profiles import probe_engine

    prof = probe_engine(engine)
    text = prof.to_toml()
    if output:
        from .files import write_text

        write_text(output, text, 0o644)
        out.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


# -- assess ------------------------------------------------------------------------------------------
@main.command()
@config_option
@json_option
@handle_errors
def assess(config_path: Path, as_json: bool) -> None:
    """Assess the risk of a rollback without changing anything (exit 3 when the gate would refuse)."""
    from .rollback import Options

    cfg = load_config(config_path)
    outcome = run_rollback(cfg, config_path, Options(dry_run=True), as_json)
    if outcome.error is not None:
        raise outcome.error
    level = outcome.results["assess"]["level"]
    if level in ("high", "critical"):
        sys.exit(3)


# -- backups -----------------------------------------------------------------------------------------
@main.group()
def backup() -> None:
    """Create, list, verify and restore backups."""


@backup.command("create")
@config_option
@click.option("--label", default="manual", show_default=True, help="A label in the backup id.")
@json_option
@handle_errors
def backup_create(config_path: Path, label: str, as_json: bool) -> None:
    """Snapshot the source and store a verified, compressed copy in every layer."""
    from .backup import backup_source

    cfg = load_config(config_path)
    with progress_bar(not as_json and err.is_terminal) as progress:
        result = backup_source(cfg, label, progress)
    if as_json:
        emit_json(result.to_json())
    else:
        for layer in result.layers:
            mark = "[green]✓[/]" if layer.ok else "[red]✗[/]"
            out.print(f"{mark} {layer.folder}/{result.id} {layer.error}", highlight=False)
    if result.verified_layers < cfg.backup.min_layers:
        sys.exit(1)


@backup.command("list")
@config_option
@json_option
@handle_errors
def backup_list(config_path: Path, as_json: bool) -> None:
    """List backups (newest first) and the layers that hold them."""
    from .backup import list_backups

    cfg = load_config(config_path)
    items = list_backups(cfg.backup_layers)
    if as_json:
        emit_json(
            [{"id": e["manifest"]["id"], "folders": e["folders"], "bytes": e["manifest"]["bytes"]} for e in items]
        )
        return
    t = Table(title="Backups")
    for col in ("id", "label", "created", "MB (zstd)", "layers"):
        t.add_column(col)
    for e in items:
        m = e["manifest"]
        t.add_row(m["id"], m["label"], m["created"], f"{m['bytes']['compressed'] / 1e6:.1f}", str(len(e["folders"])))
    out.print(t)


@backup.command("verify")
@config_option
@click.argument("backup_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every backup.")
@click.option("--deep", is_flag=True, help="Also decompress, run integrity_check and compare content digests.")
@json_option
@handle_errors
def backup_verify(config_path: Path, backup_id: str | None, all_: bool, deep: bool, as_json: bool) -> None:
    """Check stored copies against their checksums (exit 1 when one fails)."""
    from .backup import find_backup, list_backups, verify_folder

    cfg = load_config(config_path)
    if not backup_id and not all_:
        raise FailbackError("name a backup id or pass --all", "see `failback backup list`")
    folders = (
        [Path(f) for e in list_backups(cfg.backup_layers) for f in e["folders"]]
        if all_
        else find_backup(cfg.backup_layers, backup_id or "")
    )
    report = {str(f): verify_folder(f, deep) for f in folders}
    if as_json:
        emit_json(report)
    else:
        for f, problems in report.items():
            out.print(
                f"[green]✓[/] {f}" if not problems else f"[red]✗[/] {f}: {'; '.join(problems)}",
                highlight=False,
            )
    if any(report.values()):
        sys.exit(1)


@backup.command("restore")
@config_option
@click.argument("backup_id")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite DEST (and remove its -wal/-shm/-journal).")
@handle_errors
def backup_restore(config_path: Path, backup_id: str, dest: Path, force: bool) -> None:
    """Restore a backup to DEST (refuses to overwrite without --force)."""
    from .backup import restore_backup

    cfg = load_config(config_path)
    restore_backup(cfg.backup_layers, backup_id, dest, force)
    out.print(f"[green]✓[/] restored {backup_id} to {dest}", highlight=False)


# -- audit, status, demo ----------------------------------------------------------------------------
@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@config_option
@handle_errors
def audit_verify(config_path: Path) -> None:
    """Check the audit log's hash chain (exit 1 at the first broken line)."""
    from .audit import verify_chain

    cfg = load_config(config_path)
    check = verify_chain(cfg.state_path / "audit.jsonl")
    if check.ok:
        out.print(f"[green]✓[/] audit chain intact: {check.records} record(s)")
    else:
        err.print(f"[red]✗[/] audit chain broken: {check.problem}")
        sys.exit(1)


@main.command()
@config_option
@json_option
@handle_errors
def status(config_path: Path, as_json: bool) -> None:
    """Show runs, their steps and what to do next."""
    from .journal import list_runs

    cfg = load_config(config_path)
    runs = [rd.load() for rd in list_runs(cfg.state_path)]
    if as_json:
        emit_json([r.to_json() for r in runs])
        return
    t = Table(title="Runs")
    for col in ("run", "mode", "status", "steps", "error"):
        t.add_column(col, overflow="fold")
    for r in runs:
        steps = " ".join(f"{s.name}:{s.status}" for s in r.steps if s.status != "pending")
        t.add_row(r.id, r.mode, r.status, steps, r.error)
    out.print(t)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("failback-demo"))
@click.option("--notes", default=3000, show_default=True, help="Notes in the sample database.")
@json_option
@handle_errors
def demo(directory: Path, notes: int, as_json: bool) -> None:
    """Build a GRDB-style sample app in DIRECTORY and roll it back to sql.js."""
    from .demo import create_demo
    from .rollback import Options

    cfg_path = create_demo(directory, notes)
    if not as_json:
        out.print(
            f"demo app in {directory}: native.sqlite (GRDB-style, WAL, FTS5), app.env, "
            "app-sqljs.sqlite (the pre-migration sql.js file), failback.toml",
            highlight=False,
        )
        out.print("rolling back (the demo confirms the risk gate with --yes, as an operator would):")
    outcome = run_rollback(load_config(cfg_path), cfg_path, Options(yes=True), as_json)
    if outcome.error is not None:
        raise outcome.error
    if not as_json:
        click.echo((outcome.run_dir / "report.md").read_text(encoding="utf-8"))
