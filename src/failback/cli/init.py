"""``failback init``: write a commented failback.toml for a native database."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..config import DEFAULT_NAME
from . import handle_errors
from .common import emit_json, json_option, out, profile_option


@click.command()
@click.argument("native_db", type=click.Path(path_type=Path), required=False)
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    default=Path(DEFAULT_NAME),
    show_default=True,
    help="Where to write the config (never over an existing file).",
)
@profile_option
@json_option
@handle_errors
def init(native_db: Path | None, out_path: Path, profile: str, as_json: bool) -> None:
    """Inspect a native database and write a commented failback.toml for it (never overwrites).

    NATIVE_DB (default: the one SQLite database in the current folder) is only read. The file written names
    the FTS tables found with search terms drawn from their text, the collations the schema uses, the sync
    layouts detected, and the app's provider setting when a .env or .json beside the database holds one; the
    sql.js target is the file that setting names, else NATIVE-sqljs beside NATIVE_DB. Read it through, then run
    `failback assess -c FILE`. Exit 2 when the output file exists (it is left as it is) or NATIVE_DB is not a
    readable SQLite database."""
    from .. import api

    survey = api.init(native_db, out_path, profile=profile)
    if as_json:
        emit_json({"config": str(out_path), **survey.to_json()})
        return
    out.print(f"[green]✓[/] wrote {escape(str(out_path))} for {escape(str(survey.native))}", highlight=False)
    for f in survey.fts:
        found = ", ".join(f.terms) or f.note
        out.print(f"  FTS {escape(f.name)} ({f.module}): {escape(found)}", highlight=False)
    if survey.collations:
        out.print(f"  collations: {escape(', '.join(survey.collations))}", highlight=False)
    for s in survey.sync:
        out.print(f"  sync ({s.kind}): {escape(s.where)} — {s.pending} pending", highlight=False)
    app = f"{survey.app.config} ({survey.app.key})" if survey.app else "NOT FOUND: set [app] by hand"
    out.print(f"  app config: {escape(app)}", highlight=False)
    out.print(f"next: `failback assess -c {escape(str(out_path))}`", highlight=False)
