"""Fleet throughput: N demo tenants of about 0.5 MB rolled back on an embedded Dask LocalCluster, full standard
verification. Prints tenants/s, p50/p95 seconds per tenant and where a tenant's time goes (mean seconds per
step). Usage: python bench/fleet.py [--tenants 200] [--workers 2] [--dir DIR]"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from failback.fleet.demo import create_fleet
from failback.fleet.journal import FleetJournal, new_fleet
from failback.fleet.report import percentile
from failback.fleet.runner import open_client, run_fleet
from failback.journal import list_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="failback-fleet-bench-"))
    manifest = create_fleet(root / "fleet", args.tenants)
    journal = FleetJournal(root / "state")
    fleet = new_fleet(journal, manifest, ["100%"], "100%", False, True)
    with open_client(args.workers, None) as client:
        journal.start(fleet)
        start = time.perf_counter()
        state = run_fleet(journal, client)
        elapsed = time.perf_counter() - start
    seconds = [e.seconds for e in state.tenants.values() if e.seconds is not None]
    steps: dict[str, list[float]] = defaultdict(list)
    for e in state.tenants.values():
        for rd in list_runs(Path(e.config).parent / ".failback"):
            for s in rd.load().steps:
                steps[s.name].append(s.seconds or 0.0)
    print(f"{args.tenants} tenants, {args.workers} workers: {state.counts()}")
    print(f"{'tenants/s':<22}{args.tenants / elapsed:10.2f}")
    print(f"{'p50 s/tenant':<22}{percentile(seconds, 0.5):10.3f}")
    print(f"{'p95 s/tenant':<22}{percentile(seconds, 0.95):10.3f}")
    for name, values in steps.items():
        print(f"{'  ' + name + ' (mean s)':<22}{statistics.fmean(values):10.3f}")


if __name__ == "__main__":
    main()
