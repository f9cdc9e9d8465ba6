"""``failback report``: render a run's report (Markdown, self-contained HTML or JSON) from its run directory."""

from __future__ import annotations

from pathlib import Path

import click

from . import handle_errors
from .common import config_option, err


@click.command()
@click.argument("run", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True, help="Report format."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write the report to this file.")
@config_option
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@handle_errors
def report(run: str | None, fmt: str, output: Path | None, config_path: Path, as_json: bool) -> None:
    """Show the report of RUN (an id or its unique prefix; default: the newest run).

    The report holds the steps and their durations, the risk findings, the backups with their hashes, the
    conversion of each schema object, the verification matrix (snapshot / target / sql.js per table), search and
    query parity, the benchmark before and after, and the run's audit events. --format html gives one
    self-contained page with charts (no network needed); each run also leaves report.md, report.html and
    report.json in its directory (a fleet's tenants report.json only: this command renders the others from it).
    """
    from .. import api

    text = api.report(config_path, run, format="json" if as_json else fmt, output=output)  # type: ignore[arg-type]
    if output is None:
        click.echo(text, nl=False)
    else:
        err.print(f"wrote {output}", highlight=False)
