"""`failback fleet …`: plan, run, resume, status, approve, report and demo of a fleet rollback (docs/fleet.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from . import handle_errors
from .common import emit_json, err, json_option, out

Listener = Callable[[int, Any, Any], None]
state_option = click.option(
    "--state",
    "state_dir",
    type=click.Path(path_type=Path),
    default=Path(".failback-fleet"),
    show_default=True,
    help="The fleet's state folder: its journal, audit log and approvals.",
)
manifest_argument = click.argument("manifest", type=click.Path(path_type=Path))
cluster_options = [
    click.option("--workers", default=2, show_default=True, help="Worker processes of the embedded Dask cluster."),
    click.option(
        "--threads",
        default=2,
        show_default=True,
        type=click.IntRange(min=1),
        help="Tenants each worker of the embedded cluster runs at a time (a real cluster: `dask worker --nthreads`).",
    ),
    click.option("--scheduler", default=None, help="Run on this Dask scheduler (tcp://HOST:PORT) instead."),
    click.option(
        "--approval-timeout",
        type=float,
        default=None,
        help="With --pause-between: seconds to wait for `fleet approve` before stopping (default: wait).",
    ),
]


def _cluster(fn: Any) -> Any:
    for option in reversed(cluster_options):
        fn = option(fn)
    return fn


@click.group()
def fleet() -> None:
    """Roll many tenants back in waves on Dask, with a failure budget; resumable, exactly once."""


@fleet.command()
@manifest_argument
@json_option
@handle_errors
def plan(manifest: Path, as_json: bool) -> None:
    """Check every tenant of MANIFEST before anything runs (exit 2 when one fails)."""
    from .. import api
    from ..errors import ConfigError

    result = api.fleet_plan(manifest)
    if as_json:
        emit_json(result.to_json())
    else:
        for check in result.problems:
            out.print(f"[red]✗[/] {escape(check.tenant)}: {escape('; '.join(check.problems))}", highlight=False)
        out.print(f"{len(result.checks) - len(result.problems)} of {len(result.checks)} tenant(s) ready")
    if not result.ok:
        raise ConfigError(f"{len(result.problems)} tenant(s) fail the fleet plan", "fix or remove those rows")


@fleet.command()
@manifest_argument
@state_option
@click.option("--waves", default="1,1%,10%,100%", show_default=True, help="Wave sizes: counts or % of the rest.")
@click.option("--max-failures", default="2%", show_default=True, help="Failure budget per wave (count or %).")
@click.option("--pause-between", is_flag=True, help="Wait for `failback fleet approve` before each next wave.")
@click.option("--yes", is_flag=True, help="Each tenant's run proceeds when its risk is high.")
@_cluster
@json_option
@handle_errors
def run(
    manifest: Path,
    state_dir: Path,
    waves: str,
    max_failures: str,
    pause_between: bool,
    yes: bool,
    workers: int,
    threads: int,
    scheduler: str | None,
    approval_timeout: float | None,
    as_json: bool,
) -> None:
    """Plan MANIFEST, then roll its tenants back wave by wave on Dask."""
    from .. import api

    specs = [w.strip() for w in waves.split(",") if w.strip()]

    def start(on_result: Listener) -> Any:
        return api.fleet_run(
            manifest,
            state=state_dir,
            waves=specs,
            max_failures=max_failures,
            pause_between=pause_between,
            yes=yes,
            workers=workers,
            threads=threads,
            scheduler=scheduler,
            approval_timeout=approval_timeout,
            on_result=on_result,
        )

    _drive(start, as_json)


@fleet.command()
@state_option
@_cluster
@json_option
@handle_errors
def resume(
    state_dir: Path, workers: int, threads: int, scheduler: str | None, approval_timeout: float | None, as_json: bool
) -> None:
    """Finish a fleet run: switched tenants are not run again, interrupted ones resume."""
    from .. import api

    def start(on_result: Listener) -> Any:
        return api.fleet_resume(
            state_dir,
            workers=workers,
            threads=threads,
            scheduler=scheduler,
            approval_timeout=approval_timeout,
            on_result=on_result,
        )

    _drive(start, as_json)


def _drive(start: Callable[[Listener], Any], as_json: bool) -> None:
    """Run the fleet's remaining waves (``start(on_result)``) with a progress bar per wave, then print its status."""
    from ..errors import FailbackError, Interrupted

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[line]}"),
        console=err,
        disable=as_json or not err.is_terminal,
    ) as bar:
        tasks: dict[int, Any] = {}

        def on_result(wave: int, result: Any, state: Any) -> None:
            c = state.counts(wave)
            done = c["switched"] + c["refused"] + c["failed"] + c["lost"]
            failed = c["refused"] + c["failed"] + c["lost"]
            line = f"switched {c['switched']} · failed {failed} · remaining {len(state.waves[wave]) - done}"
            if wave not in tasks:
                tasks[wave] = bar.add_task(f"wave {wave + 1}/{len(state.waves)}", total=len(state.waves[wave]), line="")
            bar.update(tasks[wave], completed=done, line=line)

        state = start(on_result)
    _render_status(state, as_json)
    if state.status == "halted":
        raise FailbackError(f"fleet halted: {state.reason}", _next_step(state))
    if state.status == "awaiting-approval":
        raise Interrupted(f"fleet paused: {state.reason}", _next_step(state))


