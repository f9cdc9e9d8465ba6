"""The browser module web/failback.js in real headless Chromium, through failback's own browser harness: the
manifest export writes, the happy path (checked, persisted in IndexedDB and OPFS, switched), a tampered file
refused, an interrupted save that leaves the previous copy and the provider as they were, and a browser without
OPFS (IndexedDB only)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import apsw
import pytest

from failback import api
from failback.db.connect import connect
from failback.db.digest import table_digest
from failback.db.schema import digest_specs, read_schema
from failback.demo.sample import build_native
from failback.engines.sqljs.browser import run_page, sqljs_files
from failback.files import sha256_file
from failback.pipeline.target_manifest import manifest_path

pytestmark = pytest.mark.usefixtures("chromium")

WEB = Path(__file__).resolve().parents[1] / "web"


def exported(tmp_path: Path, name: str, notes: int) -> Path:
    """A native notes database of ``notes`` notes exported for sql.js as ``name`` (its manifest beside it)."""
    source = tmp_path / f"{name}.native.sqlite"
    build_native(source, notes=notes)
    target = tmp_path / name
    api.export(source, target)
    return target


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("web")
    return exported(folder, "a.sqlite", 120), exported(folder, "b.sqlite", 60)


def notes(target: Path) -> int:
    conn = connect(target, readonly=True)
    try:
        return int(conn.execute("SELECT count(*) FROM note").get)
    finally:
        conn.close()


def manifest(target: Path) -> dict[str, Any]:
    return json.loads(manifest_path(target).read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = free_port()  # one origin for every visit: IndexedDB is kept per origin


def visit(profile: Path, served: dict[str, Path], query: str = "") -> dict[str, Any]:
    """Open the test page in a fresh Chromium on ``profile`` (IndexedDB persists across visits); its report."""
    files: dict[str, Path | bytes] = {
        **sqljs_files(),
        "page.html": WEB / "test" / "page.html",
        "failback.js": WEB / "failback.js",
        "actions.js": WEB / "actions.js",
    }
    for name, target in served.items():
        files[name] = target
        files[f"{name}.manifest.json"] = manifest_path(target)
    return run_page(files, f"page.html?{query}", profile=profile, port=PORT).result


def install(name: str, pause: str = "") -> str:
    return f"database={name}&manifest={name}.manifest.json" + (f"&pause={pause}" if pause else "")


def test_export_writes_the_manifest(targets: tuple[Path, Path]) -> None:
    target = targets[0]
    doc = manifest(target)
    assert doc["format"] == "failback-target/1" and doc["file"] == "a.sqlite" and doc["provider"] == "sqljs"
    assert doc["size"] == target.stat().st_size and doc["sha256"] == sha256_file(target)
    conn = connect(target, readonly=True)
    try:
        specs = digest_specs(read_schema(conn))
        expected = [s.to_json() | table_digest(conn, s).to_json() for s in specs]
    finally:
        conn.close()
    assert doc["tables"] == expected and "note" in [t["table"] for t in expected]


def test_install_checks_persists_and_switches(targets: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = targets
    profile = tmp_path / "profile"
    served = {"a.sqlite": a, "b.sqlite": b}
    first = visit(profile, served, install("a.sqlite"))
    assert first["ok"], first
    assert first["stages"] == ["checked", "stored", "reread", "switched"] and first["notes"] == notes(a)
    sha_a, sha_b = manifest(a)["sha256"], manifest(b)["sha256"]
    assert first["stored"] == {
        "current": {"sha256": sha_a, "size": a.stat().st_size, "file": "a.sqlite"},
        "previous": None,
        "provider": "sqljs",
        "from": "opfs",  # OPFS's current.sqlite has the manifest's SHA-256
        "opfs": {"current": sha_a, "previous": None},
    }
    second = visit(profile, served, install("b.sqlite"))
    assert second["ok"] and second["notes"] == notes(b)
    assert second["stored"]["current"]["sha256"] == sha_b
    assert second["stored"]["previous"] == first["stored"]["current"]  # kept until the new copy was verified
    assert second["stored"]["from"] == "opfs" and second["stored"]["opfs"] == {"current": sha_b, "previous": sha_a}
    assert visit(profile, {})["stored"] == second["stored"]  # a new browser on the same profile: still there
    restored = visit(profile, {}, "restore")
    assert restored["restored"] == first["stored"]["current"]
    assert restored["stored"] == second["stored"] | {
        "current": second["stored"]["previous"],
        "previous": second["stored"]["current"],
        "opfs": {"current": sha_a, "previous": sha_b},
    }


def tampered_copy(target: Path, folder: Path) -> Path:
    """``target`` with one note's title changed in place: same size, other bytes."""
    copy = folder / "t.sqlite"
    shutil.copyfile(target, copy)
    conn = apsw.Connection(str(copy))
    conn.execute("UPDATE note SET title = upper(title) WHERE id = (SELECT min(id) FROM note)")
    conn.close()
    assert copy.stat().st_size == target.stat().st_size
    return copy


