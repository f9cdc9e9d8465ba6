"""Audit log commands."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from . import handle_errors
from .common import config_option, emit_json, err, json_option, out

if TYPE_CHECKING:
    from ..api import ChainCheck


@click.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@config_option
@json_option
@handle_errors
def audit_verify(config_path: Path, as_json: bool) -> None:
    """Check the audit log's hash chain, and its end against the head and every run report's copy of it (exit 1
    at the first broken line, or when records are missing at the end)."""
    from .. import api

    check = api.verify_audit(config_path)
    if as_json:
        emit_json(asdict(check))
    else:
        render_chain_check(check)
    if not check.ok:
        sys.exit(1)


def render_chain_check(check: ChainCheck) -> None:
    """What checking the chain found: its notes, then intact or where it broke."""
    for note in check.notes:
        err.print(f"[yellow]![/] {escape(note)}", highlight=False)
    if check.ok:
        out.print(f"[green]✓[/] audit chain intact: {check.records} record(s)")
    else:
        err.print(f"[red]✗[/] audit chain broken: {escape(check.problem)}")
