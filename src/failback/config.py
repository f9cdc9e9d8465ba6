"""failback.toml: the pydantic model, loading with one-line errors, and path resolution.

Every path (``ConfigPath``) has ``~`` and ``$VAR``/``${VAR}`` expanded when the file is loaded (an unset variable
is an error naming it); relative paths are then relative to the folder that holds failback.toml. Unknown keys
are errors (a typo must not silently disable a safety setting). docs/config.md is generated from this model.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .state import StatePaths

DEFAULT_NAME = "failback.toml"
ROLLBACK_VALUE = "sqljs"  # the provider value a rollback switches the app to, unless [app] rollback_value says
DEFAULT_PROFILE = "sqljs-1.16.0"  # the target profile when none is named: the browser app's pinned sql.js
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ENV_VALUE = re.compile(r"[A-Za-z0-9_.:/@%+,=-]+")
_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*/(-1|[0-9]{1,3})")
_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_path(value: object) -> object:
    """A path from failback.toml with a leading ``~`` (or ``~user``) and every ``$VAR``/``${VAR}`` expanded, as a
    shell would; an unknown user or an unset variable is an error naming it. Non-strings are left to pydantic."""
    if not isinstance(value, str):
        return value
    text = os.path.expanduser(value)
    if text.startswith("~"):
        raise ValueError(f"{text.split('/', 1)[0]}: no such user (in {value!r})")

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set (in {value!r})")
        return os.environ[name]

    return _ENV_REF.sub(variable, text)


ConfigPath = Annotated[Path, BeforeValidator(expand_path)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    path: ConfigPath = Field(description="The live native (GRDB) SQLite database. Only ever read.")


class TargetConfig(_Section):
    path: ConfigPath = Field(description="The sql.js database file the app loads; replaced by the converted one.")
    profile: str = Field(DEFAULT_PROFILE, description="Capability profile of the target engine (name or file).")
    user_version: Literal["source", "previous"] | int = Field(
        "previous",
        description='PRAGMA user_version of the result: "previous" (default) keeps the old sql.js file\'s, so the old '
        "app's migration runner opens the result as the version it knows (a newer one is commonly refused, an older "
        'one makes it run its migrations again); "source" keeps the native one; a number sets it. Without a '
        "previous file, the source's. A finding states the choice.",
    )
    engine_path: ConfigPath | None = Field(
        None,
        description="A folder holding the engine build the app ships (another sql.js build: sql-wasm.js and "
        "sql-wasm.wasm; for the sqlite-wasm engine, the @sqlite.org/sqlite-wasm package), run instead of the pinned "
        "one. FAILBACK_SQLJS_DIR wins over it, and a profile probed with --engine-path runs the build it records.",
    )


class AppConfig(_Section):
    config: ConfigPath = Field(description="The app's provider configuration file (.env or .json).")
    key: str = Field("DATABASE_PROVIDER", description="The key that selects the provider.")
    native_value: str = Field("native", description="The value that selects the native provider.")
    rollback_value: str = Field(ROLLBACK_VALUE, description="The value written on rollback.")
    path_key: str | None = Field(
        None,
        description="The key that names the file the app loads under the rollback provider (e.g. "
        "SQLJS_DATABASE_PATH; relative values are relative to the app config's folder). When set, a rollback "
        "refuses unless it names [target] path.",
    )
    functions: list[str] = Field(
        [],
        description='SQL functions the sql.js app registers itself (db.create_function), as "name/arity" strings '
        '(arity -1: any number of arguments), e.g. ["app_norm/1", "title_sort/-1"]. Views, triggers, column '
        "defaults and CHECK constraints calling one are kept as they are (proved with a stand-in that returns "
        "NULL, a finding says the app must register it); an index or generated column calling one is refused "
        "(sql.js registers app functions as non-deterministic, which SQLite forbids there). An app function not "
        "declared here is refused unless [convert] allow_drop names the object.",
    )

    old_schema: ConfigPath | None = Field(
        None,
        alias="schema",
        description="The schema the old sql.js app knows: a .sql file, or a folder of migration .sql files run in "
        "name order (default: the previous target file, the old sql.js database). `assess` reports each drift "
        "from it: objects added, dropped, renamed or changed, with what it breaks in the old app.",
    )
    statements: list[str] | ConfigPath = Field(
        [],
        description="The old app's own SQL statements (reads and writes, with ? or :name placeholders), inline or a "
        "file of them separated by semicolons. Each is run in the target engine on the result, inside a "
        "transaction rolled back, with parameters drawn from the data; one that fails is a finding.",
    )

    # The key and value are written unquoted into the app's .env, a file shells often source: nothing a shell
    # would interpret (spaces, quotes, $, `, ;, |, &, #, newlines, …) may reach it.
    @field_validator("key", "path_key")
    @classmethod
    def _plain_key(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_KEY.fullmatch(v):
            raise ValueError("must be a plain name (letters, digits, _ . -; not starting with a digit)")
        return v

    @field_validator("functions")
    @classmethod
    def _function_names(cls, v: list[str]) -> list[str]:
        for entry in v:
            if not _FUNCTION.fullmatch(entry):
                raise ValueError(f'{entry!r} is not "name/arity" (a plain SQL name, arity -1 or 0-999)')
        return v

    @field_validator("native_value", "rollback_value")
    @classmethod
    def _plain_value(cls, v: str) -> str:
        if not _ENV_VALUE.fullmatch(v):
            raise ValueError("must be a plain word (letters, digits, _ . : / @ % + , = -): nothing a shell interprets")
        return v


class BackupConfig(_Section):
    dir: ConfigPath = Field(Path(".failback/backups"), description="Primary backup folder.")
    mirrors: list[ConfigPath] = Field([], description="Further folders that receive a verified copy of each backup.")
    min_layers: int = Field(1, ge=1, description="Verified copies required before a rollback continues.")
    zstd_level: int = Field(3, ge=1, le=22, description="zstd compression level.")
    threads: int = Field(
        2, ge=0, description="Cores a backup may use: zstd threads and digest processes (0 = one, in the caller)."
    )
    keep_last: int = Field(10, ge=1, description="Prune: always keep this many newest backups.")
    keep_within: str = Field("30d", description="Prune: keep every backup younger than this (e.g. 12h, 30d, 8w).")
    keep_daily: int = Field(14, ge=0, description="Prune: keep the newest backup of each of this many days.")

    @field_validator("keep_within")
    @classmethod
    def _duration(cls, v: str) -> str:
        from .backup.retention import parse_duration

        parse_duration(v)  # ValueError → a one-line ConfigError naming backup.keep_within
        return v


class ConvertConfig(_Section):
    collations: dict[str, str] = Field(
        {},
        description="Collation the target lacks -> collation to use instead. Unlisted ones are mapped by what "
        "they do: the known case-sensitive ones (swiftCompare, swiftLocalizedCompare, UNICODE) become BINARY, the "
        "case-insensitive ones (swiftCaseInsensitiveCompare, swiftLocalizedCaseInsensitiveCompare, "
        "swiftLocalizedStandardCompare, unicase, LOCALIZED) NOCASE, unknown names BINARY (never merges rows). "
        "See the runbook's table of collations.",
    )
    fts: dict[str, Literal["fts4", "plain"]] = Field(
        {}, description="FTS5 table -> 'fts4' (default: an FTS4 index) or 'plain' (text kept, no index)."
    )
    allow_drop: list[str] = Field(
        [], description="Objects the target cannot hold that may be dropped (otherwise the run stops)."
    )
    page_size: int | None = Field(None, description="Page size of the target (default: the source's).")
    down_to: Literal["source", "previous"] = Field(
        "source",
        alias="schema",
        description="\"previous\": down-convert to the old app's schema (the drift's old schema: [app] schema or the "
        "previous target file): every table or column the old app does not know is first saved, with its rows' "
        "rowids (or a WITHOUT ROWID table's key), into carry-over.sqlite in the run's folder, so roll-forward "
        'can put it back; verification proves target + carry-over hold all of the source. Default "source": the '
        "target keeps the source's schema.",
    )
    fill: dict[str, int | float | str] = Field(
        {},
        description='With schema = "previous": "table.column" -> the value of an old NOT NULL column without a '
        "default that the source lacks (without one, down-conversion is refused naming the column).",
    )


class VerifyConfig(_Section):
    fts_queries: list[str] = Field([], description="FTS MATCH queries whose hits must be equal in both engines.")
    sample_terms: int = Field(5, ge=0, description="Terms drawn from the data and searched in both engines.")
    queries: list[str] = Field([], description="The app's own queries; results must match in both engines.")
    browser: bool = Field(
        False,
        description="Also run the verification in headless Chromium (the same sql.js): its results must equal "
        "Node's, and the tab's peak memory is reported.",
    )
    browser_memory_warn_mb: int = Field(
        300, ge=1, description="Warn when the browser tab peaks above this many MB (what mobile browsers hold)."
    )


class AssessConfig(_Section):
    memory_warn_mb: int = Field(256, description="Target size that sql.js in a browser may struggle to load.")
    memory_critical_mb: int = Field(1024, description="Target size sql.js in a browser cannot load.")
    liveness_seconds: float = Field(1.0, ge=0, description="How long to watch the source for an active writer.")


class SyncConfig(_Section):
    pending_sql: list[str] = Field(
        [],
        description="Queries on the snapshot returning a count of unsynced changes and, optionally, the oldest "
        "pending time as a second column. Only reading is allowed (an authorizer refuses anything else).",
    )
    presets: bool = Field(True, description="Also look for known sync layouts (outbox, CloudKit metadata, flags).")


class BenchmarkConfig(_Section):
    queries: list[str] = Field([], description="The app's hot queries, timed in the target engine.")
    runs: int = Field(20, ge=1, description="Runs per query when recording or checking a baseline.")
    max_regression: float = Field(
        1.5, gt=0, description="Post-check flags a query whose p95 and p50 both exceed the baseline's × this."
    )
    min_delta_ms: float = Field(
        2.0, ge=0, description="…and whose p95 is at least this many milliseconds slower (less is noise)."
    )


class TriggerRule(_Section):
    name: str = Field(description="A name for the rule (shown in evaluations and the audit log).")
    metric: str = Field(
        "",
        description="Metric name (Prometheus/JSONL) or a built-in: probe.p50_ms, probe.p95_ms, probe.errors, "
        "integrity. With query: the name of the query's value (default: the query).",
    )
    query: str | None = Field(
        None,
        description="A PromQL expression asked of [triggers.promql] (an instant query), e.g. "
        '"histogram_quantile(0.95, rate(app_query_seconds_bucket[5m]))"; labels pick one of its series.',
    )
    op: Literal[">", ">=", "<", "<=", "==", "!="] = Field(">", description="Comparison with the threshold.")
    threshold: float | None = Field(None, description="Fixed threshold.")
    baseline_ratio: float | None = Field(None, description="Threshold as a ratio to the recorded baseline value.")
    for_: int = Field(
        3,
        alias="for",
        ge=1,
        description="Consecutive failing samples before the rule fires; only distinct fresh samples count.",
    )
    severity: Literal["warn", "rollback", "emergency"] = Field("rollback", description="What firing does.")
    labels: dict[str, str] = Field({}, description="Prometheus labels a sample must carry.")

    @model_validator(mode="after")
    def _named(self) -> TriggerRule:
        if not self.metric:
            if not self.query:
                raise ValueError(f"rule {self.name!r}: set metric or query")
            self.metric = self.query
        return self


class PromqlConfig(_Section):
    url: str | None = Field(
        None,
        description="A Prometheus server's base URL (e.g. https://prometheus.example:9090); rules with a query are "
        "asked of its /api/v1/query. A query error makes the sample inconclusive, with the reason.",
    )
    bearer_token_env: str | None = Field(None, description="Environment variable holding a bearer token.")
    basic_user: str | None = Field(None, description="User name for basic auth (the password: basic_password_env).")
    basic_password_env: str | None = Field(None, description="Environment variable holding the basic-auth password.")
    tls_verify: bool = Field(True, description="Verify the server's TLS certificate (https URLs).")
    ca_file: ConfigPath | None = Field(None, description="CA bundle to verify the server with (default: the system's).")
    timeout: float | None = Field(
        None, gt=0, description="Seconds one query may take in full. Default: the interval, between 1 and 10 s."
    )
    max_bytes: int = Field(16 << 20, ge=1024, description="Largest answer read; a larger one is a query error.")
    max_age: float | None = Field(
        None,
        gt=0,
        description="Seconds the data behind a query stays fresh (see freshness). Default: 3 × interval, at least "
        "60 s. Staler data is inconclusive, never a failure.",
    )
    freshness: str = Field(
        "up",
        description='The scrape targets behind the rules, as an instant-vector selector (e.g. up{job="app"}): a '
        "query's value is fresh only while each of them was scraped successfully within max_age; its time is the "
        "oldest of their last successful scrapes, so a value is counted once per scrape.",
    )


class TriggersConfig(_Section):
    interval: float = Field(30.0, gt=0, description="Seconds between evaluations.")
    inconclusive: Literal["keep", "pause", "fail"] = Field(
        "keep", description="A missing or non-numeric sample: keep watching, pause the rule, or count as failure."
    )
    prometheus_url: str | None = Field(
        None,
        description="The app's /metrics endpoint (Prometheus text format). A request has the interval (between 1 "
        "and 10 s) to complete; a slower or trickling answer makes the sample inconclusive.",
    )
    prometheus_max_age: float | None = Field(
        None,
        gt=0,
        description="Seconds a /metrics value stays fresh (its exposition timestamp, else the time it was read). "
        "Default: 3 × interval, at least 60 s. An older value is inconclusive, never a failure.",
    )
    jsonl_path: ConfigPath | None = Field(
        None,
        description='A JSONL file of metrics the app appends to. A line\'s "time" (epoch seconds or ISO 8601) is '
        "when its values were measured; a line without one is as old as the file (its mtime).",
    )
    jsonl_max_age: float | None = Field(
        None,
        gt=0,
        description="Seconds a JSONL line stays fresh. Default: 3 × interval, at least 60 s. An older line, or the "
        "same line read again, is inconclusive, never a failure.",
    )
    promql: PromqlConfig = Field(PromqlConfig(), description="A Prometheus server the query rules are asked of.")
    probe: bool = Field(False, description="Run the benchmark queries against the live database as a probe.")
    cooldown: float = Field(
        900.0,
        ge=0,
        description="Seconds after an automatic rollback during which watch (even restarted) rolls back no more: "
        "due rules stay due, the evaluations say why.",
    )
    flap_window: int = Field(10, ge=2, description="Conclusive samples looked at to tell a flapping rule.")
    flap_changes: int = Field(
        4, ge=1, description="A rule that flips between passing and failing this often within flap_window is flapping."
    )
    rules: list[TriggerRule] = Field([], description="The policy: [[triggers.rules]] tables.")

    def max_age(self, configured: float | None) -> float:
        """A source's freshness limit: ``configured``, or 3 × interval and at least 60 s."""
        return configured if configured is not None else max(60.0, 3 * self.interval)


