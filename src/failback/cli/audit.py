"""Audit log commands."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape

from ..audit import ChainCheck, verify_chain
from ..config import load_config
from . import handle_errors
from .common import config_option, emit_json, err, json_option, out


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
    from ..report.data import audit_anchors

    cfg = load_config(config_path)
    check = verify_chain(cfg.state.audit_log, audit_anchors(cfg.state_path))
    if as_json:
        emit_json(asdict(check))
    else:
        render_chain_check(check)
    if not check.ok:
        sys.exit(1)


def render_chain_check(check: ChainCheck) -> None:
    for note in check.notes:
        err.print(f"[yellow]![/] {escape(note)}", highlight=False)
    if check.ok:
        out.print(f"[green]✓[/] audit chain intact: {check.records} record(s)")
    else:
        err.print(f"[red]✗[/] audit chain broken: {escape(check.problem)}")
