"""Run reports: JSON (everything), Markdown (what a person reads) and one self-contained HTML page (what a person
looks at: timeline, size by table, benchmark before/after as inline SVG), written into the run directory and
rendered again from it by ``failback report``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def write_reports(rd: RunDir, state: RunState, data: dict[str, Any]) -> list[Path]:
    """Write report.json, report.md and report.html into the run directory."""
    paths = []
    for fmt, render in RENDERERS.items():
        path = rd.file(f"report.{fmt}")
        write_text(path, render(state, data))
        crash_point(f"report.{fmt}")
        paths.append(path)
    return paths
