#!/usr/bin/env python3
"""failback against the tools a person would use instead, on GRDB-like notes databases of 10 MB, 100 MB, 1 GB.

Run with the project's venv (``make bench``, ``make bench-quick``, or ``.venv/bin/python bench/run.py``).
See bench/README.md for what each row means and how to read the ratios. The databases are generated once
and cached in bench/data/ (git-ignored); results go to bench/results/<date>-<size>.json.

Every timed operation gets a fresh copy of the cached database (main file + -wal, fsynced, not timed) in its
own folder, so no operation sees another's leftovers (a checkpoint, a -shm, a warm destination). The
operations alternate within each round (the order rotates from round to round) and every figure is the
median of the rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_DATA = BENCH / "data"
DEFAULT_RESULTS = BENCH / "results"
MB = 1_000_000
SWIFT_COLLATION = "swiftLocalizedCaseInsensitiveCompare"
FTS4_FLOOR = (
    'CREATE VIRTUAL TABLE "note_fb4" USING fts4("title", "body", content="note", '
    'tokenize=unicode61 "remove_diacritics=2")'
)
SMALL = "≤ 1 MB standard rollback, whole CLI run"
GOALS = {  # issue 16: each measured in one run (ratios of medians), its goal and unit
    "standard / floor": (1.5, "×"),
    "emergency / floor": (1.0, "×"),
    "export / floor": (1.2, "×"),
    "no-FTS standard / VACUUM INTO": (3.5, "×"),
    SMALL: (1.0, "s"),
    "Python peak RSS": (300 * 2**20, "B"),
    "Node peak RSS / file": (1.1, "×"),
}
SMALL_NOTES = 400  # notes in the ≤ 1 MB database (`--quick`): 0.9 MB with its -wal
TICK = 0.1  # seconds between two samples of the per-core timeline
DEMO_LIVENESS = 0.5  # seconds: `failback demo`'s default liveness watch (its config template leaves it open)

try:  # the bench runs inside the project's venv; say how to get there instead of a traceback
    import apsw
    from rich.console import Console
    from rich.table import Table

    import failback
    from failback import demo
    from failback.demo.sample import build_native
    from failback.files import fsync_path
    from failback.state import StatePaths
except ImportError as _err:  # pragma: no cover - environment problem
    sys.exit(f"bench/run.py: {_err}. Run it with the project's venv: `make bench` (or `make deps` first).")

console = Console(width=None if sys.stdout.isatty() else 150)  # a log file gets the whole table


@dataclass(frozen=True)
class Size:
    """One benchmark database: the sample builder's parameters."""

    name: str
    notes: int
    body_words: int
    seed: int = 7


SIZES = {
    "10mb": Size("10mb", 5_000, 90),
    "100mb": Size("100mb", 50_000, 90),
    "1gb": Size("1gb", 500_000, 100),
}


# -- small file helpers ---------------------------------------------------------------------------------------
def db_files(path: Path) -> list[Path]:
    """The main file and its -wal (the -shm is rebuilt by SQLite; copying it would be wrong)."""
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in db_files(path))


def copy_db(src: Path, dest: Path) -> None:
    """Copy the main file and -wal of ``src`` to ``dest`` (+ -wal), fsynced: the untimed staging of a run."""
    for s, d in zip(db_files(src), (dest, Path(f"{dest}-wal")), strict=False):
        shutil.copyfile(s, d)
        fsync_path(d)
    fsync_path(dest.parent)


def remove_db(path: Path) -> None:
    for p in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))):
        p.unlink(missing_ok=True)


def casefold_compare(a: str, b: str) -> int:
    """Stand-in for Swift's localizedCaseInsensitiveCompare (GRDB registers the real one in the app)."""
    fa, fb = a.casefold(), b.casefold()
    return (fa > fb) - (fa < fb)


def open_db(path: Path, readonly: bool = False) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE
    conn = apsw.Connection(str(path), flags=flags)
    conn.create_collation(SWIFT_COLLATION, casefold_compare)
    return conn


# -- the cached databases ---------------------------------------------------------------------------------------
def generator_key(size: Size) -> dict[str, Any]:
    """What the cached database depends on: the builder's parameters and the builder's source text."""
    import failback.demo.sample as sample

    text = Path(sample.__file__).read_bytes()
    return {
        "notes": size.notes,
        "body_words": size.body_words,
        "seed": size.seed,
        "sample_py_sha256": hashlib.sha256(text).hexdigest()[:16],
    }


