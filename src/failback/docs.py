"""Generated documentation: the CLI reference from the click commands, the config reference from the pydantic
model, the runbook's troubleshooting tables from the error classes and every place the code builds one, and its
table of known collations from ``collations.KNOWN``.

Each generated part sits between ``<!-- generated: NAME … -->`` and ``<!-- end generated: NAME -->`` in a file
under docs/; the hand-written text around it survives regeneration. ``python -m failback.docs`` rewrites the
regions (``--check``: exit 1 when a file is stale, change nothing); the tests regenerate them in memory.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import failback

from . import api
from .config import Config
from .db.collations import KNOWN, target_for
from .errors import FailbackError, InputError
from .files import write_text
from .metrics import metrics_reference
from .report.markdown import md_table

HELP_WIDTH = 100
PACKAGE = Path(__file__).parent


# -- regions ----------------------------------------------------------------------------------------
def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- generated: {name} (python -m failback.docs; do not edit by hand) -->",
        f"<!-- end generated: {name} -->",
    )


def region(text: str, name: str) -> str:
    """The body of the generated region ``name`` in ``text``."""
    begin, end = _markers(name)
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, re.S)
    if m is None:
        raise InputError(f"no generated region {name!r} (markers {begin} … {end})")
    return m.group(1)


def replace_region(text: str, name: str, body: str) -> str:
    """``text`` with the body of region ``name`` replaced by ``body``."""
    begin, end = _markers(name)
    old = region(text, name)
    return text.replace(f"{begin}\n{old}{end}", f"{begin}\n{body}{end}", 1)


# -- the CLI reference ------------------------------------------------------------------------------
def walk_commands(cmd: click.Command, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    """Every command under ``cmd`` (itself first), each with a context whose help renders at a fixed width."""
    yield cmd, ctx
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                sub_ctx = click.Context(sub, info_name=name, parent=ctx, terminal_width=HELP_WIDTH)
                yield from walk_commands(sub, sub_ctx)


def _root() -> tuple[click.Command, click.Context]:
    from .cli import main

    return main, click.Context(main, info_name="failback", terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)


def option_variables(cmd: click.Command) -> list[tuple[str, str]]:
    """(environment variable, option) for each option of ``cmd`` that reads one (``cli.name_variables``)."""
    found = []
    for p in cmd.params:
        if isinstance(p, click.Option) and p.envvar:
            names = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar)
            found += [(name, max(p.opts, key=len)) for name in names]
    return found


def cli_reference() -> str:
    """Each command's `--help`, in command order, after an index of the commands."""
    commands = list(walk_commands(*_root()))
    index = [
        f"- [`{ctx.command_path}`](#{_anchor(ctx.command_path)}): {cmd.get_short_help_str(80)}"
        for cmd, ctx in commands[1:]
    ]
    sections = [
        f"## {ctx.command_path}\n\n```text\n{cmd.get_help(ctx)}\n```\n{_variables(cmd)}" for cmd, ctx in commands
    ]
    return "\n".join(index) + "\n\n" + "\n".join(sections)


def _variables(cmd: click.Command) -> str:
    pairs = option_variables(cmd)
    return "\nEnvironment: " + ", ".join(f"`{var}` ({opt})" for var, opt in pairs) + ".\n" if pairs else ""


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


# -- the config reference ---------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:  # a type with a validator, such as config.ConfigPath
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" (optional)" if len(inner) < len(args) else "")
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table of {_type_name(args[0])} → {_type_name(args[1])}"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}" if v else "{}"
    return repr(v)


def _default(f: FieldInfo) -> str:
    if f.is_required():
        return "**required**"
    if f.default is None:
        return "not set"
    return f"`{_toml(f.default)}`"


def _sub_model(tp: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, is an array of tables) when a field holds a section."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, False
    if get_origin(tp) is list and isinstance(arg := get_args(tp)[0], type) and issubclass(arg, BaseModel):
        return arg, True
    return None


def _sections(model: type[BaseModel], path: str, array: bool) -> Iterator[tuple[str, list[list[str]]]]:
    rows, subs = [], []
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        key = f.alias or name
        if sub := _sub_model(f.annotation):
            subs.append((f"{path}.{key}" if path else key, *sub))
            if not sub[1]:
                continue
        rows.append([f"`{key}`", _type_name(f.annotation), _default(f), f.description or ""])
    title = f"[[{path}]]" if array else f"[{path}]" if path else "top level"
    if rows:
        yield title, rows
    for sub_path, sub_model, sub_array in subs:
        yield from _sections(sub_model, sub_path, sub_array)


