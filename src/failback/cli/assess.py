"""Risk assessment command."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import load_config
from . import config_option, handle_errors, json_option, main
from .run import run_rollback


@main.command()
@config_option
@json_option
@handle_errors
def assess(config_path: Path, as_json: bool) -> None:
    """Assess the risk of a rollback without changing anything (exit 3 when the gate would refuse)."""
    from ..rollback import Options

    cfg = load_config(config_path)
    outcome = run_rollback(cfg, config_path, Options(dry_run=True), as_json)
    if outcome.error is not None:
        raise outcome.error
    level = outcome.results["assess"]["level"]
    if level in ("high", "critical"):
        sys.exit(3)
