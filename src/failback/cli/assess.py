"""``failback assess``: snapshot, gather the risk facts and show them (exit 3 when the gate would refuse);
and the terminal confirmation a rollback asks for when the risk is high."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from . import handle_errors
from .common import config_option, emit_json, err, json_option, mode_option, out, progress_bar, render_assessment

if TYPE_CHECKING:
    from ..api import Assessment

TOP_TABLES = 10


@click.command()
@config_option
@mode_option("emergency: skip the slow facts (calibration, dbstat, quick_check); pending changes and disk are kept.")
@json_option
@handle_errors
def assess(config_path: Path, mode: str, as_json: bool) -> None:
    """Assess the risk of a rollback without changing anything (exit 3 when the gate would refuse)."""
    from .. import api

    with progress_bar(not as_json and err.is_terminal) as progress:
        outcome = api.assess(config_path, mode=mode, progress=progress)  # type: ignore[arg-type]
    if outcome.error is not None:
        raise outcome.error
    result = outcome.results["assess"]
    if as_json:
        emit_json({"run": outcome.run_id, **result})
    else:
        render_facts(result["facts"])
        render_assessment(result)
        out.print(f"run [bold]{outcome.run_id}[/]: report {outcome.report_path}", highlight=False)
    if not result["go"]:
        if not as_json:
            flags = "--yes" if result["level"] == "high" else "--force --reason '…'"
            err.print(f"a rollback would be refused at risk {result['level']} (it needs {flags})", highlight=False)
        sys.exit(3)


def render_facts(f: dict[str, Any]) -> None:
    """The size, disk and duration facts behind the findings."""
    sizes = sorted(f["tables"].items(), key=lambda kv: (kv[1]["bytes"] or 0, kv[1]["rows"] or 0), reverse=True)
    t = Table(title="Tables (largest first)")
    for col in ("table", "rows", "MB"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for name, s in sizes[:TOP_TABLES]:
        t.add_row(name, _num(s["rows"]), _num(s["bytes"] and s["bytes"] / 1e6, ".1f"))
    if len(sizes) > TOP_TABLES:
        t.add_row(f"… {len(sizes) - TOP_TABLES} more", "", "")
    out.print(t)
    d = Table(title="Disk")
    for col in ("folders", "needed MB", "free MB"):
        d.add_column(col, overflow="fold", justify="left" if col == "folders" else "right")
    for need in f["disk"]:
        d.add_row("\n".join(need["folders"]), f"{sum(need['parts'].values()) / 1e6:.1f}", f"{need['free'] / 1e6:.1f}")
    out.print(d)


def _num(v: float | None, spec: str = ",") -> str:
    return "" if v is None else format(v, spec)


def confirm_high_risk(a: Assessment) -> bool:
    """Show the findings and ask whether to go on at high risk; False (refuse) unless stdin is a terminal."""
    if not sys.stdin.isatty():
        return False
    render_assessment(a.to_json())
    return click.confirm(f"Risk is {a.level}. Roll back anyway?", default=False, err=True)
