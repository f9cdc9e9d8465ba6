"""Run reports: JSON (everything), Markdown (what a person reads) and one self-contained HTML page (what a person
looks at: timeline, size by table, benchmark before/after as inline SVG), written into the run directory and
rendered again from it by ``failback report``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import write_text
from ..journal import RunDir, RunState, crash_point
from .data import render_json
from .html import render_html
from .markdown import render_markdown

RENDERERS: dict[str, Callable[[RunState, dict[str, Any]], str]] = {
    "md": render_markdown,
    "html": render_html,
    "json": render_json,
}


REPORT_SETS: dict[str, tuple[str, ...]] = {"all": tuple(RENDERERS), "json": ("json",)}
"""The reports a run may write: all three, or report.json alone (the others rendered from it on demand by
``failback report``, as for a fleet's tenants). report.json, the one a report is rendered again from, comes last."""


def report_set(name: str) -> tuple[str, ...]:
    """The formats of report set ``name``; ConfigError (exit 2) for an unknown one."""
    try:
        return REPORT_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown report set {name!r}", f"use one of: {', '.join(REPORT_SETS)}") from None


def write_reports(rd: RunDir, state: RunState, data: dict[str, Any], formats: tuple[str, ...]) -> list[Path]:
    """Write the reports in ``formats`` (report.md, report.html, report.json) into the run directory."""
    paths = []
    for fmt in formats:
        path = rd.file(f"report.{fmt}")
        write_text(path, RENDERERS[fmt](state, data))
        crash_point(f"report.{fmt}")
        paths.append(path)
    return paths
