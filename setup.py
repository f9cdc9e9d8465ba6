"""Build hook (the rest of the metadata is in pyproject.toml): the wheel carries the Node files the sql.js runner
loads, taken at build time from the packages package-lock.json pins, never committed.

After setuptools' build_py, each file named in src/failback/engines/sqljs/nodefiles.py is copied from
``node_modules/<package>/`` into ``failback/engines/sqljs/vendor/<package>/`` with the package's LICENSE.
node_modules is the checkout's when ``npm ci`` installed exactly the lockfile's packages there (npm's hidden
lockfile records their versions and integrity hashes), else a fresh ``npm ci`` in the build's temporary folder
(npm checks every package against the lockfile's sha512 integrity). Neither possible: the build fails.
An editable install copies nothing: a checkout's runner loads node_modules (`make deps`).
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

SQLJS = Path(__file__).resolve().parent / "src" / "failback" / "engines" / "sqljs"
NODE = runpy.run_path(str(SQLJS / "nodefiles.py"))


def lock_matches(node_modules: Path, lock: dict[str, dict[str, str]]) -> bool:
    """True when ``node_modules`` holds each runner package at the lockfile's version and integrity hash."""
    try:
        installed = json.loads((node_modules / ".package-lock.json").read_text(encoding="utf-8"))["packages"]
    except (OSError, ValueError, KeyError):
        return False
    return all(
        installed.get(key, {}).get(field) == lock[key].get(field)
        for key in (f"node_modules/{package}" for package in NODE["NODE_FILES"])
        for field in ("version", "integrity")
    )


class BuildPyWithNodeFiles(build_py):
    """build_py, then the sql.js runner's Node files into the build tree (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        node_modules = self.locked_node_modules()
        vendor = Path(self.build_lib, "failback", "engines", "sqljs", NODE["VENDOR_DIR"])
        for package, names in NODE["NODE_FILES"].items():
            source = node_modules / package
            self.mkpath(str(vendor / package))
            for path in [*(source / name for name in names), source / "LICENSE"]:
                self.copy_file(str(path), str(vendor / package / path.name))

    def locked_node_modules(self) -> Path:
        """A node_modules holding exactly the packages package-lock.json pins (npm ci when needed)."""
        lock = json.loads((SQLJS / NODE["LOCKFILE"]).read_text(encoding="utf-8"))["packages"]
        if lock_matches(SQLJS / "node_modules", lock):
            return SQLJS / "node_modules"
        npm = shutil.which("npm")
        if npm is None:
            raise SetupError(
                f"building failback needs the Node packages {NODE['LOCKFILE']} pins (sql.js, hash-wasm): "
                f"{SQLJS / 'node_modules'} does not hold them and npm is not on PATH; install Node.js 18 or newer "
                "with npm, or run `npm ci` in src/failback/engines/sqljs, then build again"
            )
        work = Path(self.get_finalized_command("build").build_temp, "npm").resolve()
        self.mkpath(str(work))
        for name in ("package.json", NODE["LOCKFILE"]):
            shutil.copyfile(SQLJS / name, work / name)
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        if subprocess.run(command, cwd=work, check=False).returncode != 0 or not lock_matches(
            work / "node_modules", lock
        ):
            raise SetupError(f"`npm ci` in {work} did not install the packages {NODE['LOCKFILE']} pins")
        return work / "node_modules"


setup(cmdclass={"build_py": BuildPyWithNodeFiles})
