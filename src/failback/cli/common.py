"""What the commands share: the consoles, JSON output, progress bars, the common options and the renderers
of assessments and plans. Only command modules import it, so `failback --help` never loads rich."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import DEFAULT_NAME, DEFAULT_PROFILE

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and not at all when output goes to a file or a pipe."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, soft_wrap=True, width=200)


out = _console()
err = _console(stderr=True)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


class ProgressBars:
    """A progress callback drawing one bar per phase, plus one for the running step (nothing when disabled),
    which can step aside for a question asked on the terminal.

    A phase's bar goes when the phase reaches its total or the step it ran in ends. The step's bar pulses until
    a phase of the same name reports progress (``snapshot``) and goes when the step ends: a step that reports no
    progress (``verify``) still shows that it runs, and no finished phase stays on screen under it. Phases also
    tick from a background thread (the backup's compression): a lock keeps the bars and their ids together."""

    def __init__(self, bar: Progress | None) -> None:
        self.bar = bar
        self.tasks: dict[str, TaskID] = {}
        self.running: str | None = None
        self.lock = threading.Lock()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        key = phase.split(" ", 1)[0]
        with self.lock:
            if done >= total > 0 and key != self.running:
                self._remove(self.bar, key)
                return
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(phase[:22], total=max(total, 1))
            self.bar.update(self.tasks[key], completed=done, total=max(total, 1), description=phase[:22])

    def step(self, name: str, event: str) -> None:
        """A step started (a bar of its own) or ended (its bar and every phase bar go); no-op when disabled."""
        if self.bar is None:
            return
        with self.lock:
            for key in list(self.tasks):
                self._remove(self.bar, key)
            self.running = name if event == "start" else None
            if self.running:
                self.tasks[name] = self.bar.add_task(name, total=None)

    def _remove(self, bar: Progress, key: str) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            bar.remove_task(task)

    @contextmanager
    def paused(self) -> Iterator[None]:
        if self.bar is not None:
            self.bar.stop()
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.start()


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressBars]:
    """Progress bars on stderr while the block runs (transient: they vanish when done)."""
    if not enabled:
        yield ProgressBars(None)
        return
    columns = (TextColumn("{task.description:<22}"), BarColumn(), TaskProgressColumn("{task.percentage:>5.1f}%"))
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
        yield ProgressBars(bar)


CONFIG_ENVVAR = "FAILBACK_CONFIG"  # one variable for every command's -c (not FAILBACK_<CMD>_CONFIG)
config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_NAME,
    show_default=True,
    envvar=CONFIG_ENVVAR,
    help="Path of failback.toml.",
)
profile_option = click.option(
    "--profile", default=DEFAULT_PROFILE, show_default=True, help="Target profile (name or file)."
)


def mode_option(help: str) -> Callable[[F], F]:
    """``--mode standard|emergency`` with a command's own description of what emergency changes."""
    return click.option(
        "--mode", type=click.Choice(["standard", "emergency"]), default="standard", show_default=True, help=help
    )


def settings_option(help: str) -> Callable[[F], F]:
    """An optional ``--config`` for commands that work without one (their settings then are the defaults)."""
    return click.option(
        "-c", "--config", "config_path", type=click.Path(path_type=Path), default=None, envvar=CONFIG_ENVVAR, help=help
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
repair_fts_option = click.option(
    "--repair-fts",
    is_flag=True,
    help="Accept a source whose only damage is in FTS indexes the target rebuilds from their intact text "
    "(recorded as a repair); without it a damaged source is refused (exit 3).",
)


def render_assessment(a: dict[str, Any]) -> None:
    colors = {"low": "green", "medium": "yellow", "high": "red", "critical": "bold red"}
    t = Table(title=f"Risk: [{colors[a['level']]}]{a['level']}[/]", show_lines=False, expand=False)
    for col in ("severity", "finding", "fix"):
        t.add_column(col, overflow="fold")
    for f in a["findings"]:
        t.add_row(f["severity"], escape(f["message"]), escape(f["fix"]))
    out.print(t)


def render_plan(decisions: list[dict[str, Any]]) -> None:
    t = Table(title="Conversion plan")
    for col in ("kind", "object", "action", "reason"):
        t.add_column(col, overflow="fold")
    style = {"keep": "green", "convert": "yellow", "drop": "red", "refuse": "bold red", "skip": "dim"}
    for d in decisions:
        t.add_row(d["kind"], escape(d["name"]), f"[{style[d['action']]}]{d['action']}[/]", escape(d["reason"]))
    out.print(t)
