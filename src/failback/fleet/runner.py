"""Fleet execution on Dask distributed: one task per tenant (``run_tenant``, calling the public API on a worker),
waves run one after the other by the coordinator (``run_fleet``), each result recorded in the fleet journal and
audit log as it arrives, a wave halting the fleet when its failures exceed the budget.

Where the tasks run: an embedded ``LocalCluster`` of worker processes, or a running scheduler
(``tcp://HOST:PORT``, started with ``dask scheduler``, workers with ``dask worker``; dask-kubernetes and
dask-jobqueue start the same on a cluster). A task whose worker dies is run again on another worker by the
scheduler (``distributed.scheduler.allowed-failures``); the task is idempotent, so that never runs a tenant
twice. A worker plugin keeps the per-worker state: the failback modules loaded once, and what the worker ran.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, Worker, WorkerPlugin, as_completed, get_worker

from .. import api
from ..backup.retention import RESUMABLE
from ..config import DEFAULT_PROFILE, load_config
from ..engines import warm
from ..engines.sqljs.session import close_sessions, compile_eagerly
from ..errors import ConfigError, FailbackError
from ..journal import list_runs
from ..metrics import publish_fleet_metrics
from ..profiles import engine_for
from ..state import StatePaths
from .journal import TO_RUN, FleetJournal, FleetState, dispatch_marker
from .waves import failure_budget, failure_total, failure_weight, over_budget

PLUGIN = "failback-fleet"
ERROR_CHARS = 300  # a tenant's error as the journal keeps it: one line, this long at most
SAVE_SECONDS = 1.0  # within a wave, fleet.json is rewritten at most this often (a lost write is recovered: see
SAVE_SHARE = 0.02  # run_tenant), and at most this share of the time: 10,000 tenants' journal every ~2.5 s
INTERRUPTED = 4
THREADS = 2  # tenants a worker of the embedded cluster runs at a time: one's waits (fsync, its sql.js job) leave
# the core to the other (1,000 tenants on 2 cores, alternated: 13.8 tenants/s with 1, 16.5 with 2)
EMBEDDED = {  # the embedded cluster's Dask config: its housekeeping paced for a batch job no dashboard watches
    "distributed.worker.profile.enabled": False,  # no sampling of every task thread's stack every 10 ms
    "distributed.admin.tick.interval": "1s",  # each server's event-loop health check (20 ms by default)
    "distributed.admin.system-monitor.interval": "5s",  # each server's CPU, memory and I/O samples (500 ms)
    "distributed.worker.memory.monitor-interval": "1s",  # worker and nanny memory-limit checks (100 ms)
}  # idle, these three cost the coordinator and 2 workers 102 ms of CPU a second; paced so, 13 ms


@dataclass(frozen=True)
class TenantResult:
    """What one tenant's task did: its new state, its run and exit code, a one-line error, seconds, the worker."""

    tenant: str
    state: str
    run: str = ""
    exit_code: int = 0
    error: str = ""
    seconds: float = 0.0
    worker: str = ""


class FleetWorkerPlugin(WorkerPlugin):
    """Per-worker state: the failback modules a tenant needs, imported once when the worker joins; the kept sql.js
    process (started when the worker joins, its WebAssembly compiled optimized up front, used by every tenant's
    runs, stopped when it leaves); the tenants this worker ran."""

    name = PLUGIN

    def setup(self, worker: Worker) -> None:
        importlib.import_module("failback.api")  # the API and the rollback pipeline: loaded here, not per tenant
        compile_eagerly()  # a worker's Node runs thousands of jobs: sql.js compiled optimized once, at its start
        warm(engine_for(DEFAULT_PROFILE))  # Node and sql.js started before the first tenant arrives
        self.tenants = 0
        gc.freeze()  # what is loaded by now lives as long as the worker: full collections skip it (−40% GC time)

    def teardown(self, worker: Worker) -> None:
        close_sessions()


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


def state_for(exit_code: int) -> str:
    """A tenant's fleet state from its run's exit code."""
    if exit_code == 0:
        return "switched"
    if exit_code in (3, 5):  # refused by a data-safety check, or its source changed: nothing switched
        return "refused"
    return "lost" if exit_code == INTERRUPTED else "failed"