class MetricsConfig(_Section):
    textfile: ConfigPath | None = Field(
        None,
        description="Where failback's own metrics are written (Prometheus text format, atomically, after every run "
        "and watch sample), e.g. node_exporter's textfile folder/failback.prom. Default: <state_dir>/metrics.prom.",
    )


NotifyEvent = Literal[
    "rollback.fired",
    "rollback.done",
    "rollback.refused",
    "rollback.failed",
    "hold",
    "release",
    "debt.left",
    "debt.paid",
]


class NotifyConfig(_Section):
    url: str | None = Field(None, description="The webhook receiving a POST per event.")
    url_env: str | None = Field(
        None, description="Environment variable holding the webhook URL (when the URL is a secret, as Slack's are)."
    )
    format: Literal["json", "slack"] = Field(
        "json", description='"json": the event as a JSON object; "slack": {"text": …} for a Slack incoming webhook.'
    )
    events: list[NotifyEvent] = Field(
        [],
        description="The events sent (default: all): rollback.fired, rollback.done, rollback.refused, "
        "rollback.failed, hold, release, debt.left, debt.paid.",
    )
    bearer_token_env: str | None = Field(None, description="Environment variable holding a bearer token to send.")
    retries: int = Field(4, ge=0, le=10, description="Retries of a failed delivery, 1, 2, 4 … s apart.")
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds one delivery attempt may take.")

    @model_validator(mode="after")
    def _one_url(self) -> NotifyConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of url and url_env")
        return self


