"""Fleet throughput: N demo tenants of about 0.5 MB rolled back on an embedded Dask LocalCluster, full standard
verification. Prints tenants/s, p50/p95 seconds per tenant, where a tenant's time goes (mean seconds per step)
and the CPU seconds per tenant of each kind of process (the coordinator with its embedded scheduler, the Dask
workers, their Node processes), overall and for each tenth of the run (does a tenant cost more late in a big
fleet?), and saves them to bench/results/<date>-fleet-<N>.json (--no-save: print only).
The tenants are generated in a temporary folder removed at the end (about 2.3 MB per tenant); with --dir they are
kept there.
Usage: python bench/fleet.py [--tenants 200] [--workers 2] [--threads 2] [--dir DIR] [--no-save]"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import psutil

from failback.fleet.demo import create_fleet
from failback.fleet.journal import FleetJournal, FleetState, new_fleet
from failback.fleet.report import percentile
from failback.fleet.runner import THREADS, TenantResult, open_client, run_fleet
from failback.journal import list_runs


def cpu_seconds(workers: list[psutil.Process]) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process, the cluster's ``workers`` and their Node processes."""
    nodes = [child for w in workers for child in w.children(recursive=True) if child.name() == "node"]

    def used(procs: list[psutil.Process]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    return {"coordinator": used([psutil.Process()]), "workers": used(workers), "node": used(nodes)}


def per_tenant(before: dict[str, float], after: dict[str, float], tenants: int) -> dict[str, float]:
    """CPU ms per tenant of each kind of process between two ``cpu_seconds``."""
    return {kind: round((after[kind] - before[kind]) * 1000 / tenants, 1) for kind in after}


class Timeline:
    """Tenants/s and CPU ms per tenant of each kind of process, over each tenth of the run: a listener of
    ``run_fleet`` sampling the processes' CPU every ``len // 10`` results."""

    def __init__(self, workers: list[psutil.Process], tenants: int) -> None:
        self.workers, self.step, self.done, self.rows = workers, max(1, tenants // 10), 0, []
        self.last = (0, time.perf_counter(), cpu_seconds(workers))

    def __call__(self, wave: int, result: TenantResult | None, state: FleetState) -> None:
        if result is None:
            return
        self.done += 1
        if self.done % self.step and self.done != len(state.tenants):
            return
        done, at, cpu = self.done, time.perf_counter(), cpu_seconds(self.workers)
        n = done - self.last[0]
        rate = round(n / (at - self.last[1]), 2)
        self.rows.append({"done": done, "tenants_per_s": rate, "cpu_ms_per_tenant": per_tenant(self.last[2], cpu, n)})
        self.last = (done, at, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=THREADS, help="tenants a worker runs at a time")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    root = args.dir or Path(tempfile.mkdtemp(prefix="failback-fleet-bench-"))
    try:
        result = measure(root, args, load_before)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    report(result, args)


def measure(root: Path, args: argparse.Namespace, load_before: float) -> dict:
    """Generate the tenants under ``root``, roll them back on a fresh cluster and return the figures."""
    manifest = create_fleet(root / "fleet", args.tenants)
    journal = FleetJournal(root / "state")
    fleet = new_fleet(journal, manifest, ["100%"], "100%", False, True)
    with open_client(args.workers, None, args.threads) as client:
        workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
        journal.start(fleet)
        timeline = Timeline(workers, args.tenants)
        cpu_before = cpu_seconds(workers)
        start = time.perf_counter()
        state = run_fleet(journal, client, timeline)
        elapsed = time.perf_counter() - start
        cpu_after = cpu_seconds(workers)
    seconds = [e.seconds for e in state.tenants.values() if e.seconds is not None]
    steps: dict[str, list[float]] = defaultdict(list)
    for e in state.tenants.values():
        for rd in list_runs(Path(e.config).parent / ".failback"):
            for s in rd.load().steps:
                steps[s.name].append(s.seconds or 0.0)
    result = {
        "date": date.today().isoformat(),
        "tenants": args.tenants,
        "workers": args.workers,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "load_average_before": round(load_before, 2),
        "counts": state.counts(),
        "seconds": round(elapsed, 3),
        "tenants_per_s": round(args.tenants / elapsed, 2),
        "p50_s": round(percentile(seconds, 0.5), 4),
        "p95_s": round(percentile(seconds, 0.95), 4),
        "step_mean_s": {name: round(statistics.fmean(values), 4) for name, values in steps.items()},
        "cpu_ms_per_tenant": per_tenant(cpu_before, cpu_after, args.tenants),
        "timeline": timeline.rows,
    }
    return result


def report(result: dict, args: argparse.Namespace) -> None:
    """Print the figures and, unless --no-save, save them under bench/results/."""
    load_before = result["load_average_before"]
    cluster = f"{args.workers} workers × {args.threads} threads"
    print(f"{args.tenants} tenants, {cluster}: {result['counts']} (load before {load_before:.2f})")
    print(f"{'tenants/s':<22}{result['tenants_per_s']:10.2f}")
    print(f"{'p50 s/tenant':<22}{result['p50_s']:10.3f}")
    print(f"{'p95 s/tenant':<22}{result['p95_s']:10.3f}")
    for name, mean in result["step_mean_s"].items():
        print(f"{'  ' + name + ' (mean s)':<22}{mean:10.3f}")
    for kind, ms in result["cpu_ms_per_tenant"].items():
        print(f"{'CPU ms/tenant ' + kind:<22}{ms:10.1f}")
    print(f"\n{'done':>8}{'tenants/s':>11}" + "".join(f"{kind:>13}" for kind in result["cpu_ms_per_tenant"]))
    for row in result["timeline"]:
        cpu = "".join(f"{ms:13.1f}" for ms in row["cpu_ms_per_tenant"].values())
        print(f"{row['done']:8d}{row['tenants_per_s']:11.2f}{cpu}")
    if not args.no_save:
        out = Path(__file__).parent / "results" / f"{result['date']}-fleet-{args.tenants}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {out}")


if __name__ == "__main__":
    main()
