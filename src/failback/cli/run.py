"""Commands of the rollback itself: rollback, assess, status, demo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

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

if TYPE_CHECKING:
    from ..api import ProtectedBackup, RunResult


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
    outcome = rollback_live(
        config_path, as_json, mode=mode, dry_run=dry_run, yes=yes, force=force, reason=reason, repair_fts=repair_fts
    )
    if outcome.error is not None:
        raise outcome.error


def rollback_live(config_path: Path, as_json: bool, **options: Any) -> RunResult:
    """``api.rollback(config_path, **options)`` run as ``run_rollback`` runs it: step lines, progress bars, the
    terminal's confirmation at high risk, then the summary."""
    from .. import api

    return run_rollback(
        lambda progress, on_step, confirm: api.rollback(
            config_path, progress=progress, on_step=on_step, confirm=confirm, **options
        ),
        as_json,
        options.get("dry_run", False),
    )


Start = Callable[[Any, Any, Callable[[Any], bool]], "RunResult"]
"""``start(progress, on_step, confirm)``: a call of ``api.rollback`` or ``api.resume`` with these callbacks."""


def run_rollback(start: Start, as_json: bool, dry_run: bool = False) -> RunResult:
    """Run the rollback ``start`` starts (or resumes) with live step lines and progress bars, then print its
    summary (with the plan when it is a ``dry_run``)."""
    from .. import api
    from .assess import confirm_high_risk

    with progress_bar(not as_json and err.is_terminal) as progress:

        def on_step(name: str, event: str, result: dict[str, Any]) -> None:
            progress.step(name, event)
            if as_json:
                return
            if event == "done":
                err.print(f"[green]✓[/] {name:<9} {escape(api.step_summary(name, result))}", highlight=False)
            elif event == "failed":
                error = escape(str(result.get("error", "")))
                err.print(f"[red]✗[/] {name:<9} {error}", highlight=False, soft_wrap=True)

        def confirm(a: Any) -> bool:
            with progress.paused():
                return confirm_high_risk(a)

        outcome = start(progress, on_step, confirm)
    if as_json:
        emit_json(outcome.to_json())
    else:
        if "assess" in outcome.results:
            render_assessment(outcome.results["assess"])
        if dry_run and "assess" in outcome.results:
            render_plan(outcome.results["assess"]["plan"]["decisions"])
        out.print(f"run [bold]{outcome.run_id}[/]: {outcome.status} — report: {outcome.report_path}", highlight=False)
    return outcome


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
    from .. import api

    outcome = run_rollback(
        lambda progress, on_step, _confirm: api.resume(config_path, run_id or None, progress=progress, on_step=on_step),
        as_json,
    )
    if outcome.error is not None:
        raise outcome.error


@click.command()
@config_option
@click.argument("run_id", required=False)
@json_option
@handle_errors
def abort(config_path: Path, run_id: str | None, as_json: bool) -> None:
    """Undo an unfinished run: temp files removed; source, config and target as before the run."""
    from .. import api

    result = api.abort(config_path, run_id)
    if as_json:
        emit_json(result.to_json())
    else:
        undone = ", ".join(result.undone) or "nothing had been switched"
        out.print(f"run {result.run} aborted: {escape(undone)}; temp files removed", highlight=False)


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
    from .. import api

    st = api.status(config_path)
    if as_json:
        emit_json(st.to_json())
        return
    listed, folded = fold_quiet_runs(list(st.runs), show_all)
    t = Table(title="Runs")
    for col in ("run", "mode", "status", "steps", "next"):
        t.add_column(col, overflow="fold")
    for r in listed:
        steps = " ".join(f"{s.name}:{s.status}" for s in r.steps if s.status != "pending")
        t.add_row(r.id, r.mode, r.status, steps, escape(NEXT.get(r.status, "") or r.error))
    out.print(t)
    if folded:
        out.print(escape(folded), highlight=False, soft_wrap=True)
    for run_id in sorted(st.unpaid):
        out.print(f"run {run_id}: verification debt unpaid — run `failback verify --debt {run_id}`", soft_wrap=True)
    render_protected(st.protected)


def render_protected(kept: Sequence[ProtectedBackup]) -> None:
    """The backups prune must keep, and why; nothing when there are none."""
    if not kept:
        return
    t = Table(title="Backups prune keeps, whatever the retention rules say")
    for col in ("backup", "why"):
        t.add_column(col, overflow="fold")
    for row in kept:
        missing = "" if row.present else "[red]MISSING from every backup folder[/]: "
        t.add_row(row.id, missing + escape("; ".join(row.reasons)))
    out.print(t)


@click.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("failback-demo"))
@click.option("--notes", default=3000, show_default=True, help="Notes in the sample database.")
@json_option
@handle_errors
def demo(directory: Path, notes: int, as_json: bool) -> None:
    """Build a GRDB-style sample app in DIRECTORY and roll it back to sql.js."""
    from .. import api

    cfg_path = api.create_demo(directory, notes=notes)
    baseline = api.record_baseline(cfg_path)  # how the app's queries ran in sql.js before the migration
    if not as_json:
        out.print(
            f"demo app in {directory}: native.sqlite (GRDB-style, WAL, FTS5), app.env, "
            "app-sqljs.sqlite (the pre-migration sql.js file), failback.toml",
            highlight=False,
        )
        out.print(f"baseline: {len(baseline.queries)} app queries timed in sql.js on the pre-migration file")
        out.print("rolling back (the demo confirms the risk gate with --yes, as an operator would):")
    outcome = rollback_live(cfg_path, as_json, yes=True)
    if outcome.error is not None:
        raise outcome.error
    if not as_json:
        click.echo(outcome.report_path.read_text(encoding="utf-8"))