def cached_databases(size: Size, data: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(native, native without FTS, info) for ``size``, built on first use or when the generator changed."""
    folder = data / size.name
    native, nofts, meta_path = folder / "native.sqlite", folder / "nofts.sqlite", folder / "meta.json"
    key = generator_key(size)
    meta: dict[str, Any] = {}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("key") != key or not native.exists() or not nofts.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        console.print(f"building the {size.name} notes database (once; cached in {folder}) …", highlight=False)
        t0 = time.perf_counter()
        stats = build_native(native, notes=size.notes, body_words=size.body_words, seed=size.seed)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        derive_without_fts(native, nofts)
        derived = time.perf_counter() - t0
        meta = {
            "key": key,
            "stats": {k: getattr(stats, k) for k in stats.__dataclass_fields__},
            "build_seconds": round(built, 2),
            "nofts_seconds": round(derived, 2),
        }
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        console.print(f"  built in {built:.1f} s (+ {derived:.1f} s for the variant without FTS)", highlight=False)
    return native, nofts, meta


def derive_without_fts(native: Path, dest: Path) -> None:
    """A copy of ``native`` without its FTS5 tables and their sync triggers, vacuumed, with a commit in -wal."""
    tmp = dest.with_name(dest.name + ".tmp")
    remove_db(tmp)
    copy_db(native, tmp)
    conn = open_db(tmp)
    try:
        fts = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE sql LIKE 'CREATE VIRTUAL TABLE%fts5%'")]
        triggers = [
            r[0]
            for r in conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
            if any(f in r[1] for f in fts)
        ]
        with conn:
            for name in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            for name in fts:
                conn.execute(f'DROP TABLE "{name}"')
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with conn:  # like the app: its last commit is still in the -wal
            conn.execute(
                'UPDATE "note" SET "isSynced" = 0 WHERE "id" IN (SELECT "id" FROM "note" ORDER BY "id" DESC LIMIT 5)'
            )
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    finally:
        conn.close()
    os.replace(f"{tmp}-wal", f"{dest}-wal")
    os.replace(tmp, dest)
    Path(f"{tmp}-shm").unlink(missing_ok=True)


# -- what one timed operation returns ---------------------------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    ok: bool = True
    note: str = ""
    python_rss: int | None = None  # bytes: failback's own Python process (VmHWM at exit)
    children_rss: int | None = None  # bytes: RUSAGE_CHILDREN of that process (its largest reaped child, inflated)
    wait4_rss: int | None = None  # bytes: os.wait4 of the Python process (max of it and its children, inflated)
    load: float | None = None  # 1-minute load average just before the operation (other work on the machine)
    node_rss: int | None = None  # bytes: the Node/sql.js verifier, from its own report
    parts: dict[str, float] = field(default_factory=dict)  # sub-timings (floor halves, failback steps)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seconds": round(self.seconds, 4), "ok": self.ok}
        for k in ("note", "python_rss", "children_rss", "wait4_rss", "node_rss", "load"):
            if getattr(self, k) not in (None, ""):
                out[k] = getattr(self, k)
        if self.parts:
            out["parts"] = {k: round(v, 4) for k, v in self.parts.items()}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Op:
    """A timed operation: ``fn(source copy, work folder) -> Sample``; ``db`` is 'fts' or 'nofts'."""

    name: str
    db: str
    fn: Callable[[Path, Path], Sample]
    stage: bool = True  # give it a fresh copy of the database
    samples: list[Sample] = field(default_factory=list)

    def median(self) -> float | None:
        good = [s.seconds for s in self.samples if s.ok]
        return statistics.median(good) if good else None


# -- the tools a person would use -----------------------------------------------------------------------------
def op_cp(src: Path, work: Path) -> Sample:
    out = work / "out"
    out.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["cp", *map(str, db_files(src)), str(out)], check=True)
    for p in out.iterdir():
        fsync_path(p)
    fsync_path(out)
    return Sample(time.perf_counter() - t0)


def op_cli_backup(src: Path, work: Path) -> Sample:
    dest = work / "backup.sqlite"
    t0 = time.perf_counter()
    proc = subprocess.run(["sqlite3", "-readonly", str(src), f".backup '{dest}'"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return Sample(seconds, proc.returncode == 0, proc.stderr.strip()[:200])


def op_dump(src: Path, work: Path) -> Sample:
    dest = work / "dump.sqlite"
    cmd = f"set -o pipefail; sqlite3 -readonly '{src}' .dump | sqlite3 '{dest}'"
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    note = f"output incomplete: exit {proc.returncode}, {len(errors)} errors" if proc.returncode or errors else ""
    # Timed to the end either way: the errors are the point (no Swift collation in the sqlite3 CLI).
    detail = {"exit": proc.returncode, "errors": len(errors), "first_errors": errors[:3], "last_error": errors[-1:]}
    return Sample(seconds, True, note, detail=detail)


def vacuum_into(src: Path, dest: Path) -> None:
    conn = open_db(src, readonly=True)
    try:
        conn.execute("VACUUM INTO ?", (str(dest),))
    finally:
        conn.close()


def op_vacuum(src: Path, work: Path) -> Sample:
    t0 = time.perf_counter()
    vacuum_into(src, work / "vacuum.sqlite")
    return Sample(time.perf_counter() - t0)


def op_floor(src: Path, work: Path) -> Sample:
    """VACUUM INTO, then an FTS4 external-content index over note(title, body) built with 'rebuild'."""
    dest = work / "floor.sqlite"
    t0 = time.perf_counter()
    vacuum_into(src, dest)
    t1 = time.perf_counter()
    conn = open_db(dest)
    try:
        with conn:
            conn.execute(FTS4_FLOOR)
            conn.execute("""INSERT INTO "note_fb4"("note_fb4") VALUES('rebuild')""")
    finally:
        conn.close()
    t2 = time.perf_counter()
    return Sample(t2 - t0, parts={"vacuum_into": t1 - t0, "fts4_rebuild": t2 - t1})


# -- failback ----------------------------------------------------------------------------------------------------
# failback runs in its own Python process, started through this wrapper so that its own peak RSS can be read.
# Neither os.wait4 nor RUSAGE_SELF gives it on Linux: wait4 reports max(the process, every child it reaped) —
# the Node verifier included — and ru_maxrss also keeps the high-water mark of the address space replaced at
# exec, i.e. this bench process's RSS at spawn time. VmHWM in /proc/self/status starts afresh at exec: the wrapper
# records it at exit (the Node runner reports its own peak the same way).
WRAPPER = """\
import atexit, json, os, resource
def _rss():
    hwm = None
    try:
        with open("/proc/self/status") as f:
            hwm = next((int(l.split()[1]) for l in f if l.startswith("VmHWM:")), None)
    except OSError:
        pass
    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ["FAILBACK_BENCH_RSS"], "w") as f:
        json.dump({"vmhwm_kb": hwm, "self_kb": s, "children_kb": c}, f)
