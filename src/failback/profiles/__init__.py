"""Capability profiles: what a target engine can do, proved by statements that ran or failed in it.

Profiles are data files beside this module (``sqljs-1.16.0.toml``, ``sqlite-3.54.toml``); ``probe`` builds
one by running the same feature statements in a real engine, so conversions are decided from data.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config import TargetConfig
from ..engines import Engine, get_engine, with_build
from ..errors import ConfigError

HERE = Path(__file__).parent

# feature name -> statements (``@T`` = a table name of its own); present when they all succeed. They run in
# one database, in this order. Limits come from the compile options.
FEATURES: dict[str, str] = {
    "fts3": "CREATE VIRTUAL TABLE @T USING fts3(a); INSERT INTO @T VALUES('x'); SELECT * FROM @T WHERE @T MATCH 'x'",
    "fts4": "CREATE VIRTUAL TABLE @T USING fts4(a, tokenize=unicode61 'remove_diacritics=2', prefix='2');"
    " SELECT * FROM @T WHERE @T MATCH 'x*'",
    "fts5": "CREATE VIRTUAL TABLE @T USING fts5(a); SELECT * FROM @T WHERE @T MATCH 'x'",
    "fts5_trigram": "CREATE VIRTUAL TABLE @T USING fts5(a, tokenize='trigram')",
    "rtree": "CREATE VIRTUAL TABLE @T USING rtree(id, x0, x1)",
    "geopoly": "CREATE VIRTUAL TABLE @T USING geopoly(a)",
    "json": "SELECT json_extract('{\"a\":1}', '$.a'), json_group_array(1)",
    "jsonb": "SELECT jsonb('[1]')",
    "json_arrow": "SELECT '{\"a\":1}' ->> '$.a'",
    "math": "SELECT sin(1), ln(2), pow(2, 3)",
    "strict": "CREATE TABLE @T(a INTEGER) STRICT",
    "generated_columns": "CREATE TABLE @T(a INT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL,"
    " c INT GENERATED ALWAYS AS (a + 1) STORED)",
    "without_rowid": "CREATE TABLE @T(a PRIMARY KEY, b) WITHOUT ROWID",
    "returning": "CREATE TABLE @T(a); INSERT INTO @T VALUES(1) RETURNING a",
    "upsert": "CREATE TABLE @T(a PRIMARY KEY, b); INSERT INTO @T VALUES(1, 2) ON CONFLICT(a) DO UPDATE SET b = 3",
    "window_functions": "SELECT row_number() OVER (ORDER BY 1)",
    "recursive_cte": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT * FROM c",
    "dbstat": "SELECT * FROM dbstat LIMIT 1",
    "load_extension": "SELECT load_extension('x')",
}


class Profile(BaseModel):
    """A target engine's capabilities."""

    name: str
    engine: str
    engine_path: str = ""  # the engine build it was probed in (a sql.js dist/ folder); empty: the pinned one
    engine_version: str = ""
    sqlite_version: str
    compile_options: list[str] = []
    features: dict[str, bool]
    collations: list[str]
    functions: list[str] = []  # "name/arity" (-1: any number of arguments); empty: not probed
    limits: dict[str, int] = {}

    def has(self, feature: str) -> bool:
        return self.features.get(feature, False)

    def has_collation(self, name: str) -> bool:
        return name.upper() in {c.upper() for c in self.collations}

    def has_function(self, name: str, arity: int) -> bool:
        """True when the engine has ``name`` taking ``arity`` arguments (also when not probed: unknown)."""
        if not self.functions:
            return True
        return function_declared(name, arity, self.functions)

    @property
    def modules(self) -> set[str]:
        """Virtual-table modules the engine has."""
        return {m for m in ("fts3", "fts4", "fts5", "rtree", "geopoly") if self.has(m)} | (
            {"rtree_i32"} if self.has("rtree") else set()
        )

    def to_toml(self) -> str:
        """Serialise as TOML (flat keys, string lists, one table per mapping)."""
        lines = [
            "# Capability profile: written by `failback probe`; every feature was proved by a statement.",
            f"name = {_toml(self.name)}",
            f"engine = {_toml(self.engine)}",
            *([f"engine_path = {_toml(self.engine_path)}"] if self.engine_path else []),
            f"engine_version = {_toml(self.engine_version)}",
            f"sqlite_version = {_toml(self.sqlite_version)}",
            f"collations = {_toml(self.collations)}",
            f"functions = {_toml(self.functions)}",
            f"compile_options = {_toml(self.compile_options)}",
        ]
        for section in ("features", "limits"):
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml(v)}" for k, v in sorted(getattr(self, section).items())]
        return "\n".join(lines) + "\n"


