"""Gathering the facts (effects): sizes, disk, schema, target fit, migration state; then the assessment."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import apsw

from ..config import Config
from ..db import sqltext
from ..db.collations import CollationMerge
from ..db.connect import connect, database_error, open_source, quote, read_transaction, readonly_uri
from ..db.schema import Schema, read_schema
from ..errors import NotADatabaseError
from ..files import free_bytes
from ..mode import STANDARD, ModePolicy
from ..plan.model import Plan
from ..profiles import Profile, function_declared, load_profile
from .calibration import calibration, measure_compression
from .drift import AppSchema, Drift, load_old_schema, old_app_drift
from .facts import MB, DiskNeed, Facts, Liveness, SideFiles, TableSize
from .liveness import observe_sides, start_watch
from .pending import pending_changes, run_probe
from .rules import JS_SAFE_INTEGER, disk_parts, estimate_steps, limit_checks


# -- snapshot facts -----------------------------------------------------------------------------------
def collation_merges(conn: apsw.Connection, mapping: dict[str, str], shown: int = 5) -> list[CollationMerge]:
    """Unique keys (UNIQUE, PRIMARY KEY, unique indexes) using a collation the plan maps (``mapping``: source
    collation -> the target's) under which rows of the snapshot collide: grouped by the target's collations,
    NULL keys left out (they never collide), a partial index's condition kept. Up to ``shown`` colliding keys
    per index are named. Keys on expressions are not probed; a key mapped to BINARY only (which never makes
    distinct values equal) needs no probe."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    keys: dict[tuple[str, str, str | None], list[tuple[int, str, str]]] = {}
    for table, index, sql, cid, column, coll in conn.execute(
        "SELECT t.name, i.name, m.sql, x.cid, x.name, x.coll"
        " FROM pragma_table_list AS t, pragma_index_list(t.name) AS i, pragma_index_xinfo(i.name) AS x"
        " LEFT JOIN main.sqlite_schema AS m ON m.name = i.name"
        " WHERE t.schema = 'main' AND t.type = 'table' AND i.\"unique\" AND x.key ORDER BY t.name, i.name, x.seqno"
    ):
        keys.setdefault((table, index, sql), []).append((cid, column or "", coll or "BINARY"))
    found = []
    for (table, index, sql), cols in keys.items():
        mapped = tuple((c, lowered[c.lower()]) for _, _, c in cols if lowered.get(c.lower(), "BINARY") != "BINARY")
        if not mapped or any(cid < 0 for cid, _, _ in cols):
            continue
        names = [quote(n) for _, n, _ in cols]
        group = ", ".join(f"{quote(n)} COLLATE {lowered.get(c.lower(), quote(c))}" for _, n, c in cols)
        where = [f"{q} IS NOT NULL" for q in names]
        if sql and (partial := sqltext.index_where(sql)):
            where.append(f"({partial})")
        probe = (
            f"SELECT json_group_array(json_array({', '.join(names)})) FROM main.{quote(table)}"
            f" WHERE {' AND '.join(where)} GROUP BY {group} HAVING count(*) > 1 LIMIT {int(shown)}"
        )
        groups = tuple(tuple(_key_text(v) for v in json.loads(r[0])) for r in conn.execute(probe))
        if groups:
            found.append(CollationMerge(table, index, mapped, groups))
    return found


UNIQUE_KEYS = "unique keys"  # what Facts.errors calls collation_merges when it failed in ``gather``


def gathered_merges(facts: Facts) -> list[CollationMerge] | None:
    """The collation merges ``gather`` found in the snapshot, None when it could not look (pure)."""
    return None if any(e.startswith(f"{UNIQUE_KEYS}: ") for e in facts.errors) else facts.collation_merges


def _key_text(values: list[Any]) -> str:
    return repr(values[0]) if len(values) == 1 else repr(tuple(values))


BtreePages = list[tuple[str, str, int, int]]  # per b-tree: the table it belongs to, its type, bytes, largest cell


def btree_pages(conn: apsw.Connection) -> BtreePages:
    """One dbstat scan: each b-tree's table (an index's table; its own name for one sqlite_schema does not list,
    such as sqlite_schema itself), type (``table``, ``index``, "" when unlisted), bytes and largest cell payload."""
    return [
        (table, kind, size, payload)
        for table, kind, size, payload in conn.execute(
            "SELECT coalesce(s.tbl_name, d.name), coalesce(s.type, ''), d.pgsize, d.mx_payload"
            " FROM dbstat('main', 1) AS d LEFT JOIN sqlite_schema AS s ON s.name = d.name"
        )
    ]


def table_sizes(conn: apsw.Connection, schema: Schema, pages: Callable[[], BtreePages] | None) -> dict[str, TableSize]:
    """Rows of every table; with ``pages`` (``btree_pages``), bytes and largest cell per table (indexes counted
    with it)."""
    sizes = {
        t.name: TableSize(rows=conn.execute(f"SELECT count(*) FROM {quote(t.name)}").get)
        for t in schema.user_tables()
        if t.kind == "table"
    }
    for name, _kind, size, payload in sorted(pages()) if pages else ():
        entry = sizes.setdefault(name, TableSize())
        entry.bytes = (entry.bytes or 0) + size
        entry.max_payload = max(entry.max_payload or 0, payload)
    return sizes


def stores_integers(declared: str) -> bool:
    """Whether a column of this declared type keeps an integer as an integer: INTEGER, NUMERIC or BLOB affinity by
    SQLite's rules (TEXT affinity turns it into text, REAL into a float) (pure)."""
    t = declared.upper()
    if "INT" in t:
        return True
    return not any(word in t for word in ("CHAR", "CLOB", "TEXT", "REAL", "FLOA", "DOUB"))


def _leading_index_columns(conn: apsw.Connection) -> dict[str, set[str]]:
    """Per table, the columns that lead a full (not partial) index of it: a range on them is a seek."""
    leading: dict[str, set[str]] = {}
    for table, column in conn.execute(
        "SELECT t.name, x.name FROM pragma_table_list AS t, pragma_index_list(t.name) AS i,"
        " pragma_index_info(i.name) AS x WHERE t.schema = 'main' AND NOT i.partial AND x.seqno = 0"
        " AND x.name IS NOT NULL"
    ):
        leading.setdefault(table, set()).add(column)
    return leading


def _beyond_js(column: str, sign: str = "") -> str:
    """SQL true for a value of ``column`` that is an integer beyond ±JS_SAFE_INTEGER (one side with ``sign``)."""
    c = quote(column)
    side = {"+": f"{c} > {JS_SAFE_INTEGER}", "-": f"{c} < -{JS_SAFE_INTEGER}"}
    test = side[sign] if sign else f"({side['+']} OR {side['-']})"
    return f"{test} AND typeof({c}) = 'integer'"


def big_integer_columns(conn: apsw.Connection, schema: Schema) -> list[str]:
    """``table.column`` of each column holding an integer beyond ±(2^53−1), which a JavaScript number rounds.

    Cost: one query per table. A rowid alias or a column leading an index is two seeks; the table's other
    integer-affinity columns share one scan of it (``max()`` of a test per column) that decodes no text column:
    84 ms for a 158 MB notes database here, against 11 ms for the row counts."""
    found = []
    leading = _leading_index_columns(conn)
    for t in schema.user_tables():
        cols = [c.name for c in t.visible_columns if t.kind == "table" and stores_integers(c.type)]
        if not cols:
            continue
        table = quote(t.name)
        seek = leading.get(t.name, set()) | ({t.rowid_alias} if t.rowid_alias else set())
        tests = [
            " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE {_beyond_js(c, sign)})" for sign in "+-")
            if c in seek
            else f"max({_beyond_js(c)})"
            for c in cols
        ]
        scan = f" FROM {table}" if any(c not in seek for c in cols) else ""
        [row] = conn.execute(f"SELECT {', '.join(tests)}{scan}")
        found += [f"{t.name}.{c}" for c, hit in zip(cols, row, strict=True) if hit]
    return found