atexit.register(_rss)
from failback.cli import main
main(prog_name="failback")
"""


def bench_config() -> str:
    """The demo's failback.toml (its default liveness watch) with one backup layer (min_layers = 1), as TOML text."""
    cfg = tomllib.loads(demo.CONFIG.replace("LIVENESS", str(DEMO_LIVENESS)))
    cfg["backup"]["mirrors"] = []
    cfg["backup"]["min_layers"] = 1
    lines = ["# written by bench/run.py: the demo's settings with one backup layer"]
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def run_failback(
    args: list[str], cwd: Path, sampler: CoreSampler | None = None
) -> tuple[float, int, str, dict[str, int]]:
    """Run the failback CLI; return (wall seconds, exit code, stdout, rss) with rss in bytes. ``sampler`` samples
    the cores while it runs."""
    rss_file = cwd / ".bench-rss.json"
    env = {**os.environ, "FAILBACK_BENCH_RSS": str(rss_file), "PYTHONUNBUFFERED": "1"}
    with open(cwd / ".bench-stdout", "w+b") as out, open(cwd / ".bench-stderr", "w+b") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *args], cwd=cwd, stdout=out, stderr=err, env=env)
        if sampler is not None:
            sampler.start(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if sampler is not None:
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    rss = {"wait4": usage.ru_maxrss * 1024}
    if rss_file.exists():
        r = json.loads(rss_file.read_text())
        rss |= {"self": (r["vmhwm_kb"] or r["self_kb"]) * 1024, "children": r["children_kb"] * 1024}
    if proc.returncode != 0 and not stdout.strip():
        stdout = stderr
    return seconds, proc.returncode, stdout, rss


# -- the per-core timeline --------------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies of each CPU, from /proc/stat (idle and iowait are not busy)."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                out.append((sum(values) - values[3] - values[4], sum(values)))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of process ``root`` and its descendants so far (children reaped included)."""
    parent, spent = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        spent[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += spent.get(pid, 0)
        todo += [p for p, pp in parent.items() if pp == pid]
    return total / CLOCK_TICKS


class CoreSampler:
    """Samples each CPU's busy time (/proc/stat: the whole machine) and the CPU time of failback's process tree
    every :data:`TICK` seconds in a thread, while one command runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, list[tuple[int, int]], float]] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, pid: int) -> None:
        last = 0.0
        while True:
            self.samples.append((time.time(), cpu_times(), max(last, tree_cpu(pid))))
            last = self.samples[-1][2]  # a reaped child's time moves to its parent: never count it twice
            if self._done.wait(TICK):
                self.samples.append((time.time(), cpu_times(), last))
                return


def timeline(sampler: CoreSampler, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per slot between two samples: its start (s from the first sample), each core's busy share, failback's CPU
    seconds and the step running at its middle (from state.json: each step's start and seconds); and per step:
    wall seconds, CPU seconds on all cores (the machine's: anything else running counts), failback's own CPU
    seconds and the mean number of busy cores."""
    spans = [(s["started"], s["started"] + s["seconds"], s["name"]) for s in steps if s.get("started") is not None]
    spans = [x for x in spans if x[1] >= x[0]]

    def step_at(t: float) -> str:
        hit = next((name for a, b, name in spans if a <= t <= b), None)
        if hit:
            return hit
        if not spans or t < min(a for a, _, _ in spans):
            return "start-up"
        return "exit" if t > max(b for _, b, _ in spans) else "between steps"

    s0 = sampler.samples[0][0] if sampler.samples else 0.0
    slots, per_step = [], {}
    for (t1, c1, f1), (t2, c2, f2) in itertools.pairwise(sampler.samples):
        busy = [round((b2 - b1) / (n2 - n1), 3) if n2 > n1 else 0.0 for (b1, n1), (b2, n2) in zip(c1, c2, strict=False)]
        step = step_at((t1 + t2) / 2)
        slots.append({"t": round(t1 - s0, 2), "step": step, "busy": busy, "failback_cpu_s": round(f2 - f1, 3)})
        row = per_step.setdefault(step, {"step": step, "wall_s": 0.0, "cpu_s": 0.0, "failback_cpu_s": 0.0})
        row["wall_s"] += t2 - t1
        row["cpu_s"] += sum(busy) * (t2 - t1)
        row["failback_cpu_s"] += f2 - f1
    for row in per_step.values():
        row["mean_cores_busy"] = round(row["cpu_s"] / row["wall_s"], 2) if row["wall_s"] else None
        for k in ("wall_s", "cpu_s", "failback_cpu_s"):
            row[k] = round(row[k], 3)
    return {
        "tick_s": TICK,
        "cores": len(slots[0]["busy"]) if slots else 0,
        "slots": slots,
        "steps": list(per_step.values()),
    }


CALIBRATION = StatePaths(Path(".failback")).calibration  # failback's per-machine throughput calibration
calibration_cache: Path | None = None  # set by warm_up(); copied into every app folder's .failback/


def app_folder(src: Path) -> None:
    """Turn the folder holding the staged source into an app folder: app.env, failback.toml and, after the
    warm-up, failback's cached calibration (as on a machine where `failback assess` has run once)."""
    (src.parent / "app.env").write_text(demo.APP_ENV, encoding="utf-8")
    (src.parent / "failback.toml").write_text(bench_config(), encoding="utf-8")
    if calibration_cache is not None and calibration_cache.exists():
        (src.parent / ".failback").mkdir(exist_ok=True)
        shutil.copyfile(calibration_cache, src.parent / CALIBRATION)


def warm_up(work: Path) -> dict[str, Any]:
    """`failback assess` once on a small database, untimed, to get failback's calibration file; returns its cost."""
    global calibration_cache
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "native.sqlite"
    build_native(src, notes=500)
    app_folder(src)
    seconds, code, _, _ = run_failback(["assess", "-c", "failback.toml", "--json"], work)
    made = work / CALIBRATION
    out: dict[str, Any] = {"assess_seconds": round(seconds, 3), "exit": code, "calibration": None}
    if made.exists():
        calibration_cache = work.parent / CALIBRATION.name
        shutil.copyfile(made, calibration_cache)
        out["calibration"] = json.loads(made.read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    return out


def timed_failback(
    args: list[str], src: Path, sampler: CoreSampler | None = None
) -> tuple[Sample, int, dict[str, Any] | None]:
    """Run failback with ``--json`` in the app folder of ``src``: the sample, exit code and parsed output
    (None, with the sample marked failed, when stdout is not JSON)."""
    app_folder(src)
    seconds, code, stdout, rss = run_failback(args, src.parent, sampler)
    sample = Sample(seconds, python_rss=rss.get("self"), children_rss=rss.get("children"), wait4_rss=rss["wait4"])
    try:
        return sample, code, json.loads(stdout)
    except json.JSONDecodeError:
        sample.ok, sample.note = False, f"exit {code}: {stdout.strip()[-300:]}"
        return sample, code, None


def rollback_op(mode: str, cores: bool = False) -> Callable[[Path, Path], Sample]:
    """A rollback in ``mode``; ``cores``: with its per-core timeline (``detail["timeline"]``)."""

    def op(src: Path, work: Path) -> Sample:
        args = ["rollback", "-c", "failback.toml", "--mode", mode, "--yes", "--json"]
        args += ["--force", "--reason", "benchmark"]  # the 1 GB file is above assess.memory_critical_mb
        sampler = CoreSampler() if cores else None
        sample, code, doc = timed_failback(args, src, sampler)
        if doc is None:
            return sample
        if code != 0 or doc.get("status") != "done":
            sample.ok, sample.note = False, f"exit {code}, status {doc.get('status')}: {doc.get('error')}"
        run_dir = StatePaths(src.parent / ".failback").run(str(doc.get("run")))
        if (run_dir / "state.json").exists():
            state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
            for step in state["steps"]:
                if step.get("seconds") is not None:
                    sample.parts[step["name"]] = step["seconds"]
            sample.detail["sub"] = sub_timings(state)
            if sampler is not None:
                sample.detail["timeline"] = timeline(sampler, state["steps"])
        if (run_dir / "report.json").exists():
            report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
            sample.node_rss = (report.get("verification") or {}).get("sqljs_peak_rss")
        return sample

    return op


def sub_timings(state: dict[str, Any]) -> dict[str, float]:
    """Timings reported inside the step results (convert phases, the background backup)."""
    out: dict[str, float] = {}
    steps = {s["name"]: s for s in state["steps"]}
    conv = (steps.get("convert") or {}).get("result") or {}
    phases = {k: v for k, v in (conv.get("seconds") or {}).items() if isinstance(v, int | float)}
    for k, v in phases.items():
        if k != "total":
            out[f"convert: build {k}"] = v
    step = (steps.get("convert") or {}).get("seconds")
    if step is not None and "total" in phases:
        out["convert: outside build_target"] = step - phases["total"]
    background = ((steps.get("backup") or {}).get("result") or {}).get("background_seconds")
    if isinstance(background, int | float):  # the backup runs beside the other steps; its step only joins it
        out["backup: in the background"] = background
    return out


def op_export(src: Path, work: Path) -> Sample:
    args = ["export", "native.sqlite", "exported.sqlite", "--config", "failback.toml", "--json"]
    sample, code, doc = timed_failback(args, src)
    if doc is None:
        return sample
    if code != 0:
        sample.ok, sample.note = False, f"exit {code}"
    sample.node_rss = (doc.get("verification") or {}).get("sqljs_peak_rss")
    sample.parts = {f"build.{k}": v for k, v in (doc.get("build_seconds") or {}).items()}
    if (doc.get("verification") or {}).get("seconds") is not None:
        sample.parts["verify"] = doc["verification"]["seconds"]
    return sample


def op_startup(src: Path, work: Path) -> Sample:
    seconds, code, _, rss = run_failback(["--version"], work)
    return Sample(seconds, code == 0, python_rss=rss.get("self"))


# -- one size -------------------------------------------------------------------------------------------------
SMALL_OP = "failback rollback (≤ 1 MB)"


def make_ops(have_sqlite3: bool, small: bool) -> list[Op]:
    """The operations of one size; ``small``: with the standard rollback of the ≤ 1 MB database."""
    ops = [Op("cp + fsync", "fts", op_cp)]
    if have_sqlite3:
        ops += [Op('sqlite3 ".backup"', "fts", op_cli_backup), Op("sqlite3 .dump | sqlite3", "fts", op_dump)]
    ops += [
        Op("VACUUM INTO", "fts", op_vacuum),
        Op("floor: VACUUM INTO + FTS4", "fts", op_floor),
        Op("failback rollback", "fts", rollback_op("standard", cores=True)),
        Op("failback rollback --mode emergency", "fts", rollback_op("emergency")),
        Op("failback export", "fts", op_export),
        Op("VACUUM INTO (no FTS)", "nofts", op_vacuum),
        Op("failback rollback (no FTS)", "nofts", rollback_op("standard")),
        Op("failback start-up (--version)", "fts", op_startup, stage=False),
    ]
    return ops + ([Op(SMALL_OP, "small", rollback_op("standard"))] if small else [])


def cli_vacuum_check(src: Path, work: Path) -> dict[str, Any]:
    """The sqlite3 CLI's own VACUUM INTO on this database (not timed: it fails without the Swift collation)."""
    work.mkdir(parents=True)
    dest = work / "cli-vacuum.sqlite"
    proc = subprocess.run(["sqlite3", "-readonly", str(src), f"VACUUM INTO '{dest}'"], capture_output=True, text=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"exit": proc.returncode, "stderr": proc.stderr.strip()[:300]}


def run_size(size: Size, args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    native, nofts, meta = cached_databases(size, args.data)
    sources = {"fts": native, "nofts": nofts}
    if args.quick:
        sources["small"] = cached_databases(Size("1mb", SMALL_NOTES, 60), args.data)[0]
    source_bytes = {k: db_bytes(p) for k, p in sources.items()}
    have_sqlite3 = shutil.which("sqlite3") is not None
    ops = make_ops(have_sqlite3, args.quick)
    work_root = args.data / "work"
    shutil.rmtree(work_root, ignore_errors=True)
    notes: list[str] = []
    warm: dict[str, Any] | None = None
    if not args.cold_calibration:
        warm = warm_up(work_root / "warm-up")
        cal = warm.get("calibration") or {}
        if cal:
            notes.append(
                f"failback's calibration (cached per machine in {CALIBRATION}) was measured once before "
                f"the runs ({cal.get('seconds', '?')} s) and copied into every app folder; --cold-calibration "
                "makes every run measure it"
            )
    cli_vacuum: dict[str, Any] | None = None
    if have_sqlite3:
        cli_vacuum = cli_vacuum_check(native, work_root / "cli-vacuum")
        if cli_vacuum["exit"] != 0:
            notes.append(f"sqlite3 CLI VACUUM INTO fails on this database: {cli_vacuum['stderr']}")
    console.print(
        f"[bold]{size.name}[/]: {source_bytes['fts'] / MB:.1f} MB (+ variant without FTS "
        f"{source_bytes['nofts'] / MB:.1f} MB); {len(ops)} operations × {args.repeat} rounds",
        highlight=False,
    )
    for r in range(args.repeat):
        shift = r % len(ops)
        for op in ops[shift:] + ops[:shift]:
            work = work_root / f"r{r}-{slug(op.name)}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            src = work / "native.sqlite"
            if op.stage:
                copy_db(sources[op.db], src)
            load = os.getloadavg()[0]
            try:
                sample = op.fn(src, work)
            except (subprocess.CalledProcessError, apsw.Error, OSError) as err:
                sample = Sample(0.0, False, f"{type(err).__name__}: {err}"[:300])
            sample.load = round(load, 2)
            op.samples.append(sample)
            shutil.rmtree(work, ignore_errors=True)
            flag = "" if sample.ok else f"  [red]FAILED[/] {sample.note}"
            console.print(
                f"  round {r + 1}: {op.name:<36} {sample.seconds:8.2f} s  (load {load:.1f}){flag}", highlight=False
            )
    shutil.rmtree(work_root, ignore_errors=True)
    result = summarize(size, ops, source_bytes, args.repeat)
    result["machine"] = machine
    result["database"] = meta
    result["notes"] = notes
    result["cli_vacuum_into"] = cli_vacuum
    result["warm_up"] = warm
    if not have_sqlite3:
        result["notes"].append("sqlite3 CLI not found: its rows were skipped (fix: apt-get install sqlite3)")
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    return result


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def summarize(size: Size, ops: list[Op], source_bytes: dict[str, int], repeat: int) -> dict[str, Any]:
    med = {op.name: op.median() for op in ops}

    def ratio(a: str, b: str) -> float | None:
        x, y = med.get(a), med.get(b)
        return round(x / y, 3) if x and y else None

    rows: dict[str, Any] = {}
    for op in ops:
        m = med[op.name]
        good = [s for s in op.samples if s.ok]
        rows[op.name] = {
            "database": op.db,
            "median_seconds": round(m, 4) if m is not None else None,
            "min_seconds": round(min(s.seconds for s in good), 4) if good else None,
            "max_seconds": round(max(s.seconds for s in good), 4) if good else None,
            "mb_per_s": round(source_bytes[op.db] / MB / m, 1) if m else None,
            "python_peak_rss": max((s.python_rss for s in op.samples if s.python_rss), default=None),
            "node_peak_rss": max((s.node_rss for s in op.samples if s.node_rss), default=None),
            "parts_median": median_parts(good),
            "samples": [s.to_json() for s in op.samples],
        }
    floor, vac = "floor: VACUUM INTO + FTS4", "VACUUM INTO"
    ratios = {
        "standard / floor": ratio("failback rollback", floor),
        "emergency / floor": ratio("failback rollback --mode emergency", floor),
        "export / floor": ratio("failback export", floor),
        "no-FTS standard / VACUUM INTO": ratio("failback rollback (no FTS)", "VACUUM INTO (no FTS)"),
        "standard / VACUUM INTO": ratio("failback rollback", vac),
        "emergency / VACUUM INTO": ratio("failback rollback --mode emergency", vac),
        "export / VACUUM INTO": ratio("failback export", vac),
    }
    failback_rows = [r for name, r in rows.items() if name.startswith("failback") and "start-up" not in name]
    py_peak = max((r["python_peak_rss"] or 0 for r in failback_rows), default=0) or None
    node_peak = max((r["node_peak_rss"] or 0 for r in failback_rows), default=0) or None
    per_file = [  # the ≤ 1 MB database aside: Node's own ~50 MiB dwarfs it
        r["node_peak_rss"] / source_bytes[r["database"]]
        for r in failback_rows
        if r["node_peak_rss"] and r["database"] != "small"
    ]
    measured = {
        **{k: ratios[k] for k in ("standard / floor", "emergency / floor", "export / floor")},
        "no-FTS standard / VACUUM INTO": ratios["no-FTS standard / VACUUM INTO"],
        SMALL: med.get(SMALL_OP),
        "Python peak RSS": py_peak,
        "Node peak RSS / file": round(max(per_file), 3) if per_file else None,
    }
    targets = [
        {"check": k, "measured": measured[k], "goal": goal, "unit": unit, "met": _met(measured[k], goal)}
        for k, (goal, unit) in GOALS.items()
    ]
    loads = [s.load for op in ops for s in op.samples if s.load is not None]
    standard = next(o for o in ops if o.name == "failback rollback")
    return {
        "date": dt.date.today().isoformat(),
        "load_average_before_ops": {
            "median": round(statistics.median(loads), 2) if loads else None,
            "max": max(loads, default=None),
        },
        "size": size.name,
        "source_bytes": source_bytes,
        "repeat": repeat,
        "operations": rows,
        "ratios": ratios,
        "targets": targets,
        "peak_rss": {"failback_python": py_peak, "sqljs_node": node_peak},
        "standard_steps": step_shares(standard),
        "timeline": median_run(standard).detail.get("timeline") if median_run(standard) else None,
        "steps": {o.name: step_shares(o) for o in ops if o.name in ROLLBACKS},
    }


def _met(measured: float | None, goal: float) -> bool | None:
    """Whether a measure is within its goal (None: not measured in this run)."""
    return None if measured is None else measured <= goal


def median_parts(samples: list[Sample]) -> dict[str, float]:
    keys = {k for s in samples for k in s.parts}
    return {k: round(statistics.median([s.parts[k] for s in samples if k in s.parts]), 4) for k in sorted(keys)}


ROLLBACKS = ("failback rollback", "failback rollback --mode emergency", "failback rollback (no FTS)")


def median_run(op: Op) -> Sample | None:
    """The median run (by wall time; the lower one for an even count) among those with step timings."""
    good = sorted((s for s in op.samples if s.ok and s.parts), key=lambda s: s.seconds)
    return good[(len(good) - 1) // 2] if good else None


def step_shares(op: Op) -> dict[str, Any]:
    """The steps of the median run, from its own state.json: each step's seconds and share of that run's wall
    time, so the shares add up to 100 %."""
    run = median_run(op)
    if run is None:
        return {}
    wall = run.seconds
    rows: list[dict[str, Any]] = [
        {"step": k, "seconds": round(v, 4), "share": round(v / wall, 4)} for k, v in run.parts.items()
    ]
    outside = wall - sum(run.parts.values())
    rows.append({"step": OUTSIDE, "seconds": round(outside, 4), "share": round(outside / wall, 4)})
    sub_rows = [{"part": k, "seconds": round(v, 4)} for k, v in sorted((run.detail.get("sub") or {}).items())]
    return {"wall_seconds": round(wall, 4), "steps": rows, "convert_phases": sub_rows}


OUTSIDE = "outside steps (start-up, imports, config, run dir, exit)"


# -- printing ---------------------------------------------------------------------------------------------------
def fmt_s(x: float | None) -> str:
    return "—" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def fmt_mb(b: int | None) -> str:
    return "" if not b else f"{b / 2**20:.0f} MiB"


def fmt_ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}×"


def fmt_goal(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return {"×": fmt_ratio, "s": lambda v: f"{fmt_s(v)} s", "B": fmt_mb}[unit](x)


LEVELS = " ▁▂▃▄▅▆▇█"


def print_timeline(tl: dict[str, Any], width: int = 120) -> None:
    """The standard rollback's per-core timeline in text: one row of bars per core (each column the mean of a few
    slots when the run has more than ``width``), a row naming the step of each column by its first letter, and
    per step its wall seconds, CPU seconds on all cores, failback's own CPU seconds and mean cores busy."""
    slots = tl["slots"]
    if not slots:
        return
    per = -(-len(slots) // width)
    cols = [slots[i : i + per] for i in range(0, len(slots), per)]
    console.print(
        f"standard rollback, per core (each column {per * tl['tick_s']:.1f} s; █ = busy; machine-wide, "
        "so other work on the machine shows too):",
        highlight=False,
    )
    for core in range(tl["cores"]):
        bars = "".join(LEVELS[round(statistics.mean(s["busy"][core] for s in c) * (len(LEVELS) - 1))] for c in cols)
        console.print(f"  cpu{core} |{bars}|", highlight=False, markup=False)
    steps = "".join(statistics.mode(s["step"] for s in c)[0] for c in cols)
    console.print(f"  step |{steps}|", highlight=False, markup=False)
    st = Table(title="standard rollback: cores by step", title_justify="left")
    for col in ("step", "wall s", "CPU s (all cores)", "failback CPU s", "mean cores busy"):
        st.add_column(col, justify="left" if col == "step" else "right")
    for row in tl["steps"]:
        st.add_row(
            row["step"],
            fmt_s(row["wall_s"]),
            fmt_s(row["cpu_s"]),
            fmt_s(row["failback_cpu_s"]),
            "" if row["mean_cores_busy"] is None else f"{row['mean_cores_busy']:.2f}",
        )
    console.print(st)


def print_result(res: dict[str, Any]) -> None:
    ops = res["operations"]
    floor = ops["floor: VACUUM INTO + FTS4"]["median_seconds"]
    vac = {"fts": ops["VACUUM INTO"]["median_seconds"], "nofts": ops["VACUUM INTO (no FTS)"]["median_seconds"]}
    sb = res["source_bytes"]
    t = Table(
        title=f"{res['size']}: notes database {sb['fts'] / MB:.1f} MB (without FTS {sb['nofts'] / MB:.1f} MB), "
        f"median of {res['repeat']}",
        title_justify="left",
    )
    for col, justify in (
        ("operation", "left"),
        ("median s", "right"),
        ("min–max s", "right"),
        ("MB/s", "right"),
        ("× floor", "right"),
        ("× VACUUM INTO", "right"),
        ("Python RSS", "right"),
        ("Node RSS", "right"),
        ("note", "left"),
    ):
        t.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for name, r in ops.items():
        m = r["median_seconds"]
        notes = sorted({s["note"] for s in r["samples"] if s.get("note")})
        failed = sum(not s["ok"] for s in r["samples"])
        note = ("; ".join(notes))[:70] + (f" ({failed} failed)" if failed else "")
        comparable = "start-up" not in name
        floor_ratio = m / floor if comparable and m and floor and r["database"] == "fts" else None
        vac_ratio = m / vac[r["database"]] if comparable and m and vac.get(r["database"]) else None
        t.add_row(
            name,
            fmt_s(m),
            f"{fmt_s(r['min_seconds'])}–{fmt_s(r['max_seconds'])}",
            "" if r["mb_per_s"] is None else f"{r['mb_per_s']:.0f}",
            fmt_ratio(floor_ratio),
            fmt_ratio(vac_ratio),
            fmt_mb(r["python_peak_rss"]),
            fmt_mb(r["node_peak_rss"]),
            note,
        )
    console.print(t)
    load = res["load_average_before_ops"]
    console.print(
        f"1-min load average before each operation: median {load['median']}, max {load['max']} "
        f"(on {res['machine']['cores']} cores; anything else running shows up as noise)",
        highlight=False,
    )
    parts = ops["floor: VACUUM INTO + FTS4"]["parts_median"]
    if parts:
        console.print(
            f"floor = VACUUM INTO {fmt_s(parts.get('vacuum_into'))} s"
            f" + FTS4 rebuild {fmt_s(parts.get('fts4_rebuild'))} s",
            highlight=False,
        )

    tt = Table(title="goals (issue 16), measured in this run", title_justify="left")
    for col in ("measure", "measured", "goal", "met"):
        tt.add_column(col)
    for x in res["targets"]:
        met = {
            True: "[green]yes[/]",
            False: "[red]no[/]",
            None: "not measured" + (" (--quick)" if x["unit"] == "s" else ""),
        }
        tt.add_row(x["check"], fmt_goal(x["measured"], x["unit"]), "≤ " + fmt_goal(x["goal"], x["unit"]), met[x["met"]])
    console.print(tt)
    if res.get("timeline"):
        print_timeline(res["timeline"])

    by_op = {name: v for name, v in res.get("steps", {}).items() if v}
    if by_op:
        st = Table(title="failback rollback by step (the median run of each row)", title_justify="left")
        st.add_column("step")
        for name in by_op:
            short = name.replace("failback rollback", "").replace("--mode", "").strip(" ()-") or "standard"
            st.add_column(f"{short} s", justify="right")
            st.add_column("share", justify="right")
        names: list[str] = []
        for v in by_op.values():
            names += [r["step"] for r in v["steps"] if r["step"] not in names and r["step"] != OUTSIDE]
        names.append(OUTSIDE)
        for step in names:
            cells: list[str] = []
            for v in by_op.values():
                row = next((r for r in v["steps"] if r["step"] == step), None)
                cells += [fmt_s(row["seconds"]), f"{row['share'] * 100:.1f} %"] if row else ["", ""]
            st.add_row(step, *cells)
        st.add_row("[bold]wall[/]", *[c for v in by_op.values() for c in (fmt_s(v["wall_seconds"]), "100 %")])
        parts = sorted({p["part"] for v in by_op.values() for p in v["convert_phases"]})
        for part in parts:
            cells = []
            for v in by_op.values():
                row = next((p for p in v["convert_phases"] if p["part"] == part), None)
                cells += [fmt_s(row["seconds"]) if row else "", ""]
            st.add_row(f"  {part}", *cells)  # parts of, or beside, the steps above
        console.print(st)
    for n in res["notes"]:
        console.print(f"[yellow]note:[/] {n}", highlight=False)


# -- the machine ------------------------------------------------------------------------------------------------
def command_output(cmd: list[str], strip: bool = True) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() if strip else proc.stdout


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or None
    mem = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    sqljs_pkg = ROOT / "src/failback/engines/sqljs/node_modules/sql.js/package.json"
    sqljs = json.loads(sqljs_pkg.read_text())["version"] if sqljs_pkg.exists() else None
    sqlite_cli = command_output(["sqlite3", "--version"])
    dirty = command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], strip=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": mem,
        "os": platform.platform(),
        "filesystem": filesystem_of(DEFAULT_DATA),
        "python": platform.python_version(),
        "apsw": apsw.apsw_version(),
        "sqlite_apsw": apsw.sqlite_lib_version(),
        "sqlite3_cli": sqlite_cli.split()[0] if sqlite_cli else None,
        "node": command_output(["node", "--version"]),
        "sqljs": sqljs,
        "failback": failback.__version__,
        "git_commit": command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "git_modified": [line[3:] for line in (dirty or "").splitlines()],
    }


def filesystem_of(path: Path) -> str | None:
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    path = path.resolve()
    best = max((m for m in mounts if path.is_relative_to(m[1])), key=lambda m: len(m[1]), default=None)
    return f"{best[2]} on {best[1]}" if best else None


# -- entry point ------------------------------------------------------------------------------------------------
def preflight() -> bool:
    """Check the tools; print the fix for each missing one. False when failback itself cannot run."""
    ok = True
    if shutil.which("sqlite3") is None:
        console.print(
            "[yellow]sqlite3 CLI not found[/]: the sqlite3 .backup and .dump rows are skipped. "
            "Fix: [bold]apt-get install sqlite3[/]",
            highlight=False,
        )
    if shutil.which("node") is None:
        console.print("[red]node not found[/]: failback verifies in sql.js under Node. Fix: install Node.js >= 18")
        ok = False
    elif not (ROOT / "src/failback/engines/sqljs/node_modules/sql.js").is_dir():
        console.print("[red]sql.js is not installed[/]. Fix: [bold]make deps[/]")
        ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="the 100 MB database and the ≤ 1 MB rollback row (make bench-quick)"
    )
    parser.add_argument(
        "--sizes", default=None, help=f"comma-separated sizes among {', '.join(SIZES)} (default: all three)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; every figure is the median (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cache and scratch folder (bench/data)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where the JSON goes (bench/results)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    parser.add_argument(
        "--cold-calibration",
        action="store_true",
        help="do not give the runs failback's cached calibration: each standard rollback measures it",
    )
    args = parser.parse_args(argv)
    names = ["100mb"] if args.quick else (args.sizes.split(",") if args.sizes else list(SIZES))
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose among {', '.join(SIZES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.repeat < 3:
        console.print("[yellow]note:[/] fewer than 3 rounds: medians are not robust")
    if not preflight():
        return 2
    args.data = args.data.resolve()
    machine = machine_description()
    t0 = time.perf_counter()
    for name in names:
        res = run_size(SIZES[name], args, machine)
        print_result(res)
        if not args.no_save:
            args.results.mkdir(parents=True, exist_ok=True)
            path = args.results / f"{res['date']}-{name}.json"
            path.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
            console.print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        console.print(f"{name}: {res['bench_seconds']:.0f} s", highlight=False)
    console.print(f"bench wall time {time.perf_counter() - t0:.0f} s", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