def _wait_for_other_run(state_dir: Path) -> None:
    """Block while another process runs this tenant (a task left over from a coordinator that died)."""
    lock = StatePaths(state_dir).lock
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def run_tenant(tenant: str, config: str, since: str, yes: bool) -> TenantResult:
    """Roll one tenant back, exactly once: a run of it started since ``since`` that finished (switched, refused,
    failed) is reported, not repeated; an unfinished one is resumed (the per-database resume); otherwise a new
    rollback runs, writing report.json alone (``failback report`` renders the others on demand). Runs on a Dask
    worker; never raises (a bug becomes exit 70 for this tenant)."""
    start = time.perf_counter()
    worker = ""
    try:
        worker = get_worker().address
        plugin = get_worker().plugins.get(PLUGIN)
        if isinstance(plugin, FleetWorkerPlugin):
            plugin.tenants += 1
    except ValueError:  # not on a worker (called directly)
        pass
    try:
        cfg = load_config(config, tenant)
        _wait_for_other_run(cfg.state_path)
        mine = [r for rd in list_runs(cfg.state_path) if rd.id >= since and (r := rd.load())]
        if finished := next((r for r in mine if r.status not in RESUMABLE), None):  # a task cut off from its result
            code = finished.exit_code or 0
            return TenantResult(tenant, state_for(code), finished.id, code, _one_line(finished.error), 0.0, worker)
        unfinished = next((r for r in mine if r.status in RESUMABLE), None)
        outcome = api.resume(cfg, unfinished.id) if unfinished else api.rollback(cfg, yes=yes, reports="json")
        error = _one_line(str(outcome.error)) if outcome.error else ""
        code = outcome.exit_code
        return TenantResult(tenant, state_for(code), outcome.run_id, code, error, time.perf_counter() - start, worker)
    except FailbackError as err:
        code, error = err.exit_code, _one_line(err.message)
    except Exception as err:  # a bug: this tenant fails, the fleet goes on
        code, error = 70, _one_line(f"{type(err).__name__}: {err}")
    return TenantResult(tenant, state_for(code), "", code, error, time.perf_counter() - start, worker)


@contextmanager
def open_client(workers: int, scheduler: str | None, threads: int = THREADS) -> Iterator[Client]:
    """A Dask client: on the scheduler at ``scheduler`` (its workers' threads are theirs: `dask worker --nthreads`),
    or on an embedded LocalCluster of ``workers`` worker processes running ``threads`` tenants at a time each;
    the worker plugin is registered either way."""
    logging.getLogger("distributed").setLevel(logging.ERROR)  # a cancelled task is not news to the operator
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise ConfigError(
                f"the Dask scheduler {scheduler} does not answer ({_one_line(str(err))})",
                "start it (`dask scheduler`) and its workers (`dask worker ADDRESS`), or leave --scheduler out",
            ) from None
        cluster = None
    else:
        with dask.config.set(EMBEDDED):
            cluster = LocalCluster(  # the scheduler's HTTP server (health, metrics) on a free loopback port, no
                n_workers=workers,  # dashboard: the port a Dask dashboard of yours may hold (8787) is left alone
                threads_per_worker=threads,
                processes=True,
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": False},
                silence_logs=logging.ERROR,  # its workers, as this process: a task a halt cancelled is no warning
            )
        client = Client(cluster)
    try:
        client.register_plugin(FleetWorkerPlugin(), name=PLUGIN)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


Listener = Callable[[int, TenantResult | None, FleetState], None]
"""``on_result(wave, result, state)``: a wave started (``result`` None) or one of its tenants finished."""


def run_fleet(
    journal: FleetJournal,
    client: Client,
    on_result: Listener | None = None,
    approval_timeout: float | None = None,
) -> FleetState:
    """Run the fleet's remaining waves in order, each finished before the next. Stops with ``status``
    ``halted`` when a wave's failures exceed its budget (unless that wave was approved), ``awaiting-approval``
    when ``pause_between`` waits longer than ``approval_timeout`` seconds for `fleet approve`, else ``done``.
    Holds the fleet's lock throughout (one coordinator at a time)."""
    journal.lock.acquire("fleet")
    try:
        state = journal.load()
        for wave in range(state.wave, len(state.waves)):
            if not _wave_may_start(journal, state, wave, approval_timeout):
                return state
            if not _run_wave(journal, client, state, wave, on_result or (lambda *a: None)):
                return state
        state.status, state.reason, state.wave = "done", "", len(state.waves)
        journal.save(state)
        journal.audit.append("fleet.done", state.counts())
        publish_fleet_metrics(journal.metrics, state)
        return state
    finally:
        journal.lock.release()


