"""The docs cannot go stale: generated regions equal what the code generates now, every command has help text and
a section in docs/cli.md, every error class is in the runbook's troubleshooting table, and every `failback …`
command the runbook and README name exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click
import pytest

import failback.cli.report  # noqa: F401  (registers `failback report` until failback.cli imports it)
from failback.docs import GENERATORS, error_classes, raised_messages, regenerate, region, replace_region, walk_commands
from failback.docs import main as docs_main
from failback.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NAMED = r"(?:`|^\$ )failback ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?"


def root_command() -> tuple[click.Command, click.Context]:
    from failback.cli import main

    return main, click.Context(main, info_name="failback")


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generated_docs_are_current(name: str) -> None:
    old, new = regenerate(DOCS)[DOCS / name]
    assert old == new, f"docs/{name} is stale: run `make docs`"


def test_every_command_has_help_text() -> None:
    missing = [ctx.command_path for cmd, ctx in walk_commands(*root_command()) if not (cmd.help or "").strip()]
    assert missing == [], f"commands without help text: {missing}"


def test_every_command_has_a_section_in_the_cli_reference() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for _, ctx in walk_commands(*root_command()):
        assert f"\n## {ctx.command_path}\n" in text, f"{ctx.command_path} is missing from docs/cli.md"


def test_every_error_class_is_in_the_troubleshooting_table() -> None:
    table = region((DOCS / "ROLLBACK-PROCEDURES.md").read_text(encoding="utf-8"), "errors")
    for cls in error_classes():
        assert f"| {cls.exit_code} | `{cls.__name__}` |" in table, f"{cls.__name__} is missing from the runbook"


def test_messages_are_read_from_the_code() -> None:
    """f-strings become templates; the default hint is used when a call gives none."""
    found = {(c.__name__, m): h for c, m, h in raised_messages()}
    assert (
        found[("ConfigError", "{path}: no such config file")]
        == "create failback.toml (see docs/config.md) or pass -c PATH"
    )
    assert ("SourceChanged", "source changed after the snapshot ({why}); nothing was switched") in found


def test_named_commands_exist() -> None:
    """`failback X [Y]` (in a code span, or a command line in a code block) in the runbook and README names a real
    command, and a real subcommand of a group."""
    main, ctx = root_command()
    assert isinstance(main, click.Group)
    for doc in (DOCS / "ROLLBACK-PROCEDURES.md", ROOT / "README.md"):
        for first, second in re.findall(NAMED, doc.read_text("utf-8"), re.M):
            cmd = main.get_command(ctx, first)
            assert cmd is not None, f"{doc.name} names `failback {first}`, which does not exist"
            if isinstance(cmd, click.Group) and second:
                assert cmd.get_command(ctx, second), f"{doc.name} names `failback {first} {second}`"


def test_regions_keep_the_hand_written_text() -> None:
    begin = "<!-- generated: x (python -m failback.docs; do not edit by hand) -->"
    text = f"intro\n{begin}\nold\n<!-- end generated: x -->\nend\n"
    new = replace_region(text, "x", "new\n")
    assert new.startswith("intro\n") and new.endswith("-->\nend\n") and region(new, "x") == "new\n"
    with pytest.raises(InputError, match="no generated region 'y'"):
        region(text, "y")


def test_docs_command_rewrites_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m failback.docs` (its main): --check reports a stale file and writes nothing; a plain run rewrites
    only the generated region."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    cli = docs / "cli.md"
    cli.write_text(replace_region(cli.read_text("utf-8"), "cli", "stale\n"), "utf-8")
    assert docs_main(["--check", "--docs", str(docs)]) == 1
    assert "cli.md is stale" in capsys.readouterr().err
    assert region(cli.read_text("utf-8"), "cli") == "stale\n"  # --check writes nothing
    assert docs_main(["--docs", str(docs)]) == 0
    assert capsys.readouterr().out == f"updated {cli}\n"
    assert docs_main(["--check", "--docs", str(docs)]) == 0
    assert "\n## failback rollback\n" in region(cli.read_text("utf-8"), "cli")
