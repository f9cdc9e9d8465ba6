"""Verification commands: verify (a pair of files, or a run's verification debt) and baseline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..config import load_config
from ..errors import InputError
from . import handle_errors
from .common import config_option, emit_json, json_option, out, profile_option


def render_verification(v: dict[str, Any]) -> None:
    """The verification matrix (snapshot / target / sql.js per table) and the checks."""
    from ..verify import table_status

    def cell(x: dict[str, Any] | None) -> str:
        if x is None:
            return "—"
        return f"{x['rows']} · {x['digest'][:12]}" if x["digest"] else str(x["rows"])

    t = Table(title=f"Verification ({v['level']}): " + ("[green]passed[/]" if v["ok"] else "[red]FAILED[/]"))
    for col in ("table", "snapshot", "target", "sql.js", "equal"):
        t.add_column(col, overflow="fold")
    for row in v["tables"]:
        t.add_row(
            escape(row["table"]),
            cell(row["snapshot"]),
            cell(row["target"]),
            cell(row["sqljs"]),
            {"equal": "[green]yes[/]", "differs": "[red]NO[/]"}.get(
                status := table_status(row), f"[yellow]{status}[/]"
            ),
        )
    out.print(t)
    if v["checks"]:
        c = Table(title="Checks")
        for col in ("check", "name", "ok", "detail"):
            c.add_column(col, overflow="fold")
        for x in v["checks"]:
            c.add_row(x["kind"], escape(x["name"]), "[green]yes[/]" if x["ok"] else "[red]NO[/]", escape(x["detail"]))
        out.print(c)
    if b := v.get("browser"):
        tab = f"{b['peak_tab_bytes'] / 2**20:.0f} MB" if b["peak_tab_bytes"] else "unknown"
        out.print(f"In the browser (SQLite {b['version']}): {b['seconds']:.1f} s, tab peak {tab}", highlight=False)
        if b["warning"]:
            out.print(f"[yellow]![/] {escape(b['warning'])}", highlight=False)
    for p in v["problems"]:
        out.print(f"[red]✗[/] {escape(p)}", highlight=False)


@click.command()
@click.argument("source", type=click.Path(path_type=Path), required=False)
@click.argument("target", type=click.Path(path_type=Path), required=False)
@click.option("--level", type=click.Choice(["quick", "standard", "deep"]), default="standard", show_default=True)
@profile_option
@click.option("--browser", is_flag=True, help="Also run the checks in headless Chromium; they must equal Node's.")
@click.option(
    "--debt",
    "debt_run",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="Pay the verification debt of an emergency run (default: the newest unpaid one).",
)
@config_option
@json_option
@handle_errors
def verify(
    source: Path | None,
    target: Path | None,
    level: str,
    profile: str,
    browser: bool,
    debt_run: str | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Prove TARGET holds SOURCE's data and the schema planned for it, in apsw and in sql.js (exit 1 when not);
    or pay a run's debt. SOURCE is planned again as export plans it: with the [convert] settings of the config
    file when it exists, each view and trigger proved in sql.js."""
    from ..profiles import target_engine

    if debt_run is not None:
        from ..pipeline.debt import pay_debt

        debt_cfg = load_config(config_path)
        payment = pay_debt(debt_cfg, target_engine(debt_cfg.target), debt_run or None)
        report = payment.report
        if not as_json:
            out.print(f"run {payment.run}: target {payment.target}", highlight=False)
    else:
        if source is None or target is None:
            raise InputError("give SOURCE and TARGET, or --debt [RUN]", "see `failback verify --help`")
        from .. import api

        settings = config_path if config_path.exists() else None
        report = api.verify(source, target, profile=profile, config=settings, level=level, browser=browser)  # type: ignore[arg-type]
    if as_json:
        emit_json(report.to_json())
    else:
        render_verification(report.to_json())
    if not report.ok:
        sys.exit(1)


@click.group()
def baseline() -> None:
    """Performance baseline of the app's queries in the target engine."""


@baseline.command("record")
@config_option
@click.option(
    "--database",
    type=click.Path(path_type=Path),
    default=None,
    help="Time the queries on this sql.js database (default: [target] path).",
)
@json_option
@handle_errors
def baseline_record(config_path: Path, database: Path | None, as_json: bool) -> None:
    """Time [benchmark] queries in sql.js and store p50/p95 per query in the state folder."""
    from ..pipeline.postcheck import record_baseline
    from ..profiles import target_engine

    cfg = load_config(config_path)
    data = record_baseline(cfg, target_engine(cfg.target), database)
    if as_json:
        emit_json(data)
        return
    t = Table(title=f"Baseline ({data['engine']}, {data['runs']} runs)")
    for col in ("query", "p50 ms", "p95 ms", "rows"):
        t.add_column(col, overflow="fold")
    for q in data["queries"]:
        t.add_row(escape(q["sql"]), f"{q['p50_ms']:.2f}", f"{q['p95_ms']:.2f}", str(q["rows"]))
    out.print(t)