def _wave_may_start(journal: FleetJournal, state: FleetState, wave: int, timeout: float | None) -> bool:
    """Whether wave ``wave`` (from 0) may start: always the first, and any wave already under way; after a pause,
    only once approved (waiting up to ``timeout`` seconds; None: as long as it takes)."""
    started = any(state.tenants[t].state != "pending" for t in state.waves[wave])
    if wave == 0 or started or not state.pause_between:
        return True
    state.status, state.wave = "awaiting-approval", wave
    state.reason = f"wave {wave + 1} waits for `failback fleet approve --wave {wave + 1}`"
    journal.save(state)
    deadline = None if timeout is None else time.monotonic() + timeout
    while wave + 1 not in journal.approved():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def _run_wave(journal: FleetJournal, client: Client, state: FleetState, wave: int, on_result: Listener) -> bool:
    """Run wave ``wave``'s tenants that still need it, recording each result; False when the fleet halts."""
    ids = state.waves[wave]
    budget = failure_budget(state.max_failures, len(ids))
    approved = wave + 1 in journal.approved()
    todo = [t for t in ids if state.tenants[t].state in TO_RUN]
    codes = [e.exit_code or 0 for t in ids if (e := state.tenants[t]).state not in TO_RUN]
    if not approved and over_budget(codes, budget):  # a halted wave resumed without `fleet approve`
        return _halt(journal, state, wave, codes, budget)
    since = dispatch_marker()
    for t in todo:
        entry = state.tenants[t]
        entry.since = entry.since or since  # a tenant dispatched before keeps its first mark: its run is found
        entry.state = "dispatched"
    state.status, state.wave, state.reason = "running", wave, ""
    journal.save(state)
    journal.audit.append("fleet.wave.start", {"wave": wave + 1, "tenants": len(ids), "to_run": len(todo)})
    on_result(wave, None, state)
    entries = [state.tenants[t] for t in todo]
    configs, marks = [e.config for e in entries], [e.since for e in entries]
    # one graph for the wave, not one message per task: 10,000 tasks cost the coordinator ~6 s of CPU less; the
    # dict alone holds the futures (a task is released when its entry is popped)
    futures = dict(
        zip(client.map(run_tenant, todo, configs, marks, [state.yes] * len(todo), pure=False), todo, strict=True)
    )
    weight, next_save = failure_total(codes), time.monotonic() + SAVE_SECONDS
    for future in as_completed(futures):
        result = _result_of(future, futures.pop(future))  # released: the cluster forgets a task once recorded
        entry = state.tenants[result.tenant]
        entry.state, entry.run, entry.exit_code = result.state, result.run, result.exit_code
        entry.error, entry.seconds, entry.worker = result.error, round(result.seconds, 3), result.worker
        record = {k: v for k, v in asdict(result).items() if v not in ("", None)}
        journal.audit.append("fleet.tenant", record, sync=False)  # made durable by the journal's next save
        codes.append(result.exit_code)
        weight += failure_weight(result.exit_code)
        on_result(wave, result, state)
        if not approved and weight > budget:
            client.cancel(list(futures))  # the tasks not done; those not started stay dispatched: resume runs them
            return _halt(journal, state, wave, codes, budget)
        if (now := time.monotonic()) >= next_save:
            journal.save(state)
            next_save = time.monotonic() + max(SAVE_SECONDS, (time.monotonic() - now) / SAVE_SHARE)
    journal.save(state)
    journal.audit.append("fleet.wave.done", {"wave": wave + 1, **state.counts(wave)})
    publish_fleet_metrics(journal.metrics, state)
    return True


def _halt(journal: FleetJournal, state: FleetState, wave: int, codes: list[int], budget: int) -> bool:
    """Record that wave ``wave``'s failures (``codes``) exceed its budget and the fleet stops; returns False."""
    state.status, state.wave = "halted", wave
    state.reason = f"wave {wave + 1}: failures weigh {failure_total(codes)}, over its budget of {budget}"
    journal.save(state)
    journal.audit.append("fleet.halted", {"wave": wave + 1, "reason": state.reason, **state.counts(wave)})
    publish_fleet_metrics(journal.metrics, state)
    return False


def _result_of(future: Any, tenant: str) -> TenantResult:
    """A finished future's result; a task the scheduler gave up on (its workers kept dying) is lost."""
    try:
        result = future.result()
    except Exception as err:  # KilledWorker, a cancelled or lost task: run again by the next resume
        return TenantResult(tenant, "lost", "", INTERRUPTED, _one_line(f"{type(err).__name__}: {err}"))
    assert isinstance(result, TenantResult)
    return result
