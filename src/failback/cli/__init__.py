"""The command line: parse, call the library, render (rich tables and progress, or --json). Nothing more.

``main`` is a lazy group: it knows each command's module and one-line help from ``COMMANDS``, and imports a
command's module (and with it rich, pydantic, apsw and the domain) only when that command runs, so
``failback --version`` and ``failback --help`` start about as fast as Python itself. This module holds what
must be there before a command loads: the group and the error handler; the rest is in ``cli.common``."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..errors import FailbackError

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 70
INTERRUPTED = 4
ENVVAR_PREFIX = "FAILBACK"
JSON_FLAGS = ("--json", "--jsonl")

# command name -> ("module:attribute" under failback.cli, its one-line help); a test checks both against the command
COMMANDS: dict[str, tuple[str, str]] = {
    "abort": ("run:abort", "Undo an unfinished run: temp files removed; source, config and target as before the run."),
    "assess": (
        "assess:assess",
        "Assess the risk of a rollback without changing anything (exit 3 when the gate would refuse).",
    ),
    "audit": ("audit:audit", "The hash-chained audit log."),
    "backup": ("backup:backup", "Create, list, verify, restore and prune backups."),
    "baseline": ("verify:baseline", "Performance baseline of the app's queries in the target engine."),
    "check": (
        "autorollback:check",
        "Evaluate [triggers] and exit 3 when a rollback rule fires (for CI/CD); never rolls back.",
    ),
    "drill": (
        "drill:drill",
        "Rehearse a rollback on copies (nothing switched, no file of the app changed); exit 3 when it would block.",
    ),
    "demo": ("run:demo", "Build a GRDB-style sample app in DIRECTORY and roll it back to sql.js."),
    "export": (
        "convert:export",
        "Convert SOURCE into a database the target engine accepts, verify it, write TARGET.",
    ),
    "fleet": (
        "fleet:fleet",
        "Roll many tenants back in waves on Dask, with a failure budget; resumable, exactly once.",
    ),
    "hold": (
        "autorollback:hold",
        "Block automatic rollbacks until `failback release` (a manual `failback rollback` still works).",
    ),
    "init": ("init:init", "Inspect a native database and write a commented failback.toml for it (never overwrites)."),
    "plan": (
        "convert:plan",
        "Show what each schema object of SOURCE becomes in the target, and why, and what the data asks of the app "
        "(findings: integers beyond ±(2^53−1), which sql.js rounds unless the app reads them as BigInt).",
    ),
    "probe": ("convert:probe", "Probe a real engine's capabilities and print (or write) its profile."),
    "release": ("autorollback:release", "Lift the hold: automatic rollbacks may run again."),
    "report": ("report:report", "Show the report of RUN (an id or its unique prefix; default: the newest run)."),
    "resume": (
        "run:resume",
        "Continue an interrupted run (default: the newest) from its last trusted checkpoint.",
    ),
    "rollback": (
        "run:rollback",
        "Roll the app back: snapshot, backup, assess, convert, verify, switch, report.",
    ),
    "status": (
        "run:status",
        "Show runs, their steps and what to do next, and the backups prune must keep, with why.",
    ),
    "verify": (
        "verify:verify",
        "Prove TARGET holds SOURCE's data and the schema planned for it, in apsw and in sql.js (exit 1 when not); "
        "or pay a run's debt.",
    ),
    "watch": ("autorollback:watch", "Evaluate [triggers] every interval and roll back when a rollback rule fires."),
}


def fail(message: str, hint: str, exit_code: int, kind: str, as_json: bool) -> NoReturn:
    """Say why the command failed on stderr — one line and a hint, or one JSON object — and exit with the code."""
    if as_json:
        record = {"error": message, "hint": hint or None, "exit_code": exit_code, "kind": kind}
        click.echo(json.dumps(record, ensure_ascii=False), err=True)
    else:
        label = "internal error:" if exit_code == INTERNAL_ERROR else "error:"
        click.echo(f"{click.style(label, fg='red', bold=True)} {message}", err=True)
        if hint:
            click.echo(f"{click.style('hint:', dim=True)} {hint}", err=True)
    sys.exit(exit_code)


def handle_errors(fn: F) -> F:
    """Turn FailbackError into one line + hint + exit code (one JSON object under --json/--jsonl); never a
    traceback for user error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json") or kwargs.get("as_jsonl"))
        try:
            return fn(*args, **kwargs)
        except FailbackError as e:
            fail(e.message, e.hint, e.exit_code, type(e).__name__, as_json)
        except KeyboardInterrupt:
            hint = "`failback status` shows what was done; `failback resume` continues a run"
            fail("interrupted", hint, INTERRUPTED, "KeyboardInterrupt", as_json)
        except Exception as e:  # a bug, not a user error: say so in one line
            if os.environ.get("FAILBACK_DEBUG"):
                raise
            hint = "run again with FAILBACK_DEBUG=1 for the traceback and report it"
            fail(f"{type(e).__name__}: {e}", hint, INTERNAL_ERROR, type(e).__name__, as_json)

    return wrapper  # type: ignore[return-value]


# Consent is given on the command line, for this run: a variable left in a shell or a CI job must never pass a
# risk gate, overwrite a file or repair a source by itself
CONSENT_OPTIONS = frozenset({"--yes", "--force", "--break-lock", "--repair-fts"})


def name_variables(cmd: click.Command, prefix: str) -> None:
    """Give every option of ``cmd`` (and of its subcommands) without a variable of its own the variable
    ``<prefix>_<LONG OPTION NAME>`` — e.g. FAILBACK_BACKUP_VERIFY_ALL for ``--all``, where click's automatic name
    would follow the Python parameter (``all_``). Consent options (``CONSENT_OPTIONS``) read no variable."""
    for p in cmd.params:
        if isinstance(p, click.Option) and CONSENT_OPTIONS.intersection(p.opts):
            p.allow_from_autoenv = False
        elif isinstance(p, click.Option) and p.envvar is None and p.expose_value:
            p.envvar = f"{prefix}_{_envvar_word(max(p.opts, key=len))}"
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            name_variables(sub, f"{prefix}_{_envvar_word(name)}")


def _envvar_word(name: str) -> str:
    return name.lstrip("-").replace("-", "_").upper()


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; ``--help`` lists them from ``COMMANDS`` alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name][0].split(":")
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        name_variables(command, f"{ENVVAR_PREFIX}_{_envvar_word(cmd_name)}")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        stubs = [click.Command(name, help=COMMANDS[name][1]) for name in self.list_commands(ctx)]
        rows = [(stub.name or "", stub.get_short_help_str(limit)) for stub in stubs]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a usage error of a command given --json/--jsonl is one JSON object on stderr."""
        args = list(ctx.args)  # the command's arguments (invoke empties ctx.args)
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if not any(flag in args for flag in JSON_FLAGS):
                raise
            command = (e.ctx or ctx).command_path
            fail(e.format_message(), f"see `{command} --help`", e.exit_code, type(e).__name__, True)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the version is looked up only when asked for (``failback.__version__`` reads package metadata)."""
    if not value or ctx.resilient_parsing:
        return
    from .. import __version__

    click.echo(f"failback, version {__version__}")
    ctx.exit()


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENVVAR_PREFIX},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    allow_from_autoenv=False,  # FAILBACK_VERSION in the environment must not turn every command into --version
    callback=_show_version,
    help="Show the version and exit.",
)
def main() -> None:
    """failback: roll an app's SQLite data back from a native provider to sql.js, safely and verifiably."""


__all__ = ["COMMANDS", "INTERNAL_ERROR", "handle_errors", "main"]
