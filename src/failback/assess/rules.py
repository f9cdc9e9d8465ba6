"""Risk rules (pure): facts → findings, a level and the gate; step estimates, disk needs and target limits."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

from ..db.schema import Schema
from ..errors import RiskRefused
from ..plan.model import Action
from ..profiles import Profile
from .facts import MB, Assessment, Calibration, Facts, Finding, LimitCheck, Liveness, TableSize

LEVELS = ("low", "medium", "high", "critical")
SEVERITY_LEVEL = {"info": "low", "warn": "medium", "high": "high", "critical": "critical"}
JS_SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER: larger integers lose digits as JavaScript numbers
HEADROOM = 0.10  # disk: less free space than needed + 10% (and 100 MB) is worth a warning


# -- evaluate (pure) ----------------------------------------------------------------------------------
def _mb(n: int | float) -> str:
    return f"{n / MB:.1f} MB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def evaluate(f: Facts) -> Assessment:
    """Facts → findings and a risk level (pure)."""
    out = [
        *_size_findings(f),
        *_disk_findings(f),
        *(shared_disk_finding(m) for m in f.shared_disk_mirrors),
        *_fit_findings(f),
        *_schema_findings(f),
        *_merge_findings(f),
        *([js_integer_finding(f.big_integers)] if f.big_integers else []),
        *_drift_findings(f),
        *_pending_findings(f),
        *_liveness_findings(f.liveness),
        *_state_findings(f),
    ]
    level = max((SEVERITY_LEVEL[x.severity] for x in out), key=LEVELS.index, default="low")
    return Assessment(level, out, f)


def _size_findings(f: Facts) -> Iterator[Finding]:
    rows = sum(t.rows or 0 for t in f.tables.values())
    largest = sorted(((t.bytes, name) for name, t in f.tables.items() if t.bytes), reverse=True)[:3]
    yield Finding(
        "info",
        "size",
        f"source {_mb(f.source_bytes)} (+ {_mb(f.wal_bytes)} WAL), snapshot {_mb(f.snapshot_bytes)}, {rows} rows"
        + (f"; largest: {', '.join(f'{name} {_mb(n)}' for n, name in largest)}" if largest else ""),
    )
    if f.free_pages and f.free_pages * f.page_size > f.snapshot_bytes // 4:
        yield Finding("info", "free-pages", f"{_mb(f.free_pages * f.page_size)} of free pages are not copied")
    if f.estimates:
        steps = ", ".join(f"{step} {_duration(s)}" for step, s in f.estimates.items())
        yield Finding(
            "info",
            "estimate",
            f"estimated on this machine: {steps} (about {_duration(sum(f.estimates.values()))} in all)",
        )
    if f.skipped:
        yield Finding("info", "skipped", f"not gathered in {f.mode} mode: {', '.join(f.skipped)}")


def _disk_findings(f: Facts) -> Iterator[Finding]:
    for d in f.disk:
        where = ", ".join(d.folders)
        parts = "; ".join(f"{what} {_mb(n)}" for what, n in d.parts.items() if n)
        if d.free < d.needed:
            yield Finding(
                "critical",
                "disk",
                f"{where}: {_mb(d.free)} free, {_mb(d.needed)} needed ({parts})",
                "free disk space there, or point failback.toml (backup.dir, mirrors, state_dir) elsewhere",
            )
        elif d.needed and d.free < d.needed * (1 + HEADROOM) + 100 * MB:
            yield Finding(
                "warn",
                "disk",
                f"{where}: {_mb(d.free)} free for {_mb(d.needed)} needed ({parts}): little headroom",
                "free some disk space there first",
            )


def shared_disk_finding(mirror: str) -> Finding:
    """A backup mirror on the primary's file system: one disk failure loses both."""
    return Finding(
        "warn",
        "mirror-same-disk",
        f"mirror {mirror} shares the primary's disk: it protects against deletion, not against a disk failure",
        "put backup.mirrors on another disk or machine",
    )


def _fit_findings(f: Facts) -> Iterator[Finding]:
    if f.target_bytes >= f.memory_critical_bytes:
        yield Finding(
            "critical",
            "target-memory",
            f"the converted database (~{_mb(f.target_bytes)}) exceeds the sql.js memory budget "
            f"({_mb(f.memory_critical_bytes)}): the browser must hold it whole in memory",
            "shrink the data first (archive old rows), or raise assess.memory_critical_mb if the app's devices can",
        )
    elif f.target_bytes >= f.memory_warn_bytes:
        yield Finding(
            "warn",
            "target-memory",
            f"the converted database (~{_mb(f.target_bytes)}) is above {_mb(f.memory_warn_bytes)}: "
            "slow to load in a browser",
            "test loading it on the app's smallest device",
        )
    for c in f.limits:
        if c.value <= c.allowed:
            continue
        if c.limit == "max_page_size":
            yield Finding("info", "limit-max_page_size", f"page size {c.value} > {c.allowed}: the plan converts it")
            continue
        yield Finding(
            "high" if c.limit == "max_length" else "critical",  # a row's payload bounds its largest value
            f"limit-{c.limit}",
            f"{c.where}: {c.value} exceeds the target's {c.limit} ({c.allowed})",
            "change the schema or the data so it fits, or choose a target profile that allows it",
        )


