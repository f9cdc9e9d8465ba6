"""Backup commands: create, list, verify, restore, prune."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..errors import InputError
from . import handle_errors
from .common import config_option, emit_json, err, json_option, out, progress_bar

if TYPE_CHECKING:
    from ..api import BackupResult


@click.group()
def backup() -> None:
    """Create, list, verify, restore and prune backups."""


@backup.command("create")
@config_option
@click.option("--label", default="manual", show_default=True, help="A label in the backup id.")
@json_option
@handle_errors
def backup_create(config_path: Path, label: str, as_json: bool) -> None:
    """Snapshot the source and store a verified, compressed copy in every layer."""
    from .. import api

    warnings = api.backup_warnings(config_path)

    def show(result: BackupResult) -> None:
        if as_json:
            emit_json({**result.to_json(), "warnings": [w.message for w in warnings]})
            return
        for w in warnings:
            err.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
            err.print(f"[dim]hint:[/] {w.fix}", highlight=False, soft_wrap=True)
        restarts = result.snapshot.get("restarts", 0)
        out.print(f"backup {result.id} (snapshot restarted {restarts}× while the source was written)")
        for layer in result.layers:
            mark = "[green]✓[/]" if layer.ok else "[red]✗[/]"
            out.print(f"{mark} {layer.folder}/{result.id} {layer.error}", highlight=False, soft_wrap=True)

    made: list[BackupResult] = []  # shown once the bars are gone, also when too few layers verified (it raises)
    try:
        with progress_bar(not as_json and err.is_terminal) as progress:
            api.create_backup(config_path, label=label, progress=progress, on_result=made.append)
    finally:
        for result in made:
            show(result)


@backup.command("list")
@config_option
@json_option
@handle_errors
def backup_list(config_path: Path, as_json: bool) -> None:
    """List backups (newest first) and the layers that hold them."""
    from .. import api

    items = api.list_backups(config_path)
    if as_json:
        emit_json([b.to_json() for b in items])
        return
    t = Table(title="Backups")
    for col in ("id", "label", "created", "MB (zstd)", "layers"):
        t.add_column(col)
    for b in items:
        m = b.manifest
        t.add_row(m["id"], m["label"], m["created"], f"{m['bytes']['compressed'] / 1e6:.1f}", str(len(b.folders)))
    out.print(t)


@backup.command("verify")
@config_option
@click.argument("backup_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every backup.")
@click.option("--deep", is_flag=True, help="Also decompress, run integrity_check and compare content digests.")
@json_option
@handle_errors
def backup_verify(config_path: Path, backup_id: str | None, all_: bool, deep: bool, as_json: bool) -> None:
    """Check every stored copy against its checksum (exit 1 when one fails)."""
    from .. import api

    if bool(backup_id) == all_:
        raise InputError("name one backup id or pass --all", "see `failback backup list`")
    check = api.verify_backup(config_path, None if all_ else backup_id, deep=deep)
    if as_json:
        emit_json(check.to_json())
    else:
        for f, c in check.copies.items():
            line = f"[green]✓[/] {f}" if not c.problems else f"[red]✗[/] {'; '.join(c.problems)}"
            out.print(line, highlight=False, soft_wrap=True)
            for note in c.notes:
                out.print(f"  note: {note}", highlight=False, soft_wrap=True)
    if not check.ok:
        sys.exit(1)


@backup.command("restore")
@config_option
@click.argument("backup_id")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite DEST (and remove its -wal/-shm/-journal).")
@json_option
@handle_errors
def backup_restore(config_path: Path, backup_id: str, dest: Path, force: bool, as_json: bool) -> None:
    """Restore a backup to DEST (refuses to overwrite without --force).

    Tries every stored copy, primary first, and restores the first that passes every check (both checksums,
    integrity_check, the content digests); names each copy it skipped and why. Exit 1 when none passes."""
    from .. import api

    with progress_bar(not as_json and err.is_terminal) as progress:
        result = api.restore_backup(config_path, backup_id, dest, force=force, progress=progress)
    if as_json:
        emit_json(result.to_json())
        return
    for folder, problem in result.skipped:
        out.print(f"[yellow]skipped[/] {folder}: {problem}", highlight=False, soft_wrap=True)
    out.print(f"[green]✓[/] restored {backup_id} to {dest} from {result.copy}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"  note: {note}", highlight=False, soft_wrap=True)


@backup.command("prune")
@config_option
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@json_option
@handle_errors
def backup_prune(config_path: Path, dry_run: bool, as_json: bool) -> None:
    """Delete backups that keep_last, keep_within and keep_daily do not keep.

    Never deletes what `failback status` lists as protected: the newest verified backup of each label, and every
    backup a resume, an abort or an unpaid verification debt needs."""
    from .. import api

    result = api.prune_backups(config_path, dry_run=dry_run)
    if as_json:
        emit_json(result.to_json())
    else:
        t = Table(title="Prune (dry run: nothing deleted)" if dry_run else "Prune")
        for col in ("id", "created", "action", "why kept"):
            t.add_column(col, overflow="fold")
        for v in result.verdicts:
            gone = all(f in result.removed for f in result.folders[v.id])
            action = (
                "keep" if v.keep else "[yellow]would delete[/]" if dry_run else "deleted" if gone else "[red]failed[/]"
            )
            t.add_row(v.id, v.created.isoformat(timespec="seconds"), action, "; ".join(v.reasons))
        out.print(t)
        for problem in result.errors:
            err.print(f"[red]✗[/] {problem}", highlight=False)
    if result.errors:
        sys.exit(1)
