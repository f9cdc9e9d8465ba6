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
    """Check the audit log's hash chain (exit 1 at the first broken line)."""
    from ..audit import verify_chain

    cfg = load_config(config_path)
    check = verify_chain(cfg.state_path / "audit.jsonl")
    if check.ok:
        out.print(f"[green]✓[/] audit chain intact: {check.records} record(s)")
    else:
        err.print(f"[red]✗[/] audit chain broken: {escape(check.problem)}")
        sys.exit(1)
