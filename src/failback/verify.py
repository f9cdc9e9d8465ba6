"""Verification: prove the target holds the snapshot's data, and that the real target engine reads it so.

What is compared does not come from the plan: every table and virtual table a reader of the snapshot can
``SELECT`` from (read from the snapshot's own schema; shadow tables are internal, their content is what their
virtual table's SELECT returns) is digested in the snapshot and in the target, whatever the plan decided. The
only exceptions are listed, never passed off as equal: objects the plan drops (``dropped``) and virtual tables
whose SELECT fails in the snapshot itself (``unreadable``: nothing a reader sees to compare).

Levels:
* every level: the target's schema (sqlite_schema read by apsw and by sql.js) is the plan's: every table, index,
  view and trigger the plan creates, with the planned SQL (up to whitespace and comments, as SQLite stores it),
  nothing else (the shadow tables of the planned virtual tables aside), and the planned user_version and
  application_id;
* ``quick``: quick_check and foreign keys (apsw), row counts in snapshot, target and sql.js;
* ``standard``: integrity_check, foreign keys, row counts (apsw) and content digests of the snapshot and of the
  target as sql.js reads it (apsw digests the target too where those two differ, to tell which side is wrong),
  search
  parity (FTS5 in the snapshot vs the converted index in sql.js), the app's queries, every view prepared in
  sql.js, every planned trigger found among those the target's own statements fire in sql.js (its ``EXPLAIN``
  lists the trigger programs it runs), and a write round trip through each FTS sync trigger in sql.js (in memory);
* ``deep``: standard + the target's content digests in apsw, sql.js's own integrity_check and an FTS
  integrity-check in sql.js after the write round trip (apsw's integrity_check already checks the FTS4
  index of the file, SQLite 3.54 being the same version sql.js ships).

The sql.js job runs in a Node process (a thread waits for it) while apsw checks the target, so the two sides use
both cores; that process reads the file once and shares a big file's digests with a helper thread reading the same
bytes (runner.js). The old app's statements (``statements``) run in the same job, after every check that reads the
data and before the write round trip, inside a transaction rolled back: the file is loaded into sql.js once.
Given a ``browser`` engine (``[verify] browser``, ``verify --browser``), the same job then
runs in the same sql.js inside headless Chromium: every result (timings apart) must equal Node's, else the
first that differs is a problem; the tab's time and peak memory are reported, with a warning above what mobile
browsers hold.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .assess.statements import StatementCheck, StatementRun
from .db.connect import connect, database_error, quote, read_transaction
from .db.digest import DigestSpec, TableDigest, database_digests, digest_rows, table_digest
from .db.schema import (
    STORED_SCHEMA_SQL,
    STORED_SCHEMA_SQL_BEFORE_3_37,
    CreatedObject,
    Schema,
    Table,
    created_object,
    digest_spec,
    read_schema,
)
from .db.sqltext import tokenize
from .engines import SOURCE_ENGINE, Engine, EngineRun, Result, decode_typed, first_difference, get_engine
from .errors import FailbackError
from .fields import as_fields
from .pipeline.postcheck import summarize, without_warmup
from .plan.model import Action, Plan, SearchPair

MARKER = "fbverifymarkerq"
LEVELS = ("quick", "standard", "deep")
FIRED = "-- TRIGGER "  # EXPLAIN's p4 of the first instruction of each trigger program a statement runs
P4 = 5  # EXPLAIN's column p4


@dataclass
class TableCheck:
    """One table's rows and digest on each side; ``status`` equal, differs, dropped (by the plan, with its
    reason in ``detail``) or unreadable (its SELECT fails in the snapshot itself)."""

    table: str
    snapshot: dict[str, Any] | None
    target: dict[str, Any] | None
    sqljs: dict[str, Any] | None
    ok: bool
    status: str = "equal"
    detail: str = ""


@dataclass
class Check:
    """One named check (search parity, app query, object proof, write round trip, …) and its outcome."""

    kind: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyReport:
    """What verifying a target found: each table on each side, each named check, and the problems (none: the
    target holds the source's data and its planned schema)."""

    level: str
    integrity: str = ""
    foreign_keys: int = 0
    tables: list[TableCheck] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    sqljs_version: str = ""
    sqljs_peak_rss: int | None = None
    browser: dict[str, Any] | None = None  # the same job in a browser: version, seconds, memory, difference, warning
    seconds: float = 0.0
    statements: list[StatementCheck] = field(default_factory=list)  # the old app's, run on the target
    proved: list[tuple[DigestSpec, TableDigest]] = field(default_factory=list)  # each table whose digest sql.js
    # read in the target equals the snapshot's, with that digest (the target's manifest reuses them; not in JSON)

    @property
    def ok(self) -> bool:
        """The target holds what it must: no problem found."""
        return not self.problems

    @property
    def differences(self) -> list[str]:
        """What differs from what the target must hold, one line each (empty when ``ok``)."""
        return self.problems

    def add(self, check: Check) -> None:
        """Record a check (and, when it failed, its problem)."""
        self.checks.append(check)
        if not check.ok:
            self.problems.append(f"{check.kind} {check.name}: {check.detail}")

    def add_statements(self, checks: list[StatementCheck]) -> None:
        """Record the old app's statements run on the target (each that failed is a problem)."""
        self.statements = checks
        self.problems += [c.message() for c in checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        doc = as_fields(self)
        del doc["proved"]
        return {**doc, "ok": self.ok}

    def summary(self, where: str) -> str:
        """'N tables equal WHERE', then the others by name (see ``tables_summary``)."""
        return tables_summary(as_fields(self.tables), where)


def table_status(t: dict[str, Any]) -> str:
    """A TableCheck's status from its JSON (one recorded before tables had a status: from ``ok``)."""
    return str(t.get("status") or ("equal" if t["ok"] else "differs"))


def tables_summary(tables: list[dict[str, Any]], where: str) -> str:
    """'N tables equal WHERE', then the others by name (``tables``: TableCheck JSON)."""
    by: dict[str, list[str]] = {}
    for t in tables:
        by.setdefault(table_status(t), []).append(t["table"])
    parts = [f"{len(by.get('equal', []))} tables equal {where}"]
    parts += [f"{len(by[k])} {label}: {', '.join(sorted(by[k]))}" for k, label in _NOT_EQUAL.items() if by.get(k)]
    return "; ".join(parts)


_NOT_EQUAL = {"differs": "differ", "dropped": "dropped by the plan", "unreadable": "unreadable in the source too"}


class _Job:
    """sql.js actions, each with a tag so results are found by meaning, not by position."""

    def __init__(self) -> None:
        self.tags: list[str] = []
        self.actions: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, Any]] = {}

    def add(self, tag: str, action: dict[str, Any]) -> None:
        self.tags.append(tag)
        self.actions.append(action)

    def __getitem__(self, tag: str) -> dict[str, Any]:
        return self.results.get(tag, {"ok": False, "error": "not run"})