def file_big_integers(path: Path) -> list[str]:
    """``big_integer_columns`` of a database file, read without writing (``failback plan`` shows them)."""
    conn = open_source(path)
    try:
        return big_integer_columns(conn, read_schema(conn))
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(path, err) from err
    finally:
        conn.close()


def largest_index(pages: BtreePages) -> int:
    """Bytes of the largest index (what sorting it may spill to temporary files) (pure)."""
    return max((size for _table, kind, size, _payload in pages if kind == "index"), default=0)


def foreign_keys(conn: apsw.Connection, schema: Schema) -> int:
    """Foreign-key constraints declared by the tables."""
    return sum(
        len({r[0] for r in conn.execute(f"PRAGMA foreign_key_list({quote(t.name)})")})
        for t in schema.user_tables()
        if t.kind == "table"
    )


def quick_check(path: Path) -> list[str]:
    """quick_check of every B-tree (tables with their indexes, shadow tables, the schema), on a connection of
    its own so that it can run beside the other readers; problems only."""
    conn = connect(path, readonly=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0")]
        problems: list[str] = []
        for name in ["sqlite_schema", *names]:
            try:
                problems += [r[0] for r in conn.execute(f"PRAGMA quick_check({quote(name)})") if r[0] != "ok"]
            except apsw.CorruptError as err:
                problems.append(f"{name}: {err}")
        return problems
    finally:
        conn.close()


def old_only_rows(conn: apsw.Connection, schema: Schema, old: Path) -> dict[str, int]:
    """Rows of the old sql.js file whose primary key is not in the database of ``conn``; raises apsw.Error
    when the old file cannot be read."""
    if not old.exists():
        return {}
    conn.execute("ATTACH ? AS old", (readonly_uri(old),))
    try:
        with read_transaction(conn):  # both files read under one lock each
            old_tables = {r[0] for r in conn.execute("SELECT name FROM old.sqlite_schema WHERE type = 'table'")}
            out: dict[str, int] = {}
            for t in schema.user_tables():
                keys = [c.name for c in sorted((c for c in t.columns if c.pk), key=lambda c: c.pk)]
                if t.kind != "table" or not keys or t.name not in old_tables:
                    continue
                old_cols = {r[1] for r in conn.execute(f"PRAGMA old.table_info({quote(t.name)})")}
                if not set(keys) <= old_cols:
                    continue
                same = " AND ".join(f"m.{quote(k)} = o.{quote(k)}" for k in keys)
                n = conn.execute(
                    f"SELECT count(*) FROM old.{quote(t.name)} AS o "
                    f"WHERE NOT EXISTS (SELECT 1 FROM main.{quote(t.name)} AS m WHERE {same})"
                ).get
                if n:
                    out[t.name] = n
            return out
    finally:
        conn.execute("DETACH old")


def grdb_migrations(conn: apsw.Connection, schema: Schema) -> list[str]:
    """Identifiers in ``grdb_migrations``, in the order they were applied."""
    if "grdb_migrations" not in schema.tables:
        return []
    return [r[0] for r in conn.execute("SELECT identifier FROM grdb_migrations ORDER BY rowid")]


def old_app_schema(cfg: Config) -> tuple[AppSchema, str] | None:
    """The schema the old app knows ([app] schema, else the previous target file) and where it came from."""
    return load_old_schema(_app_schema_path(cfg), cfg.target_path)


def _app_schema_path(cfg: Config) -> Path | None:
    """Where [app] schema points (None: unset)."""
    return cfg.resolve(cfg.app.old_schema) if cfg.app.old_schema else None


def schema_drift(cfg: Config, plan: Plan, profile: Profile) -> tuple[list[Drift], str]:
    """The drift of the database ``plan`` builds from the schema the old app knows, and where that schema came
    from ("" and no drift when none is known; none either with convert.schema = "previous": the result takes the
    old app's schema itself, what it lacks going to the carry-over)."""
    if cfg.convert.down_to == "previous":
        old = old_app_schema(cfg)
        return [], old[1] if old else ""
    registered = cfg.app.functions

    def missing(sql: str) -> list[str]:  # neither the engine nor the old app ([app] functions) has it
        calls = sqltext.function_calls(sql)
        lacks = [(n, a) for n, a in calls if not (profile.has_function(n, a) or function_declared(n, a, registered))]
        return list(dict.fromkeys(f"{n}/{a}" for n, a in lacks))

    missing_from = (tuple(profile.functions), tuple(registered))
    found = old_app_drift(_app_schema_path(cfg), cfg.target_path, plan, missing, missing_from)
    return found or ([], "")


# -- gather -------------------------------------------------------------------------------------------
def sqlite_temp_dir() -> Path:
    """Where SQLite writes its temporary (sort) files on Unix."""
    for candidate in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path.cwd()


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (where it will be created)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def folder_space(folders: list[Path]) -> dict[Path, tuple[int, int]]:
    """(file system id, free bytes) of each folder (of its nearest existing parent)."""
    space = {}
    for folder in folders:
        p = _nearest_existing(folder)
        space[folder] = (p.stat().st_dev, free_bytes(p))
    return space


def shared_disk_mirrors(layers: list[Path]) -> list[str]:
    """The mirrors (``layers[1:]``) on the primary's file system: their nearest existing folders share its device."""
    devices = [_nearest_existing(layer).stat().st_dev for layer in layers]
    return [str(mirror) for mirror, dev in zip(layers[1:], devices[1:], strict=True) if dev == devices[0]]


def disk_needs(parts: list[tuple[Path, str, int]], space: dict[Path, tuple[int, int]]) -> list[DiskNeed]:
    """Group what is written by file system: folders on one share its free space (pure)."""
    needs: dict[int, DiskNeed] = {}
    for folder, what, n in parts:
        dev, free = space[folder]
        need = needs.setdefault(dev, DiskNeed([], free, {}))
        if str(folder) not in need.folders:
            need.folders.append(str(folder))
        need.parts[what] = need.parts.get(what, 0) + n
    return list(needs.values())


class _Reader:
    """Runs fact readers on the snapshot; a reader that fails leaves its default and an error."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.errors: list[str] = []

    def read(self, what: str, fn: Callable[[apsw.Connection], Any], default: Any) -> Any:
        try:
            return fn(self.conn)
        except (apsw.Error, UnicodeDecodeError, NotADatabaseError) as err:
            self.errors.append(f"{what}: {err}")
            return default


def gather(
    cfg: Config,
    snapshot: Path,
    schema: Schema,
    plan: Plan,
    *,
    mode: ModePolicy = STANDARD,
    sides: SideFiles | None = None,
    watching: Future[Liveness] | None = None,
    checked: Sequence[str] | None = None,
) -> Facts:
    """Read every fact: the snapshot (quick_check in a second thread, unless ``checked`` holds the problems a
    quick_check of it already found: the run's source check), the live source (``watching``, a watch started
    beside the snapshot, else one started now in a third thread), the machine; the slow ones only when ``mode``
    reads them."""
    source = cfg.source_path
    profile = load_profile(cfg.target.profile)
    sides = sides or observe_sides(source)
    layers = mode.layers(cfg.backup_layers)
    temp = sqlite_temp_dir()
    space = folder_space([*layers, cfg.target_path.parent, cfg.state_path, temp])  # before the backup grows
    watching = watching or start_watch(source, cfg.assess.liveness_seconds, sides)
    with ThreadPoolExecutor(1) as pool:
        checking = pool.submit(quick_check, snapshot) if mode.quick_check and checked is None else None
        conn = connect(snapshot, readonly=True)
        r = _Reader(conn)
        try:
            old = r.read(f"old file {cfg.target_path}", lambda c: old_only_rows(c, schema, cfg.target_path), {})
            with read_transaction(conn):  # the snapshot's other facts: one lock for all (ATTACH needs none open)
                pages = functools.cache(lambda: btree_pages(conn)) if mode.dbstat else None  # one scan for both
                tables = r.read("table sizes", lambda c: table_sizes(c, schema, pages), {})
                sort_bytes = r.read("index sizes", lambda _: largest_index(pages()), 0) if pages else 0
                fks = r.read("foreign keys", lambda c: foreign_keys(c, schema), 0)
                presets = cfg.sync.presets
                pending = r.read("sync presets", lambda c: pending_changes(c, schema), []) if presets else []
                pending += [run_probe(conn, sql) for sql in cfg.sync.pending_sql]
                migrations = r.read("grdb_migrations", lambda c: grdb_migrations(c, schema), [])
                merges = r.read(UNIQUE_KEYS, lambda c: collation_merges(c, plan.collation_map), [])
                big = r.read("integers beyond 2^53", lambda c: big_integer_columns(c, schema), [])
            drift, drift_from = r.read("schema drift", lambda _: schema_drift(cfg, plan, profile), ([], ""))
            integrity = r.read("quick_check", lambda _: checking.result(), None) if checking else None
            if mode.quick_check and checked is not None:
                integrity = list(checked)
        finally:
            conn.close()
        cal = calibration(cfg, measure=mode.calibrate)
        liveness = watching.result()
    snapshot_bytes = snapshot.stat().st_size
    ratio, zstd_rate = measure_compression(snapshot, cfg.backup.zstd_level, cfg.backup.threads)
    target_bytes = max(0, snapshot_bytes - schema.freelist_count * schema.page_size)
    previous = cfg.target_path.stat().st_size if cfg.target_path.exists() else 0
    parts = disk_parts(
        target_bytes=target_bytes,
        previous_target_bytes=previous,
        snapshot_bytes=snapshot_bytes,
        zstd_ratio=ratio,
        layers=layers,
        target_dir=cfg.target_path.parent,
        state_dir=cfg.state_path,
        temp_dir=temp,
        sort_bytes=sort_bytes,
        previous_linked=space[cfg.target_path.parent][0] == space[cfg.state_path][0],
    )
    facts = Facts(
        mode=mode.name,
        source_bytes=source.stat().st_size,
        wal_bytes=sides.wal_bytes or 0,
        snapshot_bytes=snapshot_bytes,
        target_bytes=target_bytes,
        zstd_ratio=ratio,
        zstd_mb_per_s=zstd_rate,
        page_size=schema.page_size,
        free_pages=schema.freelist_count,
        tables=tables,
        counts={**schema.counts(), "foreign_keys": fks},
        plan_findings=[d.to_json() for d in plan.findings()],
        memory_warn_bytes=cfg.assess.memory_warn_mb * MB,
        memory_critical_bytes=cfg.assess.memory_critical_mb * MB,
        limits=limit_checks(schema, profile, tables),
        disk=disk_needs(parts, space),
        calibration=cal,
        pending=pending,
        liveness=liveness,
        integrity=integrity,
        migrations=migrations,
        old_only_rows=old,
        collation_merges=merges,
        shared_disk_mirrors=shared_disk_mirrors(cfg.backup_layers),
        big_integers=big,
        drift=drift,
        drift_from=drift_from,
        errors=r.errors,
        skipped=(["calibration"] if cal is None else []) + mode.skipped_facts(),
    )
    if cal is not None:
        facts.estimates = estimate_steps(cal, facts, len(layers))
    return facts
