"""Calibration: each step's throughput measured once on this machine, cached in the state folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apsw
import zstandard

from .. import __version__
from ..config import Config
from ..db.connect import connect
from ..db.schema import digest_specs
from ..errors import FailbackError
from ..files import ensure_dir, write_text
from ..guard import CALIBRATING, remove_stale_folders, temp_folder
from ..journal import crash_point
from .facts import MB, Calibration

CALIBRATION_NOTES = 2000  # a ~4 MB sample database
CALIBRATION_RUNS = 3
_measured: dict[str, Calibration] = {}  # this process's measurements by key: a fleet worker measures once


# -- calibration --------------------------------------------------------------------------------------
def calibration_key(profile: str) -> dict[str, Any]:
    """What a cached calibration is valid for: this machine, these versions, this target profile."""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "sqlite": apsw.sqlite_lib_version(),
        "failback": __version__,
        "profile": profile,
    }


def _best(fn: Callable[[int], object]) -> float:
    """Seconds of the fastest of ``CALIBRATION_RUNS`` calls ``fn(run)``: the one least disturbed by other work."""
    times = []
    for run in range(CALIBRATION_RUNS):
        t0 = time.perf_counter()
        fn(run)
        times.append(time.perf_counter() - t0)
    return max(min(times), 1e-6)


def measure_throughput(folder: Path, profile: str) -> Calibration:
    """Run each step's real work on a small generated database in ``folder`` and time it."""
    from ..db.digest import table_digest
    from ..demo.sample import build_native
    from ..pipeline.export import PlanSettings, build_target, read_plan
    from ..snapshot import take_snapshot

    t0 = time.perf_counter()
    remove_stale_folders(ensure_dir(folder), CALIBRATING)  # a calibration killed midway left its sample
    with temp_folder(folder, CALIBRATING) as d:
        build_native(d / "sample.sqlite", notes=CALIBRATION_NOTES)
        crash_point("calibrate.sample")

        def snapshot(run: int) -> None:
            take_snapshot(d / "sample.sqlite", d / f"snapshot-{run}.sqlite").guard.close()

        seconds = {"snapshot": _best(snapshot)}
        snap = d / "snapshot-0.sqlite"
        data = snap.read_bytes()
        seconds["sha256"] = _best(lambda _: hashlib.sha256(data).digest())
        schema, plan = read_plan(snap, PlanSettings(profile))
        conn = connect(snap, readonly=True)
        try:
            seconds["digest"] = _best(lambda _: [table_digest(conn, spec) for spec in digest_specs(schema)])
        finally:
            conn.close()
        seconds["export"] = _best(lambda run: build_target(snap, d / f"target-{run}.sqlite", plan))
        target = connect(d / "target-0.sqlite", readonly=True)
        try:
            seconds["integrity"] = _best(lambda _: target.execute("PRAGMA integrity_check").fetchall())
        finally:
            target.close()
    mb = len(data) / MB
    return Calibration(
        key=calibration_key(profile),
        mb_per_s={step: round(mb / s, 1) for step, s in seconds.items()},
        seconds=round(time.perf_counter() - t0, 3),
    )


def calibration(cfg: Config, *, measure: bool) -> Calibration | None:
    """The cached calibration for this machine and config (the state folder's); when missing and ``measure``, the
    one this process measured (a fleet worker's tenants share it), else measured now — and cached."""
    path = cfg.state.calibration
    key = calibration_key(cfg.target.profile)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        cached = Calibration(**json.loads(path.read_text(encoding="utf-8")))
        if cached.key == key:
            return cached
    if not measure:
        return None
    memo = json.dumps(key, sort_keys=True)
    if memo not in _measured:
        try:
            _measured[memo] = measure_throughput(cfg.state_path, cfg.target.profile)
        except FailbackError as err:
            raise _calibration_failed(err, cfg.state_path) from None
    cal = _measured[memo]
    ensure_dir(path.parent)
    write_text(path, json.dumps(asdict(cal), indent=2) + "\n")
    return cal


def _calibration_failed(err: FailbackError, folder: Path) -> FailbackError:
    """``err`` from measuring throughput, told without the sample's temporary paths (removed by now)."""
    sample = re.compile(re.escape(str(folder / CALIBRATING)) + r"[^\s:()]*")
    reason = sample.sub("the sample", err.message)
    what = f"calibration (timing each step on a ~4 MB sample database in {folder}) failed: {reason}"
    return type(err)(what, f"{err.hint}; --mode emergency skips the calibration")


SAMPLE_MIN_BYTES = 128 << 10  # measure_compression reads a quarter of a file, but at least this much
SAMPLE_MIN_CHUNK = 16 << 10


def measure_compression(
    path: Path, level: int, threads: int, samples: int = 16, chunk: int = MB
) -> tuple[float, float]:
    """zstd ratio and MB/s on up to ``samples`` chunks spread over ``path``: the data decides both. At most a
    quarter of the file is read (at least SAMPLE_MIN_BYTES), in chunks of at least SAMPLE_MIN_CHUNK: a small
    file is not compressed whole beside its backup. Each chunk is compressed alone, so the ratio is a little
    pessimistic (the more so the smaller the chunks: a safe side for the room it sizes)."""
    size = path.stat().st_size
    budget = min(samples * chunk, max(SAMPLE_MIN_BYTES, size // 4))
    chunk = min(chunk, max(SAMPLE_MIN_CHUNK, budget // samples))
    samples = min(samples, max(1, budget // chunk))
    raw = packed = 0
    cctx = zstandard.ZstdCompressor(level=level, threads=threads)
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        for i in range(samples):
            fh.seek(max(0, size - chunk) * i // max(1, samples - 1))
            data = fh.read(chunk)
            raw, packed = raw + len(data), packed + len(cctx.compress(data))
    seconds = max(time.perf_counter() - t0, 1e-6)
    return (round(raw / packed, 3) if packed else 1.0), round(raw / MB / seconds, 1)
