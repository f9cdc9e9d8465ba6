"""Automated rollback triggers: watch, check, hold, release."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from ..errors import FailbackError
from . import handle_errors
from .common import config_option, emit_json, json_option, out

if TYPE_CHECKING:
    from ..api import Evaluation, RunResult

ACTION_TEXT = {
    "warn": "[yellow]warning[/] by {warnings}",
    "rollback": "[bold red]ROLLBACK ({mode})[/] by {rules}",
    "would-rollback": "[bold yellow]dry run: would roll back ({mode})[/] by {rules}",
    "held": "[bold yellow]held[/]: {rules} would roll back ({mode}); automatic rollback blocked",
    "cooldown": "[bold yellow]cooling down[/]: {rules} would roll back ({mode}); {note}",
    "skipped": "[yellow]not rolled back[/]: {rules} fired; {note}",
}
STATUS_STYLE = {"ok": "green", "failing": "yellow", "firing": "bold red", "fired": "red", "paused": "dim"}
STATUS_ORDER = ("firing", "fired", "failing", "inconclusive", "paused", "ok")

jsonl_option = click.option(
    "--jsonl",
    "as_jsonl",
    is_flag=True,
    help="Print JSON Lines: one line per evaluation as it is made, then a summary line.",
)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


def evaluation_headline(ev: Evaluation) -> str:
    """The sample's header: what was decided, and the rule rows counted by status (so a header never says
    "ok" above a failing, fired or inconclusive rule)."""
    d = ev.decision
    statuses = [r.status for r in ev.results]
    if d.action == "none":
        title = "[green]ok[/]" if set(statuses) <= {"ok"} else "[yellow]no action[/]"
    else:
        rules, warnings = escape(", ".join(d.rules)), escape(", ".join(d.warnings))
        title = ACTION_TEXT[d.action].format(mode=d.mode, rules=rules, warnings=warnings, note=escape(d.note))
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in STATUS_ORDER if s in statuses)
    return f"[bold]#{ev.seq}[/] {ev.time} — {title} · {len(statuses)} rule(s): {counts}"


def render_evaluation(ev: Evaluation, as_jsonl: bool) -> None:
    """One line of JSON, or a table under the sample's header (and the hold, every time)."""
    if as_jsonl:
        click.echo(json.dumps(ev.to_json(), default=str, ensure_ascii=False))
        return
    out.print(evaluation_headline(ev), highlight=False)
    t = Table()
    for col in ("rule", "metric", "value", "fails when", "streak", "status", "note"):
        t.add_column(col, overflow="fold")
    for r in ev.results:
        style = STATUS_STYLE.get(r.status, "yellow")
        sev = "" if r.severity == "rollback" else f" ({r.severity})"
        t.add_row(
            escape(r.rule + sev),
            escape(r.metric),
            _num(r.value),
            f"{r.op} {_num(r.threshold)}",
            f"{r.streak}/{r.need}",
            f"[{style}]{r.status}[/]" + (" [magenta](flapping)[/]" if r.flapping else ""),
            escape(r.note),
        )
    out.print(t)
    if ev.hold:
        h = ev.hold
        who = escape(f"by {h.user} since {h.since}: {h.reason}")
        out.print(f"[yellow]held[/] {who} — no automatic rollback", highlight=False)
    for e in ev.errors:
        out.print(f"[dim]source error: {escape(e)}[/]", highlight=False)


