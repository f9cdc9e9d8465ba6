"""Audit log commands."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.markup import escape

from ..config import load_config
from . import config_option, err, handle_errors, main, out


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@config_option
@handle_errors
def audit_verify(config_path: Path) -> None:
    """Check the audit log's hash chain, and its end against the head and every run report's copy of it (exit 1
    at the first broken line, or when records are missing at the end)."""
    from ..audit import verify_chain
    from ..report.data import audit_anchors

    cfg = load_config(config_path)
    check = verify_chain(cfg.state.audit_log, audit_anchors(cfg.state_path))
    for note in check.notes:
        err.print(f"[yellow]![/] {escape(note)}", highlight=False)
    if check.ok:
        out.print(f"[green]✓[/] audit chain intact: {check.records} record(s)")
    else:
        err.print(f"[red]✗[/] audit chain broken: {escape(check.problem)}")
        sys.exit(1)