def test_tampered_file_is_refused(targets: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = targets
    profile = tmp_path / "profile"
    before = visit(profile, {"a.sqlite": a}, install("a.sqlite"))["stored"]
    bad = tampered_copy(a, tmp_path)
    shutil.copyfile(manifest_path(a), manifest_path(bad))  # a's manifest beside other bytes
    refused = visit(profile, {"t.sqlite": bad}, install("t.sqlite"))
    assert not refused["ok"] and refused["check"] == "sha256" and "the manifest says" in refused["error"]
    assert refused["stages"] == [] and refused["stored"] == before
    # a manifest made to match the tampered bytes, but not their content: the table digests refuse it
    doc = manifest(a) | {"size": bad.stat().st_size, "sha256": sha256_file(bad), "file": "t.sqlite"}
    manifest_path(bad).write_text(json.dumps(doc))
    refused = visit(profile, {"t.sqlite": bad}, install("t.sqlite"))
    assert not refused["ok"] and refused["check"] == "digest" and refused["error"].startswith("table note: ")
    assert refused["stored"] == before


@pytest.mark.parametrize("stage", ["stored", "reread"])
def test_interrupted_save_keeps_the_previous_copy(targets: tuple[Path, Path], tmp_path: Path, stage: str) -> None:
    a, b = targets
    profile = tmp_path / "profile"
    served = {"a.sqlite": a, "b.sqlite": b}
    before = visit(profile, served, install("a.sqlite"))["stored"]
    paused = visit(profile, served, install("b.sqlite", pause=stage))  # the browser is stopped there
    assert paused["paused"] == stage
    after = visit(profile, {})["stored"]
    assert after == before and after["current"]["file"] == "a.sqlite" and after["provider"] == "sqljs"
    assert after["from"] == "opfs" and after["opfs"] == {"current": manifest(a)["sha256"], "previous": None}
    done = visit(profile, served, install("b.sqlite"))  # the next attempt completes
    assert done["ok"] and done["stored"]["current"]["file"] == "b.sqlite"
    assert done["stored"]["previous"] == before["current"]
    assert done["stored"]["opfs"] == {"current": manifest(b)["sha256"], "previous": manifest(a)["sha256"]}


def test_without_opfs_saves_to_indexeddb(targets: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = targets
    profile = tmp_path / "profile"
    served = {"a.sqlite": a, "b.sqlite": b}
    first = visit(profile, served, install("a.sqlite") + "&noopfs")
    assert first["ok"] and first["stages"] == ["checked", "stored", "reread", "switched"]
    assert first["stored"]["current"]["sha256"] == manifest(a)["sha256"] and first["stored"]["provider"] == "sqljs"
    assert first["stored"]["from"] == "indexeddb" and first["stored"]["opfs"] == {"current": "none", "previous": "none"}
    # the same profile with OPFS: nothing there yet, so the copy still comes from IndexedDB
    assert visit(profile, {})["stored"] | {"opfs": None} == first["stored"] | {"opfs": None}