def config_reference() -> str:
    """One table per failback.toml section: key, type, default, description."""
    out = []
    for title, rows in _sections(Config, "", False):
        out += [f"## {title}", "", *md_table(["key", "type", "default", "description"], rows)]
    return "\n".join(out)


# -- the troubleshooting tables ---------------------------------------------------------------------
def error_classes() -> list[type[FailbackError]]:
    """FailbackError and every subclass, by exit code then name."""
    found: list[type[FailbackError]] = []
    todo: list[type[FailbackError]] = [FailbackError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: (c.exit_code, c.__name__))


def errors_reference() -> str:
    """Exit code, class, cause (its docstring) and fix (its default hint) of every error."""
    rows = [
        [str(c.exit_code), f"`{c.__name__}`", (c.__doc__ or "").strip(), c.default_hint or "—"] for c in error_classes()
    ]
    return "\n".join(md_table(["exit", "error", "cause", "what to do (hint printed)"], rows))


def _render(node: ast.expr) -> str | None:
    """A message template from a string literal, f-string or concatenation ({name} for a value); else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                src = ast.unparse(v.value)
                out.append("{" + (src if re.fullmatch(r"[\w.]+", src) else "…") + "}")
            else:
                out.append(_render(v) or "")
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _render(node.left), _render(node.right)
        return None if left is None or right is None else left + right
    return None


def raised_messages(package: Path = PACKAGE) -> list[tuple[type[FailbackError], str, str]]:
    """(class, message, hint) for every error the code builds with a literal message, sorted and unique."""
    classes = {c.__name__: c for c in error_classes()}
    found: set[tuple[int, str, str, str]] = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            message = _render(node.args[0]) if name in classes else None
            if message is None:
                continue
            cls = classes[name]
            hint_node = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "hint"), None)
            )
            hint = (_render(hint_node) or "(varies)") if hint_node is not None else cls.default_hint
            found.add((cls.exit_code, name, message, hint))
    return [(classes[n], m, h) for _, n, m, h in sorted(found)]


def _code(text: str) -> str:
    """A Markdown code span that may itself hold backticks."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def messages_reference() -> str:
    """Every message the code can print after `error:`, with its exit code and the hint printed under it."""
    rows = [[str(c.exit_code), f"`{c.__name__}`", _code(m), h or "—"] for c, m, h in raised_messages()]
    return "\n".join(md_table(["exit", "error", "message (`{…}` is filled in)", "hint"], rows))


def collations_reference() -> str:
    """Every collation failback knows, with the collation the target uses instead and why."""
    rows = [[f"`{k.name}`", k.does, f"`{k.target}`", k.why] for k in KNOWN.values()]
    other, why = target_for("")
    rows.append(["any other name", "unknown to failback", f"`{other}`", why])
    return "\n".join(md_table(["collation", "what it does", "target uses", "why"], rows))


# -- the Python API reference ----------------------------------------------------------------------
def _annotation(a: Any) -> str:
    text = a if isinstance(a, str) else inspect.formatannotation(a)
    return text.replace("collections.abc.", "").replace("typing.", "")


def _parameter(p: inspect.Parameter) -> str:
    text = p.name if p.annotation is p.empty else f"{p.name}: {_annotation(p.annotation)}"
    return text if p.default is p.empty else f"{text} = {p.default!r}"


def _signature(name: str, fn: Callable[..., Any]) -> str:
    """``def name(…) -> …`` with the annotations as written, one parameter a line when it is long."""
    sig = inspect.signature(fn)
    params, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
        star = star or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        params.append(_parameter(p))
    ret = "" if sig.return_annotation is sig.empty else f" -> {_annotation(sig.return_annotation)}"
    one_line = f"def {name}({', '.join(params)}){ret}"
    if len(one_line) <= HELP_WIDTH:
        return one_line
    return f"def {name}(\n" + "".join(f"    {p},\n" for p in params) + f"){ret}"


