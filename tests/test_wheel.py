"""The wheel works outside this repo: built from the checkout, installed into a fresh venv with pip, and run with
no node_modules near it (the sql.js files it needs are inside it). Slow (a venv and a pip install): generous
time limits, no wall-clock assertions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from failback.engines.sqljs.nodefiles import NODE_FILES, VENDOR_DIR

from .test_api import DOC, EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
SQLJS_IN_WHEEL = "failback/engines/sqljs"
# each test builds (isolated build env) or installs with pip, the module's wheel fixture counting in the first
pytestmark = pytest.mark.timeout(1800)


def run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (no time limit of its own: the test's applies) with PYTHONPATH and FAILBACK_* unset."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FAILBACK_")}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def build(kind: str, source: Path, outdir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m build --<kind>`` of ``source`` into ``outdir`` (an isolated build, as pip and CI build)."""
    return run([sys.executable, "-m", "build", f"--{kind}", "--outdir", outdir, source], cwd=outdir.parent, env=env)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    outdir = tmp_path_factory.mktemp("dist")
    proc = build("wheel", ROOT, outdir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = outdir.glob("failback-*.whl")
    return path


def python_api_example(python: Path, cwd: Path) -> None:
    """docs/python-api.md's examples, run in order as one script by the installed package, print what the doc
    shows (the same examples tests/test_api.py runs from the checkout)."""
    examples = EXAMPLE.findall(DOC.read_text(encoding="utf-8"))
    assert len(examples) >= 3
    script = cwd / "api_example.py"
    script.write_text("\n".join(code for code, _ in examples), encoding="utf-8")
    work = cwd / "api-example"
    work.mkdir()
    proc = run([python, script], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "".join(expected for _, expected in examples)


def test_wheel_carries_the_sqljs_files_and_no_node_modules(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    vendored = {
        f"{SQLJS_IN_WHEEL}/{VENDOR_DIR}/{package}/{Path(name).name}"
        for package, files in NODE_FILES.items()
        for name in (*files, "LICENSE")
    }
    assert vendored <= set(names)
    assert "failback/py.typed" in names and any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "node_modules" in n]


def test_installed_wheel_exports_and_verifies_outside_the_checkout(
    wheel: Path, native_db: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, failback = env_dir / "bin" / "python", env_dir / "bin" / "failback"
    proc = run([python, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", wheel], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # the venv's package, with the vendored sql.js: nothing of the checkout is used
    proc = run(
        [python, "-c", "import failback.engines.sqljs as s; print(s.__file__); print(*s.runner_modules().values())"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    site = (env_dir / "lib").resolve()
    for path in proc.stdout.split():
        assert Path(path).is_relative_to(site) and not Path(path).is_relative_to(ROOT), path
    assert f"/{VENDOR_DIR}/sql.js/sql-wasm.js" in proc.stdout
    installed_sqljs = Path(proc.stdout.split()[0]).parent

    target = tmp_path / "app-sqljs.sqlite"
    export = run([failback, "export", native_db, target], tmp_path)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr
    assert "equal in source, target and sql.js" in export.stdout
    verify = run([failback, "verify", native_db, target], tmp_path)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    assert "passed" in verify.stdout

    python_api_example(python, tmp_path)

    # an install that lost a vendored package (and has no node_modules) names it in one line
    shutil.rmtree(installed_sqljs / VENDOR_DIR / "hash-wasm")
    broken = run([failback, "export", "--force", native_db, target], tmp_path)
    assert broken.returncode == 2, broken.stderr
    assert broken.stderr.startswith("error: the Node package hash-wasm is missing: neither vendor/ nor node_modules/")


def test_build_without_node_modules_or_npm_fails_clearly(tmp_path: Path) -> None:
    """From the sdist (no node_modules in it) with no npm on PATH, the wheel build stops and says why."""
    sdists = tmp_path / "sdist"
    sdists.mkdir()
    proc = build("sdist", ROOT, sdists)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sdist,) = sdists.glob("failback-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    source = tmp_path / sdist.name.removesuffix(".tar.gz")
    no_npm = tmp_path / "bin"
    no_npm.mkdir()
    (tmp_path / "dist").mkdir()
    proc = build("wheel", source, tmp_path / "dist", env={"PATH": str(no_npm)})
    assert proc.returncode != 0 and not list((tmp_path / "dist").glob("*.whl"))
    assert "does not hold them and npm is not on PATH" in proc.stdout + proc.stderr
    assert "install Node.js 18 or newer" in proc.stdout + proc.stderr