def _next_step(state: Any) -> str:
    from .. import api

    return str(api.fleet_summary(state)["next"])


def _render_status(state: Any, as_json: bool) -> None:
    from .. import api

    summary = api.fleet_summary(state)
    if as_json:
        emit_json(summary)
        return
    t = Table(title=f"Fleet: {summary['status']}")
    for col in ("wave", "tenants", "switched", "refused", "failed", "lost", "to run"):
        t.add_column(col, justify="right")
    for w in summary["waves"]:
        c = w["counts"]
        t.add_row(
            str(w["wave"]),
            str(w["tenants"]),
            *(str(c[k]) for k in ("switched", "refused", "failed", "lost")),
            str(c["pending"] + c["dispatched"]),
        )
    out.print(t)
    for f in summary["failed"][:20]:
        out.print(
            f"[red]✗[/] {escape(f['tenant'])} ({f['state']}, exit {f['exit_code']}): {escape(f['error'])}",
            highlight=False,
        )
    out.print(f"next: {escape(summary['next'])}", highlight=False, soft_wrap=True)


@fleet.command()
@state_option
@json_option
@handle_errors
def status(state_dir: Path, as_json: bool) -> None:
    """Show each wave's outcome counts, the failed tenants and what to do next."""
    from .. import api

    _render_status(api.fleet_status(state_dir), as_json)


@fleet.command()
@state_option
@click.option("--wave", type=int, required=True, help="The wave (from 1) that may start, or go on over budget.")
@json_option
@handle_errors
def approve(state_dir: Path, wave: int, as_json: bool) -> None:
    """Let WAVE start after a pause, or go on although its failures exceed the budget."""
    from .. import api

    api.fleet_approve(state_dir, wave)
    if as_json:
        emit_json({"approved": wave})
        return
    out.print(f"wave {wave} approved: a waiting `fleet run` goes on; else run `failback fleet resume`")


@fleet.command()
@state_option
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@handle_errors
def report(state_dir: Path, fmt: str, as_json: bool) -> None:
    """The fleet report: outcomes per wave, durations, the failed tenants with their errors and next command."""
    from .. import api

    click.echo(api.fleet_report(state_dir, format="json" if as_json else fmt), nl=False)  # type: ignore[arg-type]


@fleet.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--tenants", default=200, show_default=True, help="Tenants in the demo fleet.")
@click.option("--corrupt", default=0, show_default=True, help="Tenants whose source database is damaged.")
@click.option("--notes", default=300, show_default=True, help="Notes per tenant (300: about 0.5 MB).")
@json_option
@handle_errors
def demo(directory: Path, tenants: int, corrupt: int, notes: int, as_json: bool) -> None:
    """Build a demo fleet of sample apps in DIRECTORY, with its manifest fleet.csv."""
    from .. import api

    manifest = api.create_demo_fleet(directory, tenants, notes=notes, corrupt=corrupt)
    if as_json:
        emit_json({"manifest": str(manifest), "tenants": tenants, "corrupt": corrupt})
        return
    out.print(
        f"{tenants} tenant(s) in {directory}; run: failback fleet run {manifest} --state {directory}/.failback-fleet"
    )
