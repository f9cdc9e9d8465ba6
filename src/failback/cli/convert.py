"""Conversion commands: export, plan, probe."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape

from . import handle_errors
from .common import (
    emit_json,
    err,
    json_option,
    out,
    profile_option,
    progress_bar,
    render_plan,
    repair_fts_option,
    settings_option,
)


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@profile_option
@settings_option("Take [convert] and [verify] settings from this failback.toml.")
@click.option("--force", is_flag=True, help="Replace TARGET if it exists.")
@repair_fts_option
@json_option
@handle_errors
def export(
    source: Path, target: Path, profile: str, config_path: Path | None, force: bool, repair_fts: bool, as_json: bool
) -> None:
    """Convert SOURCE into a database the target engine accepts, verify it, write TARGET."""
    from .. import api

    with progress_bar(not as_json and err.is_terminal) as progress:
        result = api.export(
            source, target, profile=profile, config=config_path, force=force, progress=progress, repair_fts=repair_fts
        )
    if as_json:
        emit_json(result.to_json())
        return
    render_plan([d.to_json() for d in result.plan.decisions])
    v = result.verification
    out.print(
        f"[green]✓[/] {target}: {result.bytes / 1e6:.1f} MB in {result.seconds:.2f} s; "
        f"{v.summary('in source, target and sql.js ' + v.sqljs_version)}; "
        f"{sum(c.ok for c in v.checks)}/{len(v.checks)} checks passed",
        highlight=False,
    )
    if result.integrity.repaired:
        out.print(f"[yellow]repaired[/] {result.integrity.note}", highlight=False)


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@profile_option
@settings_option("Take [convert] settings and [app] functions from this failback.toml.")
@json_option
@handle_errors
def plan(source: Path, profile: str, config_path: Path | None, as_json: bool) -> None:
    """Show what each schema object of SOURCE becomes in the target, and why, and what the data asks of the app
    (findings: integers beyond ±(2^53−1), which sql.js rounds unless the app reads them as BigInt)."""
    from .. import api

    p = api.plan(source, profile=profile, config=config_path)
    findings = api.data_findings(source)
    if as_json:
        emit_json({**p.to_json(), "findings": [asdict(f) for f in findings]})
    else:
        render_plan([d.to_json() for d in p.decisions])
        for f in findings:
            out.print(f"[yellow]{f.severity}[/] {escape(f.message)}", highlight=False, soft_wrap=True)
            out.print(f"[dim]fix:[/] {escape(f.fix)}", highlight=False, soft_wrap=True)
    if p.refused:
        sys.exit(3)


@click.command()
@click.option("--engine", type=click.Choice(["sqljs", "sqlite", "sqlite-wasm"]), default="sqljs", show_default=True)
@click.option(
    "--engine-path",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Probe this build of the engine (a sql.js dist/ folder: sql-wasm.js + .wasm; for sqlite-wasm, the "
    "@sqlite.org/sqlite-wasm package folder); the profile records it.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write the profile here.")
@json_option
@handle_errors
def probe(engine: str, engine_path: Path | None, output: Path | None, as_json: bool) -> None:
    """Probe a real engine's capabilities and print (or write) its profile.

    --json prints the profile as JSON (with --output, where it was written); the file is always TOML."""
    from .. import api

    prof = api.probe(engine, engine_path=engine_path, output=output)
    if as_json:
        emit_json({"profile": prof.model_dump(mode="json"), "output": str(output) if output else None})
    elif output:
        out.print(f"wrote {output}")
    else:
        click.echo(prof.to_toml(), nl=False)