PLAN_FIXES = {
    Action.REFUSE.value: "add it to convert.allow_drop to drop it, or convert it by hand first; otherwise the run "
    "stops at convert",
    Action.DROP.value: "check that the app works without it",
    Action.CONVERT.value: "",
}


def _schema_findings(f: Facts) -> Iterator[Finding]:
    if f.counts:
        yield Finding("info", "schema", ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in f.counts.items() if n))
    for d in f.plan_findings:
        refused = d["action"] == Action.REFUSE.value
        yield Finding(
            "critical" if refused else d["severity"],
            f"convert-{d['action']}",
            f"{d['kind']} {d['name']}: {d['reason']}",
            PLAN_FIXES.get(d["action"], ""),
        )


def _merge_findings(f: Facts) -> Iterator[Finding]:
    for m in f.collation_merges:
        yield Finding("critical", "collation-merge", m.message(), m.fix())


def js_integer_finding(columns: list[str]) -> Finding:
    """Columns whose integers sql.js rounds when the app reads them as JavaScript numbers (its default)."""
    return Finding(
        "warn",
        "js-integer-precision",
        f"{', '.join(columns)} hold(s) integers beyond ±(2^53−1): the converted file keeps them exactly, but sql.js "
        "reads them as JavaScript numbers by default, rounded (9223372036854775807 becomes 9223372036854776000)",
        "read these columns with BigInt in the app: stmt.get(params, {useBigInt: true}), "
        "stmt.getAsObject(params, {useBigInt: true}), db.exec(sql, params, {useBigInt: true}) (the third "
        "argument); bind them back as BigInt too (sql.js 1.16.0 binds a BigInt exactly)",
    )


DRIFT_FIX = {
    "info": "",
    "warn": "check that the old app's writes still pass (list them in [app] statements)",
    "high": "make the old app cope (or change the schema back) before rolling back; [app] statements proves it",
}


def _drift_findings(f: Facts) -> Iterator[Finding]:
    if not f.drift_from:
        yield Finding("info", "drift-unknown", "no schema of the old app to compare with", "set [app] schema")
        return
    if not f.drift:
        yield Finding("info", "drift-none", f"the result has the schema the old app knows ({f.drift_from})")
    for d in f.drift:
        detail = f" ({d.detail})" if d.detail else ""
        yield Finding(
            d.severity,
            f"drift-{d.kind}-{d.change}",
            f"{d.kind} {d.name} {d.change}{detail} since the old app's schema — {d.breaks}",
            DRIFT_FIX[d.severity],
        )


def _pending_findings(f: Facts) -> Iterator[Finding]:
    for p in f.pending:
        if p.error:
            yield Finding(
                "high",
                "pending-probe",
                f"pending-changes probe failed ({p.where}): {p.error}; unsynced changes cannot be ruled out",
                "fix sync.pending_sql: one read-only SELECT returning a count (and optionally the oldest time)",
            )
        elif p.count:
            yield Finding(
                "high",
                "pending-changes",
                f"{p.count} change(s) not yet synced ({p.kind}: {p.where})"
                + (f", oldest {p.oldest}" if p.oldest else ""),
                "let the app finish syncing before rolling back: the rollback keeps these rows, but the sql.js "
                "app will not sync them",
            )


def _liveness_findings(live: Liveness) -> Iterator[Finding]:
    stop = "stop the app, or wait until it is idle: writes after the snapshot make the switch abort (exit 5)"
    if live.writes_seen:
        yield Finding(
            "high",
            "live-writes",
            f"the app is writing to the source: {', '.join(live.evidence)} during a {live.seconds:g} s watch"
            + (f" (-wal grew {_mb(live.wal_growth)})" if live.wal_growth else ""),
            stop,
        )
    elif live.writer_pids:
        pids = ", ".join(map(str, live.writer_pids))
        yield Finding("high", "live-writer", f"process {pids} holds the source's write lock", stop)
    elif live.open_pids:
        pids = ", ".join(map(str, live.open_pids))
        yield Finding(
            "warn",
            "live-open",
            f"the source is open in process {pids} (the app is running)",
            "quit the app before the switch, so that it stops writing to the native file",
        )
    if live.hot_journal:
        yield Finding(
            "critical",
            "hot-journal",
            f"a hot journal ({_mb(live.hot_journal)}) lies beside the source: a write transaction was interrupted "
            "and the file is inconsistent until SQLite rolls it back",
            "open the database once read-write (the app, or sqlite3) so SQLite rolls it back, then assess again",
        )
    if live.wal_without_shm:
        yield Finding(
            "warn",
            "wal-without-shm",
            f"the source has a -wal ({_mb(live.wal_without_shm)}) but no -shm: the app did not close cleanly or the "
            "files were copied without it; the commits in the -wal are read, not lost",
            "keep the -wal with the database; open it once in the app so it checkpoints",
        )
    if live.error:
        yield Finding("warn", "live-unknown", f"the source could not be watched: {live.error}", stop)