@dataclass
class SourceView:
    """What a reader of the snapshot can SELECT (``specs``), what the plan drops, and what the snapshot itself
    cannot read (table → the plan's reason or the error)."""

    specs: list[DigestSpec]
    dropped: dict[str, str]
    unreadable: dict[str, str]


def select_spec(t: Table) -> DigestSpec:
    """What ``SELECT *`` of a table or virtual table returns, as a digest spec: the spec the backup manifest and the
    plan use where they have one (so their digests are reused), else the visible columns, keyed by the rowid
    for FTS tables (external-content and contentless ones too)."""
    cols = tuple(c.name for c in t.visible_columns)
    return digest_spec(t) or DigestSpec(t.name, cols, rowid=t.module in ("fts3", "fts4", "fts5"))


def dropped_objects(schema: Schema, plan: Plan) -> dict[str, str]:
    """Tables and virtual tables the plan drops, with its reason; ``sqlite_sequence`` too when counters of a
    dropped table go with it (its other rows are then not compared)."""
    drops = {
        d.name: d.reason for d in plan.decisions if d.action is Action.DROP and d.kind in ("table", "virtual table")
    }
    if lost := sorted(n for n in schema.sequence if n in drops):
        drops["sqlite_sequence"] = f"the AUTOINCREMENT counters of {', '.join(lost)} go with their table(s)"
    return drops


@dataclass(frozen=True)
class PlannedSchema:
    """The objects a plan creates in the target (by type and lowercased name), the virtual tables among them (whose
    shadow tables come with them) and the header values it sets."""

    objects: dict[tuple[str, str], CreatedObject]
    virtual: tuple[str, ...]
    pragmas: dict[str, int]


def planned_schema(plan: Plan) -> PlannedSchema:
    """What the target built from ``plan`` holds, read from the plan's CREATE statements."""
    virtual = [created_object(sql) for sql in plan.virtual_tables if _is_create(sql)]
    created = [created_object(sql) for sql in plan.create_tables + plan.early_indexes + plan.late_indexes]
    created += virtual + [created_object(sql) for sql in plan.views + plan.triggers]
    return PlannedSchema(
        {(o.type, o.name.lower()): o for o in created},
        tuple(o.name.lower() for o in virtual),
        {k: int(plan.pragmas[k]) for k in ("user_version", "application_id") if k in plan.pragmas},
    )


def _is_create(sql: str) -> bool:
    return sql.lstrip().upper().startswith("CREATE")


