"""The command line is a thin layer over the public API: every module of failback.cli imports, of failback,
only the API (``failback``, ``failback.api``), the errors it raises (``failback.errors``), the config's defaults
its options show (``failback.config``: the default config file name and profile) and the CLI itself.

Read from the source with ``ast`` — module level, inside functions and under ``TYPE_CHECKING`` alike — so a
library module reached for by a command is caught whether or not the test run imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import failback
import failback.cli

CLI = Path(failback.cli.__file__).parent
ALLOWED = {"failback", "failback.api", "failback.errors", "failback.config", "failback.cli"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each failback module ``path`` imports; ``from failback import x`` counts as
    ``failback.x`` unless ``x`` is a name of the public API."""
    package = "failback.cli"  # every file here, __init__.py included, is in this package
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module == "failback":
                public = set(failback.__all__)
                found += [(node.lineno, module if a.name in public else f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, m) for line, m in found if m.split(".")[0] == "failback"]


def allowed(module: str) -> bool:
    return module in ALLOWED or module.startswith("failback.cli.")


def test_cli_modules_import_only_the_public_api() -> None:
    files = sorted(CLI.glob("*.py"))
    assert {"__init__.py", "run.py", "verify.py"} <= {f.name for f in files}
    bad = [f"{f.name}:{line}: {m}" for f in files for line, m in imported_modules(f) if not allowed(m)]
    assert bad == []


def test_the_check_sees_relative_imports_of_library_modules(tmp_path: Path) -> None:
    """The checker itself: relative imports resolve from failback.cli, public names are the API."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from .. import api, journal, verify\nfrom ..pipeline.driver import Rollback\nfrom . import common\n"
        "def f():\n    import failback.backup.sets\n    from ..errors import InputError\n",
        encoding="utf-8",
    )
    modules = [m for _, m in imported_modules(source)]
    assert modules == [
        "failback.api",
        "failback.journal",
        "failback",
        "failback.pipeline.driver",
        "failback.cli",
        "failback.backup.sets",
        "failback.errors",
    ]
    assert [m for m in modules if not allowed(m)] == [
        "failback.journal",
        "failback.pipeline.driver",
        "failback.backup.sets",
    ]
