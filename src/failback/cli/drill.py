"""``failback drill``: rehearse a rollback on copies and show the drill report (exit 3 when it would block)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import handle_errors
from .common import config_option, emit_json, err, json_option, out, progress_bar


@click.command()
@config_option
@click.option(
    "--folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Scratch folder for the copies, backups and run (default: a new one under the state folder's drills/).",
)
@json_option
@handle_errors
def drill(config_path: Path, folder: Path | None, as_json: bool) -> None:
    """Rehearse a rollback on copies (nothing switched, no file of the app changed); exit 3 when it would block.

    Every step runs: snapshot of the live source (only read), backup to the scratch folder, assess, convert,
    verify, the old app's statements ([app] statements), the switch of the copies and the post-check. The gate is
    passed on the drill's behalf; what it would have asked is reported. The drill report (time per step against
    the estimate, what would have blocked, what the on-call person would have had to decide) is written in the
    scratch folder, and a `drill` event in the audit log. Exit 0 when a rollback now would go through, 3 when it
    would have been blocked (for CI).
    """
    from ..api import drill as run

    with progress_bar(not as_json and err.is_terminal) as progress:
        result = run(config_path, folder=folder, progress=progress)
    if as_json:
        emit_json(result.to_json())
    else:
        out.print(result.report_path.read_text(encoding="utf-8"), highlight=False, markup=False)
        out.print(f"drill report: {result.report_path}", highlight=False)
    sys.exit(result.exit_code)