def _state_findings(f: Facts) -> Iterator[Finding]:
    if f.integrity:
        yield Finding(
            "critical",
            "integrity",
            f"the snapshot fails quick_check: {'; '.join(f.integrity[:3])}",
            "the source is damaged: restore it from a backup or recover it (sqlite3 .recover) first",
        )
    for e in f.errors:
        yield Finding("high", "unreadable", f"could not read {e}", "check the source with `PRAGMA integrity_check`")
    if f.migrations:
        yield Finding("info", "migrations", f"{len(f.migrations)} GRDB migration(s), last {f.migrations[-1]}")
    for table, n in f.old_only_rows.items():
        yield Finding(
            "high",
            "old-only-rows",
            f"{n} row(s) of {table} exist only in the old sql.js file: the migration never carried them, and the "
            "rollback replaces that file (it is backed up first)",
            "merge them into the native database first if they matter",
        )


def gate(
    a: Assessment,
    *,
    yes: bool = False,
    force: bool = False,
    reason: str = "",
    confirm: Callable[[Assessment], bool] | None = None,
) -> None:
    """Refuse (exit 3) unless the level allows going on: high needs ``yes``, ``force`` or ``confirm(a)``
    (a person saying yes); critical needs ``force`` and a ``reason``."""
    if a.level == "critical" and not (force and reason.strip()):
        worst = next(x for x in a.findings if x.severity == "critical")
        hint = "--force needs --reason '…' (written to the audit log)" if force else None
        raise RiskRefused(f"risk critical: {worst.message}", hint or "fix it, or pass --force --reason '…'")
    if a.level == "high" and not (yes or force or (confirm is not None and confirm(a))):
        worst = next(x for x in a.findings if x.severity == "high")
        raise RiskRefused(f"risk high: {worst.message}", "read `failback assess`, then re-run with --yes")


def estimate_steps(cal: Calibration, f: Facts, layers: int) -> dict[str, float]:
    """Seconds each step should take for the snapshot of ``f`` (pure). Verify counts its apsw side only: the
    sql.js side runs meanwhile and is not calibrated."""
    mb, r = f.snapshot_bytes / MB, cal.mb_per_s
    packed = mb / f.zstd_ratio
    return {
        "snapshot": mb / r["snapshot"],
        "backup": mb / r["digest"] + mb / f.zstd_mb_per_s + (2 * layers - 1) * packed / r["sha256"],
        "convert": mb / r["export"],
        "verify": mb / r["integrity"] + mb / r["digest"],
    }


def disk_parts(
    *,
    target_bytes: int,
    previous_target_bytes: int,
    snapshot_bytes: int,
    zstd_ratio: float,
    layers: list[Path],
    target_dir: Path,
    state_dir: Path,
    temp_dir: Path,
    sort_bytes: int,
    previous_linked: bool,
) -> list[tuple[Path, str, int]]:
    """(folder, what, bytes) the rest of the rollback writes (pure). The snapshot already exists; the backups
    are still to come (a rollback writes them while it assesses and converts)."""
    parts: list[tuple[Path, str, int]] = []
    for layer in layers:
        parts.append((layer, "backup", math.ceil(snapshot_bytes / zstd_ratio)))
        if previous_target_bytes:
            parts.append((layer, "backup of the current target", math.ceil(previous_target_bytes / zstd_ratio)))
    parts.append((target_dir, "converted target", target_bytes))
    parts.append((state_dir, "run journal and reports", MB))
    if previous_target_bytes and not previous_linked:
        parts.append((state_dir, "kept copy of the current target", previous_target_bytes))
    if sort_bytes:
        parts.append((temp_dir, "SQLite sort files", sort_bytes))
    return parts


def limit_checks(schema: Schema, profile: Profile, tables: dict[str, TableSize]) -> list[LimitCheck]:
    """The database's values that a profile limit bounds (pure)."""
    values: dict[str, tuple[int, str]] = {"max_page_size": (schema.page_size, "page size")}
    user = [t for t in schema.tables.values() if t.kind == "table"]
    if user:
        widest = max(user, key=lambda t: len(t.columns))
        values["max_column"] = (len(widest.columns), f"table {widest.name}")
    sqls = [(t.sql, t.name) for t in schema.tables.values()] + [(v.sql, v.name) for v in schema.views.values()]
    sqls += [(t.sql, t.name) for t in schema.triggers.values()] + [
        (i.sql or "", i.name) for i in schema.indexes.values()
    ]
    if sqls:
        sql, name = max(sqls, key=lambda s: len(s[0]))
        values["max_sql_length"] = (len(sql), f"the SQL of {name}")
    payloads = [(t.max_payload, name) for name, t in tables.items() if t.max_payload is not None]
    if payloads:
        n, name = max(payloads)
        values["max_length"] = (n, f"a row of {name}")
    return [
        LimitCheck(limit, profile.limits[limit], value, where)
        for limit, (value, where) in values.items()
        if limit in profile.limits
    ]