def schema_differences(planned: PlannedSchema, rows: Iterable[Sequence[Any]]) -> dict[str, str]:
    """Each object of a target whose schema (rows of ``STORED_SCHEMA_SQL``) is not the plan's, with what differs:
    missing, other SQL, not in the plan; and a user_version or application_id other than planned. SQLite's own
    objects (``sqlite_*``: counters, statistics, the indexes of UNIQUE and PRIMARY KEY constraints, which their
    table's SQL states) and the shadow tables of planned virtual tables are expected."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    diffs: dict[str, str] = {}
    for kind, name, _table, sql, shadow in rows:
        if kind == "pragma":
            if name in planned.pragmas and sql != planned.pragmas[name]:
                diffs[f"pragma {name}"] = f"{sql} in the target, {planned.pragmas[name]} planned"
        elif sql is None or name.lower().startswith("sqlite_"):
            continue
        elif not (shadow and any(name.lower().startswith(v + "_") for v in planned.virtual)):
            found[(kind, name.lower())] = (name, sql)
    for key, obj in planned.objects.items():
        if key not in found:
            diffs[f"{obj.type} {obj.name}"] = "missing in the target"
        elif created_object(found[key][1]).key != obj.key:
            diffs[f"{obj.type} {obj.name}"] = f"SQL differs: planned {_short(obj.sql)}, target {_short(found[key][1])}"
    for key, (name, sql) in found.items():
        if key not in planned.objects:
            diffs[f"{key[0]} {name}"] = f"not in the plan: {_short(sql)}"
    return diffs


def _short(sql: str, n: int = 160) -> str:
    return repr(sql if len(sql) <= n else sql[: n - 1] + "…")


def _schema_checks(rep: VerifyReport, planned: PlannedSchema, readings: dict[str, list[Sequence[Any]] | str]) -> None:
    """One failed check per object that differs from the plan (naming the readers that saw it), else one passed."""
    seen: dict[str, dict[str, str]] = {}
    for reader, rows in readings.items():
        if isinstance(rows, str):
            rep.add(Check("schema", "sqlite_schema", False, f"{reader} cannot read it: {rows}"))
            continue
        for label, detail in schema_differences(planned, rows).items():
            seen.setdefault(label, {})[reader] = detail
    for label, by in seen.items():
        details = {d: [r for r in by if by[r] == d] for d in by.values()}
        rep.add(Check("schema", label, False, "; ".join(f"{d} ({' and '.join(r)})" for d, r in details.items())))
    if not seen and all(not isinstance(r, str) for r in readings.values()):
        counts = {t: sum(k[0] == t for k in planned.objects) for t in ("table", "index", "view", "trigger")}
        what = ", ".join(f"{n} {t}(s)" for t, n in counts.items())
        rep.add(Check("schema", "target", True, f"{what} as planned, nothing else ({' and '.join(readings)})"))


def _statements(sql: str) -> list[str]:
    """The statements of a script, split at its top-level semicolons (never inside a quoted name or string)."""
    parts, current = [], list[str]()
    for tok in tokenize(sql):
        if tok.kind == "op" and tok.text == ";":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(tok.text)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _fired(results: list[dict[str, Any]]) -> set[str]:
    """The triggers the EXPLAINed statements run (lowercased names), from each trigger program's first p4."""
    cells = (decode_typed(row[P4]) for r in results if r["ok"] for row in r["rows"])
    return {c[len(FIRED) :].lower() for c in cells if isinstance(c, str) and c.startswith(FIRED)}


def covered_triggers(proof_name: str, triggers: Iterable[str]) -> list[str]:
    """The planned triggers a trigger proof covers: the one it names, or all a ``prefix*`` name covers (the FTS
    sync triggers ``__<fts>_*``)."""
    if proof_name.endswith("*"):
        return [t for t in triggers if t.startswith(proof_name[:-1])]
    return [t for t in triggers if t == proof_name]


def source_view(conn: apsw.Connection, plan: Plan, schema: Schema | None = None) -> SourceView:
    """Every table and virtual table a reader can SELECT from, by the snapshot's schema (not the plan): ``schema``
    when the caller read it from this snapshot, else read on ``conn`` (the snapshot, read-only)."""
    schema = schema or read_schema(conn)
    dropped = dropped_objects(schema, plan)
    tables = [t for t in schema.user_tables() if t.name not in dropped]
    unreadable = {t.name: err for t in tables if t.kind == "virtual" and (err := _select_error(conn, select_spec(t)))}
    specs = [select_spec(t) for t in tables if t.name not in unreadable]
    if schema.sequence and "sqlite_sequence" not in dropped:
        specs.append(DigestSpec("sqlite_sequence", ("name", "seq"), rowid=False))
    return SourceView(specs, dropped, unreadable)


def _select_error(conn: apsw.Connection, spec: DigestSpec) -> str | None:
    """Why the first row of a table cannot be read, or None."""
    try:
        conn.execute(f"{spec.select_sqls()[0]} LIMIT 1").fetchall()
    except apsw.Error as err:
        return str(err)
    return None


def _digest_json(d: TableDigest | None) -> dict[str, Any] | None:
    return None if d is None else {"rows": d.rows, "digest": d.digest}


