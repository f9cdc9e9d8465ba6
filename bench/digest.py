#!/usr/bin/env python3
"""Content-digest throughput (issue 6) on the cached GRDB-like notes databases of bench/run.py.

Times failback's streaming digest of every table (``failback.db.digest.database_digests``) in one process and
with worker processes, against reading the same file with ``cp``, ``sqlite3 .backup``, ``VACUUM INTO`` and the
sqlite3 shell's own content hash ``.sha3sum``, in one run. Prints MB/s of *values* (TEXT/BLOB bytes, 8 per
INTEGER/REAL, the rowid included), rows/s, the ratio to each reference, and each process's peak memory.

Run with the project's venv: ``make bench-digest`` or ``.venv/bin/python bench/digest.py --sizes 100mb,1gb``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DEFAULT_DATA, SIZES, Sample, cached_databases, console, op_cli_backup, op_cp, op_vacuum

from failback.db.connect import connect, quote
from failback.db.digest import CHUNK_ROWS, usable_cpus
from failback.db.schema import digest_specs, read_schema

# One measurement, in a fresh interpreter: its own peak RSS (VmHWM) and its workers' (RUSAGE_CHILDREN).
MEASURE = """\
import json, resource, sys, time
from pathlib import Path
from failback.db.digest import database_digests
from failback.db.schema import digest_specs, read_schema
from failback.db.connect import connect
path, workers = Path(sys.argv[1]), int(sys.argv[2])
conn = connect(path, readonly=True)
specs = digest_specs(read_schema(conn))
conn.close()
t0 = time.perf_counter()
digests = database_digests(path, specs, workers=workers)
seconds = time.perf_counter() - t0
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "rows": sum(d.rows for d in digests.values()), "rss": hwm,
    "workers_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    "digests": {t: d.digest for t, d in digests.items()}}))
"""


def value_bytes(path: Path) -> tuple[int, int]:
    """(bytes of values, rows) over every digested table: what 'MB/s of values' divides."""
    conn = connect(path, readonly=True)
    try:
        total = rows = 0
        for spec in digest_specs(read_schema(conn)):
            sizes = [
                f"iif(typeof({q}) IN ('integer', 'real'), 8, coalesce(octet_length({q}), 0))"
                for q in map(quote, spec.columns)
            ]
            expr = " + ".join(["8"] * spec.rowid + sizes) or "0"
            got = conn.execute(f"SELECT count(*), coalesce(sum({expr}), 0) FROM {quote(spec.table)}").get
            rows, total = rows + got[0], total + got[1]
        return total, rows
    finally:
        conn.close()


def measure(path: Path, workers: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(workers)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"digest run failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def op_sha3sum(src: Path, work: Path) -> Sample:
    t0 = time.perf_counter()
    proc = subprocess.run(["sqlite3", "-readonly", str(src), ".sha3sum"], capture_output=True, text=True)
    return Sample(time.perf_counter() - t0, proc.returncode == 0, proc.stderr.strip()[:200])


def reference(fn: Any, src: Path, data: Path) -> Sample:
    with tempfile.TemporaryDirectory(dir=data, prefix="digest-") as tmp:
        return fn(src, Path(tmp))


def run_size(name: str, args: argparse.Namespace) -> dict[str, Any]:
    native, _, _ = cached_databases(SIZES[name], args.data)
    vbytes, rows = value_bytes(native)
    cpus = usable_cpus()
    refs = {"cp + fsync": op_cp, "VACUUM INTO": op_vacuum}
    if shutil.which("sqlite3"):
        refs |= {'sqlite3 ".backup"': op_cli_backup, "sqlite3 .sha3sum": op_sha3sum}
    times: dict[str, list[float]] = {k: [] for k in [*refs, "digest, 1 process", f"digest, {cpus} processes"]}
    memory: dict[str, tuple[int, int]] = {}
    digests = set()
    for _ in range(args.repeat):  # alternate the operations within each round
        for label, fn in refs.items():
            times[label].append(reference(fn, native, args.data).seconds)
        for label, workers in (("digest, 1 process", 1), (f"digest, {cpus} processes", cpus)):
            got = measure(native, workers)
            times[label].append(got["seconds"])
            memory[label] = (got["rss"], got["workers_rss"] if workers > 1 else 0)
            digests.add(json.dumps(got["digests"], sort_keys=True))
    if len(digests) != 1:
        raise SystemExit("the digests differ between runs: a bug")
    return {
        "size": name,
        "file_bytes": native.stat().st_size,
        "value_bytes": vbytes,
        "rows": rows,
        "cpus": cpus,
        "chunk_rows": CHUNK_ROWS,
        "seconds": {k: statistics.median(v) for k, v in times.items()},
        "peak_rss": memory,
    }


def show(res: dict[str, Any]) -> None:
    from rich.table import Table

    secs = res["seconds"]
    refs = [k for k in secs if not k.startswith("digest")]
    table = Table(
        title=f"{res['size']}: {res['value_bytes'] / 1e6:.0f} MB of values in {res['rows']:,} rows, "
        f"file {res['file_bytes'] / 1e6:.0f} MB, {res['cpus']} CPUs (median of rounds)"
    )
    for col in ["operation", "seconds", "MB/s of values", "k rows/s", "peak RSS (MiB)", *[f"÷ {r}" for r in refs]]:
        table.add_column(col, justify="left" if col == "operation" else "right")
    for op, s in secs.items():
        rss = res["peak_rss"].get(op)
        mem = "" if rss is None else f"{rss[0] / 2**20:.0f}"
        if rss and op != "digest, 1 process":
            mem += f" + {rss[1] / 2**20:.0f} per worker" if rss[1] else " (no worker: no table is big enough)"
        is_digest = op.startswith("digest")
        table.add_row(
            op,
            f"{s:.2f}",
            f"{res['value_bytes'] / s / 1e6:.0f}" if is_digest else "",
            f"{res['rows'] / s / 1e3:.0f}" if is_digest else "",
            mem,
            *[f"{s / secs[r]:.2f}×" for r in refs],
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100mb,1gb", help=f"comma-separated among {', '.join(SIZES)}")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; every figure is the median (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cache and scratch folder (bench/data)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    names = args.sizes.split(",")
    if unknown := [n for n in names if n not in SIZES]:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose among {', '.join(SIZES)}")
    args.data = args.data.resolve()
    results = [run_size(name, args) for name in names]
    for res in results:
        show(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
