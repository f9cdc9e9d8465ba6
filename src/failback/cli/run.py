"""Commands of the rollback itself: rollback, assess, status, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..config import Config, load_config
from . import handle_errors
from .common import (
    config_option,
    emit_json,
    err,
    json_option,
    mode_option,
    out,
    progress_bar,
    render_assessment,
    render_plan,
    repair_fts_option,
)


# -- rollback ---------------------------------------------------------------------------------------
@click.command()
@config_option
@mode_option("emergency: one backup layer, quick verification (the rest is recorded as debt).")
@click.option("--dry-run", is_flag=True, help="Snapshot, assess and plan; change nothing.")
@click.option("--yes", is_flag=True, help="Proceed when the risk is high.")
@click.option("--force", is_flag=True, help="Proceed when the risk is critical (needs --reason).")
@click.option("--reason", default="", help="Why a critical risk is overridden (written to the audit log).")
@click.option(
    "--break-lock",
    is_flag=True,
    help="Does nothing (kept for old scripts): the lock is an OS lock, free as soon as its holder has died.",
)
@repair_fts_option
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
    repair_fts: bool,
    as_json: bool,
) -> None:
    """Roll the app back: snapshot, backup, assess, convert, verify, switch, report."""
    from ..pipeline.rollback import Options

    cfg = load_config(config_path)
    options = Options(mode, dry_run, yes, force, reason, break_lock, repair_fts=repair_fts)
    outcome = run_rollback(cfg, config_path, options, as_json)
    if outcome.error is not None:
        raise outcome.error


def run_rollback(cfg: Config, config_path: Path, options: Any, as_json: bool, run_id: str | None = None) -> Any:
    """Run a rollback (or resume run ``run_id``; "" = the newest) with live step lines and progress bars, then
    print its summary."""
    from ..pipeline.rollback import Rollback
    from .assess import confirm_high_risk

    with progress_bar(not as_json and err.is_terminal) as progress:

        def on_step(name: str, event: str, result: dict[str, Any]) -> None:
            progress.step(name, event)
            if as_json:
                return
            if event == "done":
                err.print(f"[green]✓[/] {name:<9} {escape(_step_line(name, result))}", highlight=False)
            elif event == "failed":
                error = escape(str(result.get("error", "")))
                err.print(f"[red]✗[/] {name:<9} {error}", highlight=False, soft_wrap=True)

        def confirm(a: Any) -> bool:
            with progress.paused():
                return confirm_high_risk(a)

        if run_id is None:
            outcome = Rollback(cfg, config_path, options, progress, on_step, confirm=confirm).run()
        else:
            outcome = Rollback.resume(cfg, config_path, run_id or None, progress=progress, on_step=on_step)
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
        repaired = (r.get("source_integrity") or {}).get("repaired")
        return f"risk {r['level']} ({len(r['findings'])} findings)" + (
            f"; FTS index of {', '.join(repaired)} repaired (--repair-fts)" if repaired else ""
        )
    if name == "convert":
        return f"{r['bytes'] / 1e6:.1f} MB built in {r['seconds'].get('total', 0):.2f} s ({r['decisions']} decisions)"
    if name == "verify":
        from ..verify import tables_summary

        checks = sum(c["ok"] for c in r["checks"])
        return f"{tables_summary(r['tables'], 'in snapshot/target/sql.js')}, {checks}/{len(r['checks'])} checks passed"
    if name == "postcheck":
        if "skipped" in r:
            return r["skipped"]
        slow = [q for q in r["queries"] if not q["ok"]]
        base = "against the baseline" if r["baseline"] else "(no baseline recorded: `failback baseline record`)"
        return f"{len(r['queries'])} queries timed in sql.js {base}" + (
            f"; {len(slow)} slower than allowed" if slow else ""
        )
    if name == "switch":
        return f"{r['config']}: {r['from']} → {r['to']}"
    return ", ".join(Path(f).name for f in r.get("files", []))


NEXT = {
    "running": "if its process is gone: `failback resume` or `failback abort`",
    "interrupted": "`failback resume` to continue, or `failback abort` to undo",
    "failed": "read its report.md; `failback abort` removes what it left",
    "refused": "read its report.md; fix the cause or confirm, then run again",
    "source-changed": "stop the app's writers, then run again",
}


@click.command()
@config_option
@click.argument("run_id", required=False)
@json_option
@handle_errors
def resume(config_path: Path, run_id: str | None, as_json: bool) -> None:
    """Continue an interrupted run (default: the newest) from its last trusted checkpoint."""
    from ..pipeline.rollback import Options

    cfg = load_config(config_path)
    outcome = run_rollback(cfg, config_path, Options(), as_json, run_id=run_id or "")
    if outcome.error is not None:
        raise outcome.error


@click.command()
@config_option
@click.argument("run_id", required=False)
@json_option
@handle_errors
def abort(config_path: Path, run_id: str | None, as_json: bool) -> None:
    """Undo an unfinished run: temp files removed; source, config and target as before the run."""
    from ..pipeline.rollback import abort_run

    result = abort_run(load_config(config_path), run_id)
    if as_json:
        emit_json(result)
    else:
        undone = ", ".join(result["undone"]) or "nothing had been switched"
        out.print(f"run {result['run']} aborted: {escape(undone)}; temp files removed", highlight=False)


# -- status, demo ------------------------------------------------------------------------------------
QUIET = ("refused", "dry-run")  # runs that changed nothing: one summary line in `status` unless --all


def fold_quiet_runs(runs: list[Any], show_all: bool) -> tuple[list[Any], str]:
    """The runs `status` lists, and one line standing for the refused and dry-run (assess-only) ones it folds."""
    if show_all:
        return runs, ""
    folded = [r for r in runs if r.status in QUIET]
    if not folded:
        return runs, ""
    kinds = ", ".join(f"{n} {s}" for s in QUIET if (n := sum(r.status == s for r in folded)))
    newest = folded[0]  # runs come newest first
    why = f": {newest.error}" if newest.error else ""
    line = (
        f"{len(folded)} run(s) that changed nothing not listed ({kinds}; newest {newest.id} {newest.status}{why})"
        " — `failback status --all` lists them"
    )
    return [r for r in runs if r.status not in QUIET], line


@click.command()
@config_option
@click.option("--all", "show_all", is_flag=True, help="List refused and dry-run (assess-only) runs too.")
@json_option
@handle_errors
def status(config_path: Path, show_all: bool, as_json: bool) -> None:
    """Show runs, their steps and what to do next, and the backups prune must keep, with why.

    Refused and dry-run (assess-only) runs changed nothing: they are counted in one line unless --all is given.
    --json always lists every run."""
    from ..journal import list_runs
    from ..pipeline.debt import unpaid

    cfg = load_config(config_path)
    runs = [rd.load() for rd in list_runs(cfg.state_path)]
    owed = {rd.id for rd in unpaid(cfg.state_path)}
    kept = protected_rows(cfg)
    if as_json:
        emit_json(
            {
                "runs": [{**r.to_json(), "verification_debt_unpaid": r.id in owed} for r in runs],
                "protected_backups": kept,
            }
        )
        return
    listed, folded = fold_quiet_runs(runs, show_all)
    t = Table(title="Runs")
    for col in ("run", "mode", "status", "steps", "next"):
        t.add_column(col, overflow="fold")
    for r in listed:
        steps = " ".join(f"{s.name}:{s.status}" for s in r.steps if s.status != "pending")
        t.add_row(r.id, r.mode, r.status, steps, escape(NEXT.get(r.status, "") or r.error))
    out.print(t)
    if folded:
        out.print(escape(folded), highlight=False, soft_wrap=True)
    for run_id in sorted(owed):
        out.print(f"run {run_id}: verification debt unpaid — run `failback verify --debt {run_id}`", soft_wrap=True)
    render_protected(kept)


def protected_rows(cfg: Config) -> list[dict[str, Any]]:
    """What prune must keep (``backup.protected_backups``): id, whether any backup folder holds it, reasons."""
    from ..backup.prune import protected_backups
    from ..backup.sets import list_backups

    entries = list_backups(cfg.backup_layers)
    stored = {e["manifest"]["id"] for e in entries}
    return [
        {"id": bid, "present": bid in stored, "reasons": list(reasons)}
        for bid, reasons in protected_backups(entries, cfg.state_path).items()
    ]


def render_protected(kept: list[dict[str, Any]]) -> None:
    if not kept:
        return
    t = Table(title="Backups prune keeps, whatever the retention rules say")
    for col in ("backup", "why"):
        t.add_column(col, overflow="fold")
    for row in kept:
        missing = "" if row["present"] else "[red]MISSING from every backup folder[/]: "
        t.add_row(row["id"], missing + escape("; ".join(row["reasons"])))
    out.print(t)


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("failback-demo"))
@click.option("--notes", default=3000, show_default=True, help="Notes in the sample database.")
@json_option
@handle_errors
def demo(directory: Path, notes: int, as_json: bool) -> None:
    """Build a GRDB-style sample app in DIRECTORY and roll it back to sql.js."""
    from ..demo import create_demo
    from ..pipeline.postcheck import record_baseline
    from ..pipeline.rollback import Options
    from ..profiles import target_engine

    cfg_path = create_demo(directory, notes)
    cfg = load_config(cfg_path)
    baseline = record_baseline(
        cfg, target_engine(cfg.target)
    )  # how the app's queries ran in sql.js before the migration
    if not as_json:
        out.print(
            f"demo app in {directory}: native.sqlite (GRDB-style, WAL, FTS5), app.env, "
            "app-sqljs.sqlite (the pre-migration sql.js file), failback.toml",
            highlight=False,
        )
        out.print(f"baseline: {len(baseline['queries'])} app queries timed in sql.js on the pre-migration file")
        out.print("rolling back (the demo confirms the risk gate with --yes, as an operator would):")
    outcome = run_rollback(cfg, cfg_path, Options(yes=True), as_json)
    if outcome.error is not None:
        raise outcome.error
    if not as_json:
        click.echo((outcome.run_dir / "report.md").read_text(encoding="utf-8"))