@click.command()
@config_option
@click.option("--once", is_flag=True, help="Evaluate one sample, act on it, and exit.")
@click.option("--dry-run", is_flag=True, help="Say what would be done; never roll back.")
@click.option("--max-samples", type=click.IntRange(min=1), help="Stop after N samples.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve failback's own metrics at http://ADDRESS:PORT/metrics while watching (0: any free port).",
)
@click.option(
    "--metrics-address", default="127.0.0.1", show_default=True, help="The address --metrics-port listens on."
)
@json_option
@jsonl_option
@handle_errors
def watch(
    config_path: Path,
    once: bool,
    dry_run: bool,
    max_samples: int | None,
    metrics_port: int | None,
    metrics_address: str,
    as_json: bool,
    as_jsonl: bool,
) -> None:
    """Evaluate [triggers] every interval and roll back when a rollback rule fires.

    A rule fires after `for` consecutive failing samples, once per streak. A firing rule pre-authorises a high
    risk (like --yes), never a critical one. `failback hold` blocks automatic rollbacks. The watch ends after an
    automatic rollback with its exit code, and no watch rolls back again for [triggers] cooldown seconds. Only
    fresh samples count (older than max_age, or read before: inconclusive); a rule flipping fast is flagged
    flapping. --metrics-port serves failback's own metrics (written to the metrics textfile every sample too).
    SIGINT/SIGTERM stop it at once, abandoning a sample still being read (exit 0), or interrupt a rollback in
    progress (exit 4, resumable). A metrics endpoint has the interval
    (between 1 and 10 s) to answer in full; a slower one makes its rules inconclusive for that sample.

    A watch is a stream, so --json and --jsonl both print JSON Lines: one line per evaluation as it is made, then
    a summary line (the lines `check --jsonl` prints).
    """
    from .. import api
    from .run import rollback_live

    as_json |= as_jsonl

    def rollback(mode: str) -> RunResult:
        return rollback_live(config_path, False, mode=mode, yes=True)

    result = api.watch(
        config_path,
        max_samples=1 if once else max_samples,
        dry_run=dry_run,
        on_evaluation=lambda ev: render_evaluation(ev, as_json),
        run_rollback=None if as_json else rollback,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
    )
    summary: dict[str, Any] = {"samples": result.samples, "stopped": result.stopped, "exit_code": result.exit_code}
    if result.rollback is not None:
        summary["rollback"] = {"run": result.rollback.run_id, "status": result.rollback.status}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        out.print(f"watch stopped ({result.stopped}) after {result.samples} sample(s)", highlight=False)
    sys.exit(result.exit_code)


@click.command()
@config_option
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Samples, an interval apart.")
@json_option
@jsonl_option
@handle_errors
def check(config_path: Path, samples: int, as_json: bool, as_jsonl: bool) -> None:
    """Evaluate [triggers] and exit 3 when a rollback rule fires (for CI/CD); never rolls back.

    `for` applies as in `watch`: a rule with for = 3 needs --samples 3. A hold does not change the exit code
    (check reports, it does not act); the output says the hold is there. --json prints one JSON document when
    the samples are done ({"samples", "fired", "exit_code", "evaluations": [...]}); --jsonl prints JSON Lines
    as `watch --json` does: one line per evaluation as it is made, then the summary line.
    """
    from .. import api

    if as_json and as_jsonl:
        raise FailbackError("--json and --jsonl exclude each other", "pass one of them")
    result = api.check(
        config_path, samples=samples, on_evaluation=None if as_json else lambda ev: render_evaluation(ev, as_jsonl)
    )
    if as_json:
        emit_json(result.to_json())
    elif as_jsonl:
        click.echo(json.dumps({"samples": result.samples, "fired": result.fired, "exit_code": result.exit_code}))
    sys.exit(result.exit_code)


@click.command()
@config_option
@click.option("--reason", required=True, help="Why automatic rollbacks are blocked (shown on every evaluation).")
@json_option
@handle_errors
def hold(config_path: Path, reason: str, as_json: bool) -> None:
    """Block automatic rollbacks until `failback release` (a manual `failback rollback` still works)."""
    from .. import api

    h = api.hold(config_path, reason)
    if as_json:
        emit_json(asdict(h))
    else:
        out.print(f"[yellow]held[/]: automatic rollbacks blocked — {escape(h.reason)}", highlight=False)


@click.command()
@config_option
@json_option
@handle_errors
def release(config_path: Path, as_json: bool) -> None:
    """Lift the hold: automatic rollbacks may run again."""
    from .. import api

    h = api.release(config_path)
    if as_json:
        emit_json({"released": asdict(h) if h else None})
    elif h is None:
        out.print("no hold to release", highlight=False)
    else:
        out.print(
            f"[green]released[/] {escape(f'the hold placed by {h.user} since {h.since} ({h.reason})')}", highlight=False
        )