def function_declared(name: str, arity: int, functions: list[str]) -> bool:
    """Does a list of ``name/arity`` entries hold ``name`` called with ``arity`` arguments? A negative arity
    takes any number (``PRAGMA function_list`` reports some built-ins as -3, -4). Names are case-insensitive."""
    for entry in functions:
        fname, _, farity = entry.rpartition("/")
        if fname.lower() == name.lower() and (int(farity) < 0 or int(farity) == arity):
            return True
    return False


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def shipped() -> list[str]:
    """Names of the profiles shipped with failback."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a shipped profile by name (``sqljs-1.16.0``) or a profile file by path."""
    path = HERE / f"{name_or_path}.toml" if str(name_or_path) in shipped() else Path(name_or_path)
    try:
        st = path.stat()
        return Profile.model_validate(_parsed(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
        raise ConfigError(
            f"no capability profile {name_or_path!s}",
            f"use one of {', '.join(shipped())} or a file written by `failback probe`",
        ) from None
    except OSError as err:
        raise ConfigError(f"profile {path}: cannot read ({err.strerror or err})") from None
    except (tomllib.TOMLDecodeError, ValidationError, UnicodeDecodeError) as err:
        raise ConfigError(f"profile {path}: invalid ({str(err).splitlines()[0]})") from None


@functools.lru_cache(maxsize=64)
def _parsed(path: str, dev: int, inode: int, size: int, mtime_ns: int) -> dict[str, Any]:
    """The TOML of the profile file at ``path``, parsed once per version of the file (its device, inode, size
    and mtime). Never handed out: each caller validates a Profile of its own from it (new lists and dicts, ~20x
    cheaper than a deep copy of a Profile)."""
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def _limits(options: list[str]) -> dict[str, int]:
    wanted = {"MAX_PAGE_SIZE", "MAX_COLUMN", "MAX_VARIABLE_NUMBER", "MAX_LENGTH", "MAX_SQL_LENGTH"}
    out = {"MAX_PAGE_SIZE": 65536, "MAX_COLUMN": 2000, "MAX_VARIABLE_NUMBER": 32766, "MAX_LENGTH": 1000000000}
    for opt in options:
        key, _, value = opt.partition("=")
        if key in wanted and value.isdigit():
            out[key] = int(value)
    return {k.lower(): v for k, v in out.items()}


def probe(engine: Engine, name: str, engine_version: str = "") -> Profile:
    """Build a profile by running every feature statement in ``engine`` on an empty database."""
    actions: list[dict[str, object]] = [
        {"op": "exec", "sql": sql.replace("@T", f"probe_{name}")} for name, sql in FEATURES.items()
    ]
    actions += [
        {"op": "query", "sql": "PRAGMA compile_options"},
        {"op": "query", "sql": "PRAGMA collation_list"},
        {"op": "query", "sql": "SELECT DISTINCT name || '/' || narg FROM pragma_function_list ORDER BY 1"},
    ]
    run = engine.run(None, actions)
    features = {n: bool(r["ok"]) for n, r in zip(FEATURES, run.results, strict=False)}
    options = [r[0] for r in run.results[-3]["rows"]]
    colls = sorted(r[1] for r in run.results[-2]["rows"])
    return Profile(
        name=name,
        engine=engine.name,
        engine_version=engine_version,
        sqlite_version=run.version,
        compile_options=options,
        features=features,
        collations=colls,
        functions=[r[0] for r in run.results[-1]["rows"]],
        limits=_limits(options),
    )


def probe_engine(engine: str, engine_path: Path | None = None) -> Profile:
    """Probe the registered engine called ``engine`` (e.g. ``sqljs``: Node + the pinned sql.js) into a profile;
    ``engine_path``: the build of it to probe (e.g. a sql.js dist/ folder), recorded in the profile, whose targets
    are then proved and verified in that build."""
    target = get_engine(engine)
    if engine_path is None:
        return probe(target, *target.identity())
    folder = engine_path.resolve()
    target = with_build(target, folder)
    return probe(target, *target.identity()).model_copy(update={"engine_path": str(folder)})


def target_engine(target: TargetConfig) -> Engine:
    """The engine ``[target]`` runs in: its profile's, with its ``engine_path`` (:func:`engine_for`)."""
    return engine_for(target.profile, target.engine_path)


def engine_for(profile: Profile | str | Path, engine_path: Path | None = None) -> Engine:
    """The engine a capability profile (or the profile of that name or file) names in its ``engine``: where its
    targets are proved and verified. The build it runs, first found first: the profile's ``engine_path``,
    FAILBACK_SQLJS_DIR (sql.js engines), ``engine_path`` (``[target] engine_path``), the pinned one. ConfigError
    naming the registered engines when none has that name."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    try:
        engine = get_engine(prof.engine)
        engine = with_build(engine, engine_path, configured=True) if engine_path else engine
        return with_build(engine, Path(prof.engine_path)) if prof.engine_path else engine
    except ConfigError as err:
        raise ConfigError(f"profile {prof.name}: {err.message}", err.hint) from None