def _count_sql(spec: DigestSpec) -> str:
    return f"SELECT count(*) FROM {quote(spec.table)}"


def snapshot_digests(
    snapshot: Path, conn: apsw.Connection, specs: list[DigestSpec], quick: bool = False
) -> dict[str, TableDigest]:
    """Digests (or, ``quick``, row counts only, read on ``conn``) of the snapshot's tables."""
    if not quick:
        return database_digests(snapshot, specs)
    return {s.table: TableDigest(s.table, conn.execute(_count_sql(s)).get, "") for s in specs}


_NOT_ALNUM = re.compile(r"[^\w\s]|_")  # what a word loses: neither a letter, a digit nor a space
TERM_POOL = 40  # distinct words read per search term drawn (at most 200 rows are read)


def search_terms(conn: apsw.Connection, pairs: list[SearchPair], n: int) -> list[str]:
    """Up to ``n`` plain words drawn, deterministically, from the last indexed column of the first FTS table (its
    first rows, until ``TERM_POOL`` words per term are known; ``conn``: the snapshot)."""
    if not pairs or not pairs[0].columns or n <= 0:
        return []
    pair = pairs[0]
    seen: dict[str, None] = {}  # the words in first-seen order
    sql = f"SELECT {quote(pair.columns[-1])} FROM {quote(pair.source)} ORDER BY rowid LIMIT 200"
    try:
        with contextlib.closing(conn.execute(sql)) as rows:
            for (text,) in rows:
                for w in _NOT_ALNUM.sub("", str(text or "")).lower().split():  # each word's letters and digits
                    if len(w) >= 4 and w.isascii():
                        seen.setdefault(w)
                if len(seen) >= TERM_POOL * n:  # enough to draw from: the rest of the rows are not read
                    break
    except apsw.Error:
        return []
    words = list(seen)
    return words[:: max(1, len(words) // n)][:n]


def _build_job(
    plan: Plan,
    specs: list[DigestSpec],
    level: str,
    searches: list[tuple[SearchPair, str]],
    queries: list[str],
    timed: list[str],
    runs: int,
    statements: list[dict[str, Any]],
) -> _Job:
    """The sql.js job: what reads the data as the file holds it first (timings, schema, counts or digests, searches,
    queries, proofs), then the old app's ``statements`` (rolled back), then the write round trip and, at level
    deep, the integrity checks after it."""
    job = _Job()
    for sql in timed:  # first, on the pristine data (the write round trip comes last)
        job.add(f"time:{sql}", {"op": "time", "sql": sql, "runs": runs + 1})
    job.add("schema", {"op": "query", "sql": STORED_SCHEMA_SQL})
    if level == "quick":
        for s in specs:
            job.add(f"count:{s.table}", {"op": "query", "sql": _count_sql(s)})
        _add_statements(job, statements)
        return job
    for s in specs:  # one action per table: a table the target lacks fails alone
        job.add(f"digest:{s.table}", {"op": "digest", "tables": [s.to_json()]})
    for pair, q in searches:
        f = quote(pair.target)
        job.add(
            f"search:{pair.target}:{q}",
            {"op": "query", "sql": f"SELECT rowid FROM {f} WHERE {f} MATCH ?", "params": [q], "limit": 0},
        )
    for sql in queries:
        job.add(f"query:{sql}", {"op": "query", "sql": sql, "limit": 0})
    fired = {"column": P4, "prefix": FIRED}  # of an EXPLAIN, only the first instruction of each trigger program
    for proof in plan.proofs:  # a trigger's: the EXPLAIN of each statement that fires it, whose program is read
        if proof.kind == "trigger":
            for i, sql in enumerate(_statements(proof.sql)):
                job.add(f"proof:trigger:{proof.name}:{i}", {"op": "query", "sql": sql, "keep": fired})
        else:
            job.add(f"proof:{proof.kind}:{proof.name}", {"op": "exec", "sql": proof.sql})
    _add_statements(job, statements)
    for n, pair in enumerate(p for p in plan.search if p.content):
        for i, action in enumerate(_write_round_trip(pair, n)):
            job.add(f"write:{pair.target}:{i}", action)
    if level == "deep":
        job.add("integrity", {"op": "query", "sql": "PRAGMA integrity_check"})
        for pair in plan.search:
            f = quote(pair.target)
            job.add(
                f"fts-integrity:{pair.target}",
                {"op": "exec", "sql": f"INSERT INTO {f}({f}) VALUES('integrity-check')"},
            )
    return job


def _add_statements(job: _Job, actions: list[dict[str, Any]]) -> None:
    for i, action in enumerate(actions):
        job.add(f"statement:{i}", action)


def _write_round_trip(pair: SearchPair, n: int) -> list[dict[str, Any]]:
    """Update, delete and re-insert one content row in sql.js (in memory), searching after each write."""
    f, c, col = quote(pair.target), quote(pair.content or ""), quote(pair.columns[0])
    cols = ", ".join(quote(x) for x in pair.content_columns)
    pick, saved = f"fb_pick{n}", f"fb_saved{n}"
    find = {"op": "query", "sql": f"SELECT rowid FROM {f} WHERE {f} MATCH '{MARKER}'"}
    return [
        {
            "op": "exec",
            "sql": f"CREATE TEMP TABLE {pick} AS SELECT rowid AS r FROM {c} ORDER BY rowid LIMIT 1; "
            f"UPDATE {c} SET {col} = coalesce({col}, '') || ' {MARKER}' WHERE rowid = (SELECT r FROM {pick})",
        },
        find,
        {
            "op": "exec",
            "sql": f"CREATE TEMP TABLE {saved} AS SELECT rowid AS fb_rowid, * FROM {c} "
            f"WHERE rowid = (SELECT r FROM {pick}); DELETE FROM {c} WHERE rowid = (SELECT r FROM {pick})",
        },
        find,
        {"op": "exec", "sql": f"INSERT INTO {c}(rowid, {cols}) SELECT fb_rowid, {cols} FROM {saved}"},
        find,
    ]


def verify_target(
    target: Path,
    plan: Plan,
    engine: Engine,
    *,
    snapshot: Path,
    snapshot_digests_: dict[str, TableDigest] | None = None,
    level: str = "standard",
    fts_queries: list[str] | None = None,
    sample_terms: int = 5,
    queries: list[str] | None = None,
    timed: list[str] | None = None,
    runs: int = 20,
    repaired: Collection[str] = (),
    browser: Engine | None = None,
    browser_memory_warn_mb: int | None = None,
    statements: StatementRun | None = None,
    schema: Schema | None = None,
) -> VerifyReport:
    """Run the verification suite at ``level``. Problems are collected in the report, never raised.
    ``snapshot_digests_`` (e.g. from the backup manifest) are reused for the tables they cover; ``timed``
    queries are also timed in sql.js while it has the target loaded (for the post-check). The search results
    of ``repaired`` FTS tables (their source index was malformed: ``--repair-fts``) are not compared.
    ``browser``: an engine that runs the same job in a browser; its results must equal ``engine``'s, and a tab
    peaking above ``browser_memory_warn_mb`` is warned about. ``statements``: the old app's statements, run in the
    same sql.js job (one load of the file) after every check that reads the data, rolled back (``statements``
    in the report; each that fails is a problem). ``schema``: the snapshot's, when the caller has read it (else
    read here)."""
    t0 = time.perf_counter()
    rep = VerifyReport(level)
    quick = level == "quick"
    # every read of the snapshot here, in one read transaction
    with contextlib.closing(connect(snapshot, readonly=True)) as source, read_transaction(source):
        view = source_view(source, plan, schema)
        terms = [] if quick else list(fts_queries or []) + search_terms(source, plan.search, sample_terms)
        searches = [(p, q) for p in plan.search if p.source not in repaired for q in terms]
        job = _build_job(
            plan,
            view.specs,
            level,
            searches,
            [] if quick else list(queries or []),
            list(timed or []),
            runs,
            statements.actions() if statements else [],
        )
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(engine.run, target, job.actions)
            in_browser = (
                None
                if browser is None
                else pool.submit(browser.with_stand_ins(plan.stand_ins).run, target, job.actions)
            )
            target_d, stored = target_side(rep, target, view.specs, snapshot, quick, level == "deep")
            given = {} if quick else snapshot_digests_ or {}
            try:
                snap = {s.table: given[s.table] for s in view.specs if s.table in given}
                snap |= snapshot_digests(snapshot, source, [s for s in view.specs if s.table not in given], quick)
            except (apsw.Error, UnicodeDecodeError) as err:
                future.cancel()
                raise database_error(snapshot, err) from err
            run = future.result()
            if in_browser:
                rep.browser = browser_check(job.tags, run, in_browser.result(), browser_memory_warn_mb)
                if rep.browser["difference"]:
                    rep.problems.append(f"in the browser: {rep.browser['difference']}")
        job.results = dict(zip(job.tags, run.results, strict=True))
        rep.sqljs_version, rep.sqljs_peak_rss = run.version, run.peak_rss_bytes
        rep.timings = [as_fields(summarize(sql, without_warmup(job[f"time:{sql}"]))) for sql in timed or []]
        sqljs_d = _sqljs_digests(view.specs, job, quick)
        for spec in view.specs:
            s, t, j = snap.get(spec.table), target_d.get(spec.table), sqljs_d.get(spec.table)
            if not quick and s and j and s.digest != j.digest and t and not t.digest:
                t = _apsw_digest(target, spec)  # which side is wrong: the file, or how sql.js reads it?
            ok = (
                s is not None
                and t is not None
                and j is not None
                and s.rows == t.rows == j.rows
                and (quick or (s.digest == j.digest and t.digest in ("", j.digest)))
            )
            sides = (_digest_json(s), _digest_json(t), _digest_json(j))
            rep.tables.append(TableCheck(spec.table, *sides, ok, "equal" if ok else "differs"))
            if ok and not quick and j:
                rep.proved.append((spec, j))
            if not ok:
                where = None if quick else _first_difference(snapshot, target, spec, engine)
                error = job[f"{'count' if quick else 'digest'}:{spec.table}"].get("error")
                rep.problems.append(
                    f"table {spec.table}: content differs (snapshot {sides[0]}, target {sides[1]}, "
                    f"sql.js {sides[2] or error})" + (f"; {where}" if where else "")
                )
        planned = planned_schema(plan)
        sqljs_schema = job["schema"]
        if not sqljs_schema["ok"] and "pragma_table_list" in sqljs_schema["error"]:  # a target engine's SQLite < 3.37
            sqljs_schema = _schema_before_3_37(rep, target, engine, browser)
        js_rows: list[Sequence[Any]] = [[decode_typed(v) for v in row] for row in sqljs_schema.get("rows", [])]
        _schema_checks(
            rep, planned, {"apsw": stored, "sql.js": js_rows if sqljs_schema["ok"] else sqljs_schema["error"]}
        )
        for d in plan.refused:  # no target failback builds can hold it: the source's object is not in the target
            rep.add(Check("schema", f"{d.kind} {d.name}", False, f"the target engine cannot hold it: {d.reason}"))
        rep.tables += [TableCheck(n, None, None, None, True, "dropped", why) for n, why in view.dropped.items()]
        rep.tables += [
            TableCheck(n, None, None, None, True, "unreadable", f"its SELECT fails in the snapshot too: {err}")
            for n, err in view.unreadable.items()
        ]
        if quick:
            rep.deferred = [
                "integrity_check",
                "content digests",
                "search parity",
                "app queries",
                "object proofs",
                "write round trip",
            ]
        else:
            _checks(rep, plan, job, source, searches, list(queries or []), level, planned, js_rows)
            for name in sorted({p.source for p in plan.search} & set(repaired)):
                rep.add(
                    Check("search", name, True, "not compared: the source's index is malformed, rebuilt in the target")
                )
        if statements:  # last: the problems of the data and the schema come first
            rep.add_statements(statements.checks([job[tag] for tag in job.tags if tag.startswith("statement:")]))
    rep.seconds = time.perf_counter() - t0
    return rep


def _schema_before_3_37(rep: VerifyReport, target: Path, engine: Engine, browser: Engine | None) -> Result:
    """The stored schema as an engine whose SQLite predates 3.37 lists it (run on its own, only where the job's
    ``schema`` failed so), in the browser too when there is one: a difference is the browser's, as in the job."""
    actions: list[dict[str, Any]] = [{"op": "query", "sql": STORED_SCHEMA_SQL_BEFORE_3_37}]
    node = engine.run(target, actions).results[0]
    if browser is not None and rep.browser is not None:
        difference = _result_difference("schema-before-3.37", node, browser.run(target, actions).results[0])
        if difference and not rep.browser["difference"]:
            rep.browser["difference"] = difference
            rep.problems.append(f"in the browser: {difference}")
    return node


def browser_check(tags: list[str], node: EngineRun, browser: EngineRun, warn_mb: int | None) -> dict[str, Any]:
    """What a browser engine's run of the job (``tags``: its actions' tags) says beside Node's: its version,
    time and memory, the first action whose result differs from Node's (timings are not compared), and a
    warning when the tab's peak memory exceeds ``warn_mb``."""
    found = (_result_difference(tag, a, b) for tag, a, b in zip(tags, node.results, browser.results, strict=True))
    difference = next(filter(None, found), None)
    if difference is None and node.version != browser.version:
        difference = f"SQLite {browser.version}, Node's sql.js {node.version}"
    peak = browser.peak_rss_bytes or browser.peak_js_heap_bytes
    warning = None
    if warn_mb is not None and peak is not None and peak > warn_mb * 2**20:
        warning = (
            f"the tab peaked at {peak / 2**20:.0f} MB, above the {warn_mb} MB mobile browsers may hold: "
            "phones may reload or kill the app while it loads the database"
        )
    return {
        "version": browser.version,
        "seconds": round(browser.seconds, 3),
        "peak_tab_bytes": browser.peak_rss_bytes,
        "peak_js_heap_bytes": browser.peak_js_heap_bytes,
        "difference": difference,
        "warning": warning,
    }


def _result_difference(tag: str, node: Result, browser: Result) -> str | None:
    """How one action's result in the browser differs from Node's; None when equal, or a timing (never
    compared)."""
    kind, _, name = tag.partition(":")
    if kind == "time":
        return None
    what = f"table {name}" if kind in ("digest", "count") else f"{kind} {name}"
    if node == browser:  # a trigger proof's EXPLAIN keeps only the trigger programs' first rows: no addresses
        return None
    if node.get("ok") != browser.get("ok"):
        said = {True: "succeeds", False: "fails"}
        return (
            f"{what}: {said[bool(browser.get('ok'))]} in the browser ({browser.get('error', 'ok')}), "
            f"{said[bool(node.get('ok'))]} in Node ({node.get('error', 'ok')})"
        )
    return f"{what}: the browser gives {_short(json.dumps(browser))}, Node {_short(json.dumps(node))}"


def _quick_check(conn: apsw.Connection) -> str:
    """quick_check of every ordinary table and its indexes: the FTS index's own b-trees (just rebuilt from the
    text) are left to the full integrity_check, which is deferred to the verification debt."""
    tables = [
        name for schema, name, kind, *_ in conn.execute("PRAGMA table_list") if (schema, kind) == ("main", "table")
    ]
    problems = [f"{t}: {r}" for t in tables if (r := conn.execute(f"PRAGMA quick_check({quote(t)})").get) != "ok"]
    return "; ".join(problems) or "ok"


def _apsw_digest(target: Path, spec: DigestSpec) -> TableDigest | None:
    conn = connect(target, readonly=True)
    try:
        return table_digest(conn, spec)
    except (apsw.Error, UnicodeDecodeError):
        return None
    finally:
        conn.close()


def _first_difference(snapshot: Path, target: Path, spec: DigestSpec, engine: Engine) -> str | None:
    """Name the first row (by rowid, else by its values) that differs between the snapshot and the target as
    the target engine reads it."""
    action = {
        "op": "row_hashes",
        "table": spec.to_json(),
        "order_by": None if spec.rowid else list(spec.columns),
    }
    try:
        mine = get_engine(SOURCE_ENGINE).run(snapshot, [action]).results[0]
        theirs = engine.run(target, [action]).results[0]
    except FailbackError:
        return None
    if not (mine["ok"] and theirs["ok"]):
        return None
    return first_difference(mine["rows"], theirs["rows"], "snapshot", engine.name)


def target_side(
    rep: VerifyReport, target: Path, specs: list[DigestSpec], snapshot: Path, quick: bool, deep: bool
) -> tuple[dict[str, TableDigest], list[Sequence[Any]] | str]:
    """The target read by apsw: its stored schema (or why it cannot be read), integrity (quick_check at level
    quick), foreign keys, row counts, and content digests at level deep; a table apsw cannot read in the target
    is left out (and so differs).

    Why the whole-file ``integrity_check`` (measured on the converted 1 GB notes file, 2 busy cores): it is every
    b-tree's check (``integrity_check(table)`` of each ordinary and shadow table: 1.6 s), the FTS indexes'
    re-tokenizing check (their ``xIntegrity``, as FTS4 'integrity-check': 4.6–4.8 s) and, which no per-table
    check does, the page accounting across b-trees (pages never used or used twice, the freelist): 6.8 s in
    all. Per-table checks plus FTS4 'integrity-check' cost the same (6.2 s) and miss the page accounting;
    without the FTS check they would leave the index to search parity, which tries a few terms only."""
    try:
        conn = connect(target, readonly=True)
    except FailbackError as err:
        rep.problems.append(f"target cannot be opened: {err}")
        return {}, str(err)
    digests = {}
    try:
        with read_transaction(conn):
            stored: list[Sequence[Any]] | str = list(conn.execute(STORED_SCHEMA_SQL))
            rep.integrity = _quick_check(conn) if quick else conn.execute("PRAGMA integrity_check").get
            if rep.integrity != "ok":
                rep.problems.append(f"target integrity: {rep.integrity}")
            rep.foreign_keys = len(list(conn.execute("PRAGMA foreign_key_check")))
            for s in specs:  # counts; content is read by sql.js (by apsw too at deep, or where they disagree)
                with contextlib.suppress(apsw.SQLError):
                    digests[s.table] = (
                        table_digest(conn, s) if deep else TableDigest(s.table, conn.execute(_count_sql(s)).get, "")
                    )
    except (apsw.Error, UnicodeDecodeError) as err:
        rep.problems.append(f"target cannot be read by apsw: {err}")
        return {}, str(err)
    finally:
        conn.close()
    if rep.foreign_keys:
        before = _fk_count(snapshot)
        if rep.foreign_keys > before:
            rep.problems.append(f"{rep.foreign_keys} foreign key violation(s) in the target ({before} in the snapshot)")
    return digests, stored


def _fk_count(snapshot: Path) -> int:
    conn = connect(snapshot, readonly=True)
    try:
        return len(list(conn.execute("PRAGMA foreign_key_check")))
    finally:
        conn.close()


def _sqljs_digests(specs: list[DigestSpec], job: _Job, quick: bool) -> dict[str, TableDigest]:
    if quick:
        return {
            s.table: TableDigest(s.table, int(str(decode_typed(job[f"count:{s.table}"]["rows"][0][0]))), "")
            for s in specs
            if job[f"count:{s.table}"]["ok"]
        }
    found = (job[f"digest:{s.table}"] for s in specs)
    return {d["table"]: TableDigest(d["table"], d["rows"], d["digest"]) for r in found if r["ok"] for d in r["tables"]}


def _trigger_check(name: str, results: list[dict[str, Any]], covered: list[str], present: set[str]) -> Check:
    """A trigger is proved when it is in the target and the target's own statements for its event, EXPLAINed in
    sql.js, run its program (so its body compiles there and it fires)."""
    errors = [r["error"] for r in results if not r["ok"]]
    fired = _fired(results)
    missing = [t for t in covered if t.lower() not in present]
    silent = [t for t in covered if t.lower() in present and t.lower() not in fired]
    problems = [*errors]
    problems += [f"not in the target: {', '.join(missing)}"] if missing or not covered else []
    problems += [f"does not fire on its event: {', '.join(silent)}"] if silent else []
    ok = not problems
    return Check(
        "trigger prepares in sql.js", name, ok, "in the target, fires on its event" if ok else "; ".join(problems)
    )


def _source_query(conn: apsw.Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[int, str] | str:
    """(row count, digest) of a query on the snapshot (``conn``), or the error text."""
    try:
        with contextlib.closing(conn.execute(sql, params)) as rows:
            n, total = digest_rows(rows)
        return n, f"{total:032x}"
    except apsw.Error as err:
        return str(err)


def _checks(
    rep: VerifyReport,
    plan: Plan,
    job: _Job,
    source: apsw.Connection,
    searches: list[tuple[SearchPair, str]],
    queries: list[str],
    level: str,
    planned: PlannedSchema,
    target_rows: list[Sequence[Any]],
) -> None:
    for pair, q in searches:
        r = job[f"search:{pair.target}:{q}"]
        src = _source_query(source, f"SELECT rowid FROM {quote(pair.source)} WHERE {quote(pair.source)} MATCH ?", (q,))
        if isinstance(src, str):
            rep.add(
                Check(
                    "search",
                    f"{pair.source} MATCH {q!r}",
                    True,
                    f"not comparable: the source cannot run it ({src})",
                )
            )
            continue
        got = f"{r['count']} in sql.js" if r["ok"] else f"sql.js: {r['error']}"
        rep.add(
            Check(
                "search",
                f"{pair.source} MATCH {q!r}",
                r["ok"] and (r["count"], r["digest"]) == src,
                f"{src[0]} hit(s) in the source, {got}",
            )
        )
    for sql in queries:
        r = job[f"query:{sql}"]
        src = _source_query(source, sql)
        ok = r["ok"] and not isinstance(src, str) and (r["count"], r["digest"]) == src
        mine = src if isinstance(src, str) else f"{src[0]} row(s)"
        rep.add(
            Check(
                "query",
                sql,
                ok,
                f"source {mine}, sql.js " + (f"{r['count']} row(s)" if r["ok"] else r["error"]),
            )
        )
    triggers = [o.name for o in planned.objects.values() if o.type == "trigger"]
    present = {row[1].lower() for row in target_rows if row[0] == "trigger"}
    for proof in plan.proofs:
        if proof.kind == "trigger":
            results = [job[f"proof:trigger:{proof.name}:{i}"] for i in range(len(_statements(proof.sql)))]
            rep.add(_trigger_check(proof.name, results, covered_triggers(proof.name, triggers), present))
        else:
            r = job[f"proof:{proof.kind}:{proof.name}"]
            rep.add(Check(f"{proof.kind} prepares in sql.js", proof.name, r["ok"], r.get("error", "")))
    for pair in (p for p in plan.search if p.content):
        steps = [job[f"write:{pair.target}:{i}"] for i in range(6)]
        hits = [len(s.get("rows", [])) if s["ok"] else -1 for s in steps[1:6:2]]
        errors = [s["error"] for s in steps if not s["ok"]]
        ok = not errors and hits == [1, 0, 1]
        detail = "update → 1 hit, delete → 0, insert → 1" if ok else f"hits {hits}; {'; '.join(errors)}"
        rep.add(Check("writes through sync triggers", f"{pair.content} → {pair.target}", ok, detail))
    if level == "deep":
        r = job["integrity"]
        rows = [decode_typed(x[0]) for x in r.get("rows", [])] if r["ok"] else [r["error"]]
        rep.add(Check("sql.js integrity_check", "main", rows == ["ok"], ", ".join(map(str, rows))))
        for pair in plan.search:
            r = job[f"fts-integrity:{pair.target}"]
            rep.add(Check("sql.js FTS integrity-check", pair.target, r["ok"], r.get("error", "")))