class Config(_Section):
    """The whole failback.toml."""

    source: SourceConfig
    target: TargetConfig
    app: AppConfig
    backup: BackupConfig = BackupConfig()
    convert: ConvertConfig = ConvertConfig()
    verify: VerifyConfig = VerifyConfig()
    assess: AssessConfig = AssessConfig()
    sync: SyncConfig = SyncConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    triggers: TriggersConfig = TriggersConfig()
    metrics: MetricsConfig = MetricsConfig()
    notify: list[NotifyConfig] = Field(
        [],
        description="[[notify]] webhooks told of automatic and manual rollbacks, holds and verification debt; "
        "delivered in the background (never delaying or failing a run), each delivery in the audit log.",
    )
    state_dir: ConfigPath = Field(Path(".failback"), description="Run directories, audit log and lock.")
    base: Path = Field(Path("."), exclude=True, description="Folder of failback.toml (set when loaded).")
    file: Path = Field(Path(DEFAULT_NAME), exclude=True, description="The failback.toml loaded (set when loaded).")

    @field_validator("state_dir")
    @classmethod
    def _not_empty(cls, v: Path) -> Path:
        if not str(v).strip():
            raise ValueError("must not be empty")
        return v

    def resolve(self, p: Path) -> Path:
        """An absolute path for a path from the config (relative ones are relative to failback.toml)."""
        return p if p.is_absolute() else (self.base / p)

    @property
    def source_path(self) -> Path:
        return self.resolve(self.source.path)

    @property
    def target_path(self) -> Path:
        return self.resolve(self.target.path)

    @property
    def app_config_path(self) -> Path:
        return self.resolve(self.app.config)

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def metrics_textfile(self) -> Path:
        """Where failback's own metrics are written."""
        return self.resolve(self.metrics.textfile) if self.metrics.textfile else self.state.metrics

    @property
    def state(self) -> StatePaths:
        """The paths of the state folder."""
        return StatePaths(self.state_path)

    @property
    def backup_layers(self) -> list[Path]:
        return [self.resolve(self.backup.dir), *(self.resolve(m) for m in self.backup.mirrors)]


TENANT_PLACEHOLDER = "{tenant}"


def load_config(path: str | os.PathLike[str] = DEFAULT_NAME, tenant: str | None = None) -> Config:
    """Load and validate failback.toml; every problem becomes a one-line ConfigError. A fleet's template config
    holds ``{tenant}`` placeholders: ``tenant`` is put in their place (docs/fleet.md)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file", "create failback.toml (see docs/config.md) or pass -c PATH"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    if tenant is not None:
        text = text.replace(TENANT_PLACEHOLDER, tenant)
    elif TENANT_PLACEHOLDER in text:
        raise ConfigError(
            f"{path}: a fleet template ({TENANT_PLACEHOLDER} placeholders), not one app's config",
            "run it with `failback fleet` (docs/fleet.md), or write the tenant's own failback.toml",
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None
    cfg.base, cfg.file = path.resolve().parent, path
    return cfg
