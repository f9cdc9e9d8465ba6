"""Performance baselines: the app's hot queries timed in the target engine, and the comparison after a rollback.

``record_baseline`` writes ``<state>/baseline.json``:
``{"recorded", "engine", "runs", "database", "queries": [{"sql", "p50_ms", "p95_ms", "rows"}],
"metrics": {"probe.p50_ms", "probe.p95_ms"}}`` — ``queries`` timed in sql.js on the target file, ``metrics``
from the same queries on the live source read-only (what the trigger probe measures). ``compare`` is pure.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from ..config import Config
from ..db.connect import connect
from ..engines import Engine
from ..errors import ConfigError, InputError
from ..files import ensure_dir, write_text
from ..state import StatePaths


@dataclass(frozen=True)
class Timing:
    sql: str
    p50_ms: float
    p95_ms: float
    rows: int = 0
    error: str = ""


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by the nearest-rank method."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(sql: str, result: dict[str, Any]) -> Timing:
    """A timing from one engine ``time`` result."""
    if not result.get("ok"):
        return Timing(sql, 0.0, 0.0, 0, str(result.get("error", "failed")))
    ms = [float(x) for x in result["ms"]]
    return Timing(sql, percentile(ms, 0.5), percentile(ms, 0.95), int(result.get("rows", 0)))


def time_in_engine(engine: Engine, db: Path, queries: list[str], runs: int) -> list[Timing]:
    """Each query ``runs`` times in ``engine`` on ``db`` (loaded once)."""
    if not queries:
        return []
    run = engine.run(db, [{"op": "time", "sql": q, "runs": runs + 1} for q in queries])
    return [summarize(q, without_warmup(r)) for q, r in zip(queries, run.results, strict=True)]


def without_warmup(result: dict[str, Any]) -> dict[str, Any]:
    """Drop the first run: it pays for cold caches (and the engine's first compile), not the query."""
    return {**result, "ms": result["ms"][1:]} if result.get("ok") and len(result["ms"]) > 1 else result


def time_readonly(db: Path, queries: list[str], runs: int) -> tuple[list[Timing], int]:
    """Each query ``runs`` times on a read-only connection to a live database; (timings, errors)."""
    conn = connect(db, readonly=True)
    timings, errors = [], 0
    try:
        for sql in queries:
            ms: list[float] = []
            rows, err = 0, ""
            for _ in range(runs):
                t0 = time.perf_counter()
                try:
                    rows = sum(1 for _ in conn.execute(sql))
                except apsw.Error as e:
                    errors, err = errors + 1, str(e)
                    break
                ms.append((time.perf_counter() - t0) * 1000)
            timings.append(Timing(sql, percentile(ms, 0.5), percentile(ms, 0.95), rows, err))
    finally:
        conn.close()
    return timings, errors


def probe_metrics(timings: list[Timing], errors: int) -> dict[str, float]:
    """The probe's metrics: the worst p50/p95 over the queries, and the error count."""
    return {
        "probe.p50_ms": max((t.p50_ms for t in timings), default=0.0),
        "probe.p95_ms": max((t.p95_ms for t in timings), default=0.0),
        "probe.errors": float(errors),
    }


def record_baseline(cfg: Config, engine: Engine, database: Path | None = None) -> dict[str, Any]:
    """Time ``benchmark.queries`` in the target engine (on ``database``, default the target file) and on the
    live source; write ``<state>/baseline.json``."""
    queries, runs = cfg.benchmark.queries, cfg.benchmark.runs
    if not queries:
        raise ConfigError("no [benchmark] queries in the config", "list the app's hot queries under [benchmark]")
    db = database or cfg.target_path
    if not db.exists():
        raise InputError(f"{db}: no such database to time", "record the baseline on the sql.js database the app uses")
    timings = time_in_engine(engine, db, queries, runs)
    failed = [t for t in timings if t.error]
    if failed:
        raise InputError(f"baseline query failed in {engine.name}: {failed[0].sql}: {failed[0].error}")
    metrics: dict[str, float] = {}
    if cfg.source_path.exists():
        live, errors = time_readonly(cfg.source_path, queries, runs)
        metrics = probe_metrics(live, errors)
    data = {
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": engine.name,
        "runs": runs,
        "database": str(db),
        "queries": [asdict(t) for t in timings],
        "metrics": metrics,
    }
    ensure_dir(cfg.state_path)
    write_text(cfg.state.baseline, json.dumps(data, indent=2) + "\n")
    return data


def load_baseline(state: Path) -> dict[str, Any] | None:
    """The recorded baseline, or None."""
    try:
        data = json.loads(StatePaths(state).baseline.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def compare(
    baseline: dict[str, Any], now: list[Timing], max_regression: float, min_delta_ms: float = 0.0
) -> list[dict[str, Any]]:
    """Per query: p50/p95 before and after, the p95 ratio, and whether it regressed: p95 more than
    ``max_regression`` times the baseline's and at least ``min_delta_ms`` slower, *with* the median (p50) also
    more than ``max_regression`` times slower. A slower tail alone is not flagged: over a few dozen runs it is
    what one garbage-collector or scheduler pause of a few milliseconds looks like."""
    before = {q["sql"]: q for q in baseline.get("queries", [])}
    rows = []
    for t in now:
        b = before.get(t.sql)
        ratio = (t.p95_ms / b["p95_ms"]) if b and b["p95_ms"] > 0 else None
        slower = b is not None and t.p95_ms - b["p95_ms"] >= min_delta_ms and t.p50_ms > b["p50_ms"] * max_regression
        ok = not t.error and (ratio is None or ratio <= max_regression or not slower)
        rows.append(
            {
                "sql": t.sql,
                "before_p50_ms": b["p50_ms"] if b else None,
                "before_p95_ms": b["p95_ms"] if b else None,
                "p50_ms": t.p50_ms,
                "p95_ms": t.p95_ms,
                "ratio": ratio,
                "ok": ok,
                "error": t.error,
            }
        )
    return rows