def _class_section(name: str, cls: type) -> str:
    """A result class: where it lives, its docstring, its fields, properties and methods."""
    origin = f"{cls.__module__}.{cls.__qualname__}"
    lines = [
        f"### `{name}`",
        "",
        f"`{origin}`" + (f" (`failback.{name}` is another name for it)" if name != cls.__name__ else ""),
        "",
    ]
    lines += [inspect.getdoc(cls) or "", ""]
    if cls is failback.Config:
        lines += ["Fields: the sections of failback.toml, see [config.md](config.md).", ""]
    elif issubclass(cls, BaseModel):
        fields = ", ".join(f"`{n}: {_annotation(f.annotation)}`" for n, f in cls.model_fields.items())
        lines += [f"Fields: {fields}.", ""]
    elif dataclasses.is_dataclass(cls):
        fields = ", ".join(f"`{f.name}: {_annotation(f.type)}`" for f in dataclasses.fields(cls))
        lines += [f"Fields{' (frozen)' if cls.__dataclass_params__.frozen else ''}: {fields}.", ""]  # type: ignore[attr-defined]
    members = [
        (n, m) for n, m in vars(cls).items() if not n.startswith("_") and isinstance(m, property | types.FunctionType)
    ]
    for member_name, member in members:
        doc = (inspect.getdoc(member) or "").split("\n\n")[0].replace("\n", " ")
        call = "" if isinstance(member, property) else "()"
        lines.append(f"- `.{member_name}{call}`" + (f": {doc}" if doc else ""))
    return "\n".join(lines).rstrip() + "\n"


def python_api_reference() -> str:
    """Every public name of ``failback``: the functions (in the order failback.api defines them), the result
    classes, then the errors with their exit codes."""
    public = {n: getattr(failback, n) for n in failback.__all__ if n != "__version__"}
    functions = sorted(
        (n for n, o in public.items() if inspect.isfunction(o)),
        key=lambda n: (public[n].__module__ != api.__name__, public[n].__code__.co_firstlineno),
    )
    errors = [n for n, o in public.items() if isinstance(o, type) and issubclass(o, FailbackError)]
    results = sorted(n for n, o in public.items() if isinstance(o, type) and n not in errors)
    aliases = ("PathArg", "Progress", "StepListener", "RollbackRunner", "Mode", "Level")
    types_ = [f"`{n}` = `{_annotation(getattr(api, n))}`" for n in aliases]
    out = ["## Functions", ""]
    for n in functions:
        out += [
            f"### `failback.{n}`",
            "",
            "```text",
            _signature(n, public[n]),
            "```",
            "",
            inspect.getdoc(public[n]) or "",
            "",
        ]
    out += ["## Results", ""]
    out += [_class_section(n, public[n]) for n in results]
    out += ["## Types in the signatures", "", *[f"- {t}" for t in types_], ""]
    rows = [
        [f"`{n}`", str(public[n].exit_code), (public[n].__doc__ or "").strip()]
        for n in sorted(errors, key=lambda n: (public[n].exit_code, n))
    ]
    out += ["## Errors", "", *md_table(["error", "exit code", "cause"], rows)]
    return "\n".join(out)


# -- the files --------------------------------------------------------------------------------------
GENERATORS: dict[str, dict[str, Callable[[], str]]] = {
    "cli.md": {"cli": cli_reference},
    "config.md": {"config": config_reference},
    "python-api.md": {"python-api": python_api_reference},
    "ROLLBACK-PROCEDURES.md": {
        "errors": errors_reference,
        "messages": messages_reference,
        "collations": collations_reference,
        "metrics": metrics_reference,
    },
}


def regenerate(docs: Path) -> dict[Path, tuple[str, str]]:
    """For each generated file: (current text, regenerated text)."""
    out = {}
    for name, regions in GENERATORS.items():
        path = docs / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file", "run from the repository root, or pass --docs DIR") from None
        new = text
        for region_name, make in regions.items():
            new = replace_region(new, region_name, make())
        out[path] = (text, new)
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated regions of docs/ (or, with --check, report the stale files)."""
    parser = argparse.ArgumentParser(prog="python -m failback.docs", description=main.__doc__)
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs folder (default: ./docs)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale; write nothing")
    args = parser.parse_args(argv)
    try:
        files = regenerate(args.docs)
    except FailbackError as err:
        print(f"error: {err.message}\nhint: {err.hint}", file=sys.stderr)
        return err.exit_code
    stale = [path for path, (old, new) in files.items() if old != new]
    for path in stale:
        if args.check:
            print(f"{path} is stale: run `make docs`", file=sys.stderr)
        else:
            write_text(path, files[path][1], 0o644)
            print(f"updated {path}")
    return 1 if args.check and stale else 0


__all__ = ["main", "regenerate", "region", "replace_region"]

if __name__ == "__main__":
    sys.exit(main())
