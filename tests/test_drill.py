"""``failback drill``: a full rehearsal on copies that switches nothing and leaves every file of the app
byte-identical, writes a drill report and an audit record, and exits like ``check``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import failback
from failback.audit import AuditLog
from failback.config import load_config

from .conftest import file_hashes

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _app_hashes(demo: Path) -> dict[str, str | None]:
    """sha256 of every file of the demo app (its state folder aside, where failback keeps its own records)."""
    files = sorted(p for p in demo.rglob("*") if p.is_file() and ".failback" not in p.relative_to(demo).parts)
    return file_hashes(*files)


def test_drill_rehearses_everything_and_changes_no_file_of_the_app(demo_dir: Path) -> None:
    before = _app_hashes(demo_dir)
    result = failback.drill(demo_dir / "failback.toml")
    assert _app_hashes(demo_dir) == before and result.app_unchanged
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()
    assert result.outcome.status == "done"  # every step ran, the switch too: on the copies
    copies = result.folder / "app"
    assert "DATABASE_PROVIDER=sqljs" in (copies / "app.env").read_text()
    assert [s["step"] for s in result.steps][:7] == [
        "snapshot",
        "backup",
        "assess",
        "convert",
        "verify",
        "switch",
        "postcheck",
    ]
    assert all(s["status"] == "done" for s in result.steps)
    assert all(isinstance(s["seconds"], float) for s in result.steps)
    statements = result.outcome.results["verify"]["statements"]
    assert len(statements) == 5 and all(c["ok"] for c in statements)  # the demo's old statements run on the result
    # the demo has unsynced changes and rows only in the old file: a real rollback would stop at the gate
    assert result.exit_code == 3 and any("risk high" in b for b in result.blocked)
    assert any("not yet synced" in d for d in result.decisions)
    report = result.report_path.read_text()
    assert "## What would have blocked a rollback" in report and "byte-identical" in report
    assert json.loads((result.folder / "drill.json").read_text())["exit_code"] == 3
    cfg = load_config(demo_dir / "failback.toml")
    [record] = [r for r in AuditLog(cfg.state.audit_log).records() if r["event"] == "drill"]
    assert record["data"]["app_unchanged"] and record["data"]["folder"] == str(result.folder)
    assert failback.verify_audit(demo_dir / "failback.toml").ok


def test_drill_names_an_old_statement_the_result_breaks(demo_dir: Path, cli: Cli) -> None:
    cfg = demo_dir / "failback.toml"
    cfg.write_text(
        cfg.read_text().replace("statements = [", 'statements = [\n  "SELECT color FROM note WHERE id = ?",')
    )
    before = _app_hashes(demo_dir)
    done = cli("drill", "-c", str(cfg), "--json", "--folder", str(demo_dir / ".failback" / "scratch"))
    assert done.returncode == 3, done.stderr
    data = json.loads(done.stdout)
    assert _app_hashes(demo_dir) == before and data["app_unchanged"]
    assert data["status"] == "failed"
    assert any(
        "'SELECT color FROM note WHERE id = ?' fails on the result: no such column: color" in b for b in data["blocked"]
    )
