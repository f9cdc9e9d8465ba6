"""Fleet runs on real processes: a `dask scheduler` and two `dask worker` processes on 127.0.0.1, real tenant
databases, the real `failback fleet` command; a worker and the coordinator SIGKILLed mid-wave."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import psutil
import pytest
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

import failback
from failback.config import load_config
from failback.engines.sqljs.session import EAGER_WASM, SERVE
from failback.fleet.demo import create_fleet, damaged_tenants
from failback.fleet.journal import FleetJournal, FleetState, new_fleet
from failback.fleet.manifest import load_manifest
from failback.fleet.runner import TenantResult, open_client, run_fleet
from failback.journal import list_runs

from .conftest import file_hashes

DASK = str(Path(sys.executable).with_name("dask"))
PACED = ("tick", "monitor", "memory_monitor")  # Dask servers' periodic callbacks the embedded cluster paces


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A real Dask scheduler and worker processes (no nanny: a worker killed stays dead)."""

    def __init__(self, root: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.log = (root / "dask.log").open("w")
        self.scheduler = self._start(DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        self.workers = [self.add_worker() for _ in range(2)]
        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)

    def _start(self, *cmd: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def add_worker(self) -> subprocess.Popen[bytes]:
        return self._start(DASK, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard")

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    yield c
    c.stop()


def fleet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failback", "fleet", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def start_fleet(*args: str, cwd: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "failback", "fleet", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tenant_records(state: Path) -> int:
    """The tenants the fleet audit log has recorded a result for so far."""
    try:
        lines = (state / "audit.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(json.loads(line)["event"] == "fleet.tenant" for line in lines if line.endswith("}"))


def wait_for_records(state: Path, n: int, proc: subprocess.Popen[str]) -> None:
    while tenant_records(state) < n:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)


def sources(manifest: Path) -> dict[str, dict[str, str | None]]:
    """The bytes (hashes) of every tenant's source database and its -wal."""
    out = {}
    for t in load_manifest(manifest):
        db = t.config.parent / "native.sqlite"
        out[t.id] = file_hashes(db, Path(f"{db}-wal"))
    return out


def assert_end_state(manifest: Path, state: Path, corrupt: set[str], before: dict[str, dict[str, str | None]]) -> None:
    """Every good tenant switched exactly once (one run, done, verified, app config switched); every corrupt one
    refused with its source and app config untouched."""
    journal = FleetJournal(state).load()
    assert journal.status == "done", journal.reason
    for t in load_manifest(manifest):
        entry = journal.tenants[t.id]
        folder = t.config.parent
        app_env = (folder / "app.env").read_text()
        runs = [rd.load() for rd in list_runs(folder / ".failback")]
        if t.id in corrupt:
            assert entry.state == "refused" and entry.exit_code == 3, (t.id, entry)
            assert "DATABASE_PROVIDER=native" in app_env
            assert [r.status for r in runs] == ["refused"]
            assert sources(manifest)[t.id] == before[t.id]
        else:
            assert entry.state == "switched", (t.id, entry)
            assert [r.status for r in runs] == ["done"], (t.id, [(r.id, r.status) for r in runs])
            assert runs[0].step("verify").status == "done" and runs[0].step("switch").status == "done"
            assert "DATABASE_PROVIDER=sqljs" in app_env
            reports = sorted(p.name for p in (folder / ".failback" / "runs" / runs[0].id).glob("report.*"))
            assert reports == ["report.json"], (t.id, reports)  # `failback report` renders the others on demand


def fleet_metrics(state: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The fleet's metrics textfile, parsed by prometheus_client: (name, sorted labels) -> value."""
    text = (state / "metrics.prom").read_text(encoding="utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_wave_over_budget_halts_and_status_says_what_next(cluster: Cluster, tmp_path: Path) -> None:
    manifest = create_fleet(tmp_path / "f", 5, corrupt=2)
    before = sources(manifest)
    run = fleet("run", str(manifest), "--waves", "1,100%", "--max-failures", "1", "--yes", "--scheduler",
                cluster.address, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "fleet halted: wave 2" in run.stderr and "over its budget of 1" in run.stderr
    status = fleet("status", "--json", cwd=tmp_path)
    data = json.loads(status.stdout)
    # the first refusal (weight 2) is over the budget: the wave stops there, its tasks not started are cancelled
    assert data["status"] == "halted" and data["counts"]["refused"] == 1 and data["counts"]["failed"] == 0
    assert "failback fleet approve --wave 2" in data["next"] and "failback fleet resume" in data["next"]
    assert {f["tenant"] for f in data["failed"]} < damaged_tenants(5, 2)
    assert fleet_metrics(tmp_path / ".failback-fleet") == {
        ("failback_fleet_info", (("status", "halted"),)): 1,
        ("failback_fleet_wave", ()): 2,
        **{("failback_fleet_tenants", (("state", k),)): v for k, v in data["counts"].items()},
    }
    # resumed without an approval, the wave halts again before any tenant runs
    again = fleet("resume", "--scheduler", cluster.address, cwd=tmp_path)
    assert again.returncode == 2 and "fleet halted: wave 2" in again.stderr
    assert json.loads(fleet("status", "--json", cwd=tmp_path).stdout)["counts"] == data["counts"]
    # the operator approves wave 2 over its budget: resume finishes it, the refused tenants are not run again
    assert fleet("approve", "--wave", "2", cwd=tmp_path).returncode == 0
    resumed = fleet("resume", "--scheduler", cluster.address, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_end_state(manifest, tmp_path / ".failback-fleet", damaged_tenants(5, 2), before)
    done = fleet_metrics(tmp_path / ".failback-fleet")
    assert done[("failback_fleet_info", (("status", "done"),))] == 1 and done[("failback_fleet_wave", ())] == 3
    assert done[("failback_fleet_tenants", (("state", "switched"),))] == 3
    tenant_config = manifest.parent / "tenants" / "tenant-00000" / "failback.toml"
    audit = subprocess.run([sys.executable, "-m", "failback", "audit", "verify", "-c", str(tenant_config)], check=False)
    assert audit.returncode == 0


@pytest.mark.timeout(900)
def test_coordinator_killed_mid_wave_then_resume_finishes_every_tenant_once(cluster: Cluster, tmp_path: Path) -> None:
    manifest = create_fleet(tmp_path / "f", 12, corrupt=1)
    before = sources(manifest)
    state = tmp_path / ".failback-fleet"
    proc = start_fleet("run", str(manifest), "--waves", "1,100%", "--max-failures", "5", "--yes", "--scheduler",
                       cluster.address, cwd=tmp_path)  # fmt: skip
    wait_for_records(state, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert FleetJournal(state).load().status == "running"
    resumed = fleet("resume", "--scheduler", cluster.address, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_end_state(manifest, state, damaged_tenants(12, 1), before)


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_wave_loses_no_tenant_and_switches_none_twice(cluster: Cluster, tmp_path: Path) -> None:
    manifest = create_fleet(tmp_path / "f", 30, corrupt=3)
    before = sources(manifest)
    state = tmp_path / ".failback-fleet"
    proc = start_fleet("run", str(manifest), "--waves", "1,5,100%", "--max-failures", "8", "--yes",
                       "--scheduler", cluster.address, cwd=tmp_path)  # fmt: skip
    wait_for_records(state, 9, proc)  # inside wave 3, whose 3 damaged tenants weigh 6: within its budget of 8
    os.kill(cluster.workers[0].pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert_end_state(manifest, state, damaged_tenants(30, 3), before)
    report = fleet("report", "--format", "json", cwd=tmp_path)
    data = json.loads(report.stdout)
    assert [w["tenants"] for w in data["waves"]] == [1, 5, 24]
    assert data["counts"]["switched"] == 27 and data["seconds"]["p50"] > 0


def test_a_scheduler_that_does_not_answer_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    manifest = create_fleet(tmp_path / "f", 1)
    run = fleet("run", str(manifest), "--scheduler", f"tcp://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("error: the Dask scheduler tcp://127.0.0.1:") and "does not answer" in run.stderr
    assert len(run.stderr.splitlines()) == 2  # the error and its hint
    assert not (tmp_path / ".failback-fleet" / "fleet.json").exists()
    assert "DATABASE_PROVIDER=native" in (manifest.parent / "tenants" / "tenant-00000" / "app.env").read_text()


def test_the_coordinator_releases_each_task_once_its_result_is_recorded(cluster: Cluster, tmp_path: Path) -> None:
    """A big wave does not keep every finished tenant's task and result on the scheduler and workers until it
    ends: when the last result arrives, the cluster has forgotten the others."""
    journal = FleetJournal(tmp_path / "state")
    journal.start(new_fleet(journal, create_fleet(tmp_path / "f", 5), ["100%"], "100%", False, True))
    held: list[int] = []

    def on_result(wave: int, result: TenantResult | None, state: FleetState) -> None:
        if result is not None and len(held) == 0 and all(e.state != "dispatched" for e in state.tenants.values()):
            deadline = time.monotonic() + 30
            while (n := client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))) > 1:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            held.append(n)

    with open_client(0, cluster.address) as client:
        assert run_fleet(journal, client, on_result).counts()["switched"] == 5
    assert held == [1]  # the last tenant's task, still in the coordinator's hands


def test_the_embedded_cluster_paces_dasks_housekeeping() -> None:
    """Its workers do not sample their task threads' stacks every 10 ms for a dashboard it does not serve (~9 ms
    of a tenant's ~90 ms of worker CPU), and its servers check their event loop, memory and system each second or
    five, not every 20, 100 and 500 ms (idle: 13 ms of CPU a second instead of 102)."""

    def paces(server: Any) -> dict[str, float]:
        return {k: v.callback_time for k, v in server.periodic_callbacks.items() if k in PACED}

    with open_client(1, None, 1) as client:
        assert list(client.run(dask.config.get, "distributed.worker.profile.enabled").values()) == [False]
        workers = client.run(lambda dask_worker: paces(dask_worker))
        assert list(workers.values()) == [{"tick": 1000, "monitor": 5000, "memory_monitor": 1000}]
        assert client.run_on_scheduler(lambda dask_scheduler: paces(dask_scheduler)) == {"tick": 1000, "monitor": 5000}
    assert dask.config.get("distributed.worker.profile.enabled")  # this process's own config left as it was
    assert dask.config.get("distributed.admin.tick.interval") == "20ms"


def test_a_halt_on_the_embedded_cluster_is_one_line_and_resume_finishes_it(tmp_path: Path) -> None:
    """The first refusal halts the wave while the other tenant's task still runs: the cluster closes under it (its
    worker stops its Node), and the operator reads the halt and nothing else — no worker warning about the
    cancelled task, no traceback from a pipe closed under a read. Approved and resumed, every tenant ends once."""
    manifest = create_fleet(tmp_path / "f", 8, corrupt=4)
    before = sources(manifest)
    run = fleet("run", str(manifest), "--waves", "100%", "--max-failures", "1", "--workers", "1", "--yes",
                cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[0].startswith("error: fleet halted: wave 1") and lines[1].startswith("hint: "), run.stderr
    assert len(lines) == 2, run.stderr
    assert fleet("approve", "--wave", "1", cwd=tmp_path).returncode == 0
    resumed = fleet("resume", "--workers", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_end_state(manifest, tmp_path / ".failback-fleet", damaged_tenants(8, 4), before)


def test_the_embedded_cluster_leaves_the_dask_dashboard_port_alone() -> None:
    """Port 8787 taken (a Dask dashboard of the operator's own): no warning about it, and the embedded scheduler's
    HTTP server answers its health check on another port of 127.0.0.1, with no dashboard page."""
    with contextlib.ExitStack() as stack:
        held = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken (the module's `dask scheduler`): as good
            held.bind(("127.0.0.1", 8787))
            held.listen()
        seen = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        client = stack.enter_context(open_client(1, None, 1))
        host, port = client.run_on_scheduler(
            lambda dask_scheduler: (dask_scheduler.http_server.address, dask_scheduler.http_server.port)
        )
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=10) as health:
            assert health.read() == b"ok"
        with pytest.raises(urllib.error.HTTPError) as status:
            urllib.request.urlopen(f"http://{host}:{port}/status", timeout=10)
    assert (host, status.value.code) == ("127.0.0.1", 404) and port != 8787
    assert not [w for w in seen if "8787" in str(w.message)]


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_soak_200_tenants_with_a_worker_and_the_coordinator_killed(cluster: Cluster, tmp_path: Path) -> None:
    cluster.workers.append(cluster.add_worker())  # the worker test above left one
    manifest = create_fleet(tmp_path / "f", 200, corrupt=4)
    before = sources(manifest)
    state = tmp_path / ".failback-fleet"
    proc = start_fleet("run", str(manifest), "--max-failures", "10%", "--yes", "--scheduler", cluster.address,
                       cwd=tmp_path)  # fmt: skip
    wait_for_records(state, 40, proc)
    os.kill(cluster.workers[-1].pid, signal.SIGKILL)
    cluster.workers.append(cluster.add_worker())
    wait_for_records(state, 80, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = fleet("resume", "--scheduler", cluster.address, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_end_state(manifest, state, damaged_tenants(200, 4), before)


@pytest.mark.timeout(900)
def test_pause_between_waits_for_approve(cluster: Cluster, tmp_path: Path) -> None:
    manifest = create_fleet(tmp_path / "f", 3)
    run = fleet("run", str(manifest), "--waves", "1,100%", "--pause-between", "--approval-timeout", "0", "--yes",
                "--scheduler", cluster.address, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 4 and "fleet paused: wave 2 waits for `failback fleet approve --wave 2`" in run.stderr
    status = json.loads(fleet("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "awaiting-approval" and status["counts"]["switched"] == 1
    assert status["counts"]["pending"] == 2
    assert fleet("approve", "--wave", "2", cwd=tmp_path).returncode == 0
    resumed = fleet("resume", "--scheduler", cluster.address, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_end_state(manifest, tmp_path / ".failback-fleet", set(), sources(manifest))


def template_fleet(root: Path, tenants: int) -> Path:
    """A demo fleet whose tenants share ONE config, failback.template.toml with {tenant} placeholders (their own
    failback.toml removed), named by fleet.toml with a glob over the tenants' databases."""
    create_fleet(root, tenants)
    text = (root / "tenants" / "tenant-00000" / "failback.toml").read_text()
    for name in ("native.sqlite", "app-sqljs.sqlite", "app.env", "backups/primary", "backups/mirror"):
        text = text.replace(f'"{name}"', f'"tenants/{{tenant}}/{name}"')
    (root / "failback.template.toml").write_text('state_dir = "tenants/{tenant}/.failback"\n' + text)
    for config in root.glob("tenants/*/failback.toml"):
        config.unlink()
    manifest = root / "fleet.toml"
    manifest.write_text('config = "failback.template.toml"\nmatch = "tenants/{tenant}/native.sqlite"\n')
    return manifest


def test_one_template_config_rolls_every_tenant_back(cluster: Cluster, tmp_path: Path) -> None:
    manifest = template_fleet(tmp_path / "fleet", 3)
    plan = fleet("plan", "fleet.toml", "--json", cwd=manifest.parent)
    assert plan.returncode == 0 and json.loads(plan.stdout) == {"ok": True, "tenants": 3, "problems": []}, plan
    res = fleet("run", "fleet.toml", "--yes", "--waves", "1,100%", "--scheduler", cluster.address, cwd=manifest.parent)
    assert res.returncode == 0, res.stderr
    journal = FleetJournal(manifest.parent / ".failback-fleet").load()
    assert journal.status == "done" and journal.counts()["switched"] == 3, journal.counts()
    for folder in sorted((manifest.parent / "tenants").iterdir()):
        runs = [rd.load() for rd in list_runs(folder / ".failback")]
        assert [r.status for r in runs] == ["done"] and runs[0].config.endswith("failback.template.toml")
        assert "DATABASE_PROVIDER=sqljs" in (folder / "app.env").read_text()
    cfg = load_config(manifest.parent / "failback.template.toml", folder.name)  # the last tenant's run, on demand
    html = failback.report(cfg, format="html")
    assert html.startswith("<!doctype html>") and runs[0].id in html and "sqljs" in html
    assert not list(folder.glob(".failback/runs/*/report.html"))  # rendered, not written
    with Client(cluster.address, timeout="10s") as client:  # the workers' kept Node compiled sql.js up front
        workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    nodes = [p.cmdline() for w in workers for p in w.children(recursive=True) if p.name() == "node"]
    assert nodes and all(EAGER_WASM in c and SERVE in c for c in nodes), nodes
