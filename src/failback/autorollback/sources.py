"""Metric sources of the automatic rollback: one class per kind (Prometheus, JSONL, the built-in probe and
integrity check) behind the ``MetricSource`` protocol, found through a registry by kind.

A new kind is one class with ``kind``, ``configured(cfg)`` (the source the config asks for, or None) and
``read()``, registered with ``register_source``; the watcher reads whatever ``configured_sources`` gives.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import apsw
from prometheus_client.parser import text_string_to_metric_families

from ..db.connect import connect
from ..errors import FailbackError
from ..pipeline.postcheck import probe_metrics, time_readonly
from .rules import INTEGRITY, Series

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "SOURCE_ERRORS",
    "IntegritySource",
    "JsonlSource",
    "MetricSource",
    "ProbeSource",
    "PrometheusSource",
    "PromqlSource",
    "configured_sources",
    "register_source",
]

JSONL_TAIL = 1 << 20  # bytes read from the end of the JSONL file
SOURCE_ERRORS = (OSError, ValueError, http.client.HTTPException, apsw.Error, FailbackError)  # what read() raises


MAX_METRICS_BYTES = 16 << 20  # a /metrics page larger than this is cut, not read whole


class MetricSource(Protocol):
    """One place the automatic rollback reads metrics from."""

    kind: ClassVar[str]  # the name in the watcher's audit records and in "kind: problem" sample errors

    def read(self) -> list[Series]:
        """The metrics now; raises one of SOURCE_ERRORS when they cannot be read (the rules using them are then
        inconclusive)."""
        ...


SourceFactory = Callable[["Config"], MetricSource | None]  # the source a config asks for; None: not configured
SOURCE_KINDS: dict[str, SourceFactory] = {}


def register_source(kind: str, factory: SourceFactory) -> None:
    """Make ``factory`` the way a config's source of ``kind`` is built (registering a kind again replaces it)."""
    SOURCE_KINDS[kind] = factory


def configured_sources(cfg: Config) -> list[MetricSource]:
    """The sources ``cfg`` asks for, in the order their kinds were registered."""
    return [source for factory in SOURCE_KINDS.values() if (source := factory(cfg)) is not None]


@dataclass(frozen=True)
class PrometheusSource:
    """Every sample of a Prometheus text-format endpoint (names as exposed, e.g. ``requests_total``)."""

    url: str
    timeout: float
    max_age: float = math.inf
    kind: ClassVar[str] = "prometheus"

    @classmethod
    def configured(cls, cfg: Config) -> PrometheusSource | None:
        t = cfg.triggers
        if not t.prometheus_url:
            return None
        return cls(t.prometheus_url, max(1.0, min(10.0, t.interval)), t.max_age(t.prometheus_max_age))

    def read(self) -> list[Series]:
        """The whole request — connecting, the headers, the body — has ``timeout`` seconds: a socket timeout
        bounds each read, not the request, so a watchdog shuts the connection at the deadline and an endpoint that
        trickles is a ``TimeoutError`` (the rule is inconclusive), never a sample that blocks ``watch``.

        A value's time is its exposition timestamp, else the time it was read."""
        now = time.time()
        text = _fetch(self.url, self.timeout, MAX_METRICS_BYTES).decode("utf-8")
        return [
            Series(
                s.name,
                s.value,
                dict(s.labels),
                now if s.timestamp is None else float(s.timestamp),
                self.max_age,
                self.url,
            )
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        ]


def _fetch(
    url: str, timeout: float, limit: int, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> bytes:
    """GET ``url``: at most ``limit`` bytes of its body, the whole request within ``timeout`` seconds (see
    ``PrometheusSource.read``); an answer other than 200 is a ValueError with the server's reason."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: only http(s) endpoints are read")
    deadline = time.monotonic() + timeout
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.connect()  # bounded by the socket timeout; the socket is kept: http.client lets go of it after the headers
    expired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _expire, (conn.sock, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status} {resp.reason}{_server_reason(resp.read(4096))}")
        body = resp.read(limit)
    except (OSError, http.client.HTTPException):
        if not expired.is_set():
            raise
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():
        raise TimeoutError(f"no complete answer within {timeout:g} s (a slow or trickling endpoint)")
    return body


def _server_reason(body: bytes) -> str:
    """What an error answer says: a Prometheus API error's ``error``, else its first line of text."""
    text = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("error") or text)
    return f": {text.splitlines()[0][:300]}" if text else ""


def _expire(sock: socket.socket, expired: threading.Event) -> None:
    """The deadline passed: wake whatever read is blocked on ``sock`` (it sees the end of the stream)."""
    expired.set()
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the OS socket, also under TLS


@dataclass(frozen=True)
class PromqlSource:
    """The rules' PromQL expressions, asked of a Prometheus server as instant queries (``/api/v1/query``).

    Each series of a query's answer is one value named by its rule's ``metric`` (labels as answered). Freshness:
    one more query reads the ``freshness`` targets' raw samples over the last ``max_age`` seconds; the values'
    time is the oldest of the targets' last successful scrapes, and a target whose last scrape failed (or none
    scraped at all) makes every value stale. A query error or an answer that is not a number is a source error:
    the rules are inconclusive with the reason."""

    url: str
    queries: dict[str, str]  # metric -> PromQL
    headers: dict[str, str]
    tls: ssl.SSLContext | None
    timeout: float
    max_bytes: int
    max_age: float
    freshness: str
    kind: ClassVar[str] = "promql"

    @classmethod
    def configured(cls, cfg: Config) -> PromqlSource | None:
        t, p = cfg.triggers, cfg.triggers.promql
        queries = {r.metric: r.query for r in t.rules if r.query is not None}
        if not p.url or not queries:
            return None
        headers = {"Accept": "application/json"}
        if p.bearer_token_env:
            headers["Authorization"] = f"Bearer {_secret(p.bearer_token_env)}"
        elif p.basic_user and p.basic_password_env:
            pair = f"{p.basic_user}:{_secret(p.basic_password_env)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        tls = None
        if p.url.startswith("https:"):
            tls = ssl.create_default_context(cafile=cfg.resolve(p.ca_file) if p.ca_file else None)
            if not p.tls_verify:
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        timeout = p.timeout or max(1.0, min(10.0, t.interval))
        return cls(p.url, queries, headers, tls, timeout, p.max_bytes, t.max_age(p.max_age), p.freshness)

    def read(self) -> list[Series]:
        try:
            when, stale = self._fresh()
            series: list[Series] = []
            for metric, query in self.queries.items():
                answer: list[tuple[dict[str, str], float | None]] = [*self._query(query)]
                if stale and not answer:  # nothing to show, but the rule must hear that the data is stale
                    answer = [({}, None)]
                series += [Series(metric, value, labels, when, self.max_age, query, stale) for labels, value in answer]
            return series
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"{self.url}: not an answer of Prometheus's API ({err!r} missing or malformed)") from None

    def _query(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The answer to an instant query: (labels, value) per series."""
        data = self._answer(query)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] == "vector":
            return [(_labels(r["metric"]), float(r["value"][1])) for r in data["result"]]
        raise ValueError(f"{query}: a {data['resultType']} answer, not a number")

    def _answer(self, query: str) -> dict[str, Any]:
        """The ``data`` of the server's answer to ``query``."""
        url = f"{self.url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        try:
            body = _fetch(url, self.timeout, self.max_bytes + 1, self.headers, self.tls)
        except ValueError as err:
            raise ValueError(f"{query}: {err}") from None
        if len(body) > self.max_bytes:
            raise ValueError(f"{query}: the answer is larger than {self.max_bytes} bytes (max_bytes)")
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise ValueError(f"{query}: {doc.get('errorType')}: {doc.get('error')}")
        data: dict[str, Any] = doc["data"]
        return data

    def _fresh(self) -> tuple[float | None, str]:
        """When the data behind the queries was last scraped, and why it is stale (or "")."""
        query = f"{self.freshness}[{max(1, math.ceil(self.max_age))}s]"
        data = self._answer(query)
        if data["resultType"] != "matrix":
            raise ValueError(f"{query}: freshness must be an instant-vector selector such as up")
        if not data["result"]:
            return None, f"no scrape of {self.freshness} in the last {self.max_age:g} s"
        last: list[float] = []
        for target in data["result"]:
            when, value = target["values"][-1]
            if float(value) != 1:
                return None, f"target {_describe(_labels(target['metric']))} is down (its last scrape failed)"
            last.append(float(when))
        return min(last), ""


def _labels(metric: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in metric.items() if k != "__name__"}


def _describe(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _secret(name: str) -> str:
    """The value of environment variable ``name`` (a secret never written to failback.toml)."""
    value = os.environ.get(name)
    if value is None:
        raise FailbackError(f"environment variable {name} is not set", f"export {name} before watching")
    return value


@dataclass(frozen=True)
class JsonlSource:
    """The last value of each metric in a JSONL file the app appends to (its last MiB is read).

    A line is an object of metric -> value, or ``{"metric": name, "value": v}``, with an optional ``"time"``
    (epoch seconds or ISO 8601) saying when it was measured; a line without one is as old as the file's mtime.
    A value's origin is its line's offset in the file, so the same line read again is the same sample. Unreadable
    lines (such as a line still being written) are skipped."""

    path: Path
    max_age: float = math.inf
    kind: ClassVar[str] = "jsonl"

    @classmethod
    def configured(cls, cfg: Config) -> JsonlSource | None:
        t = cfg.triggers
        return cls(cfg.resolve(t.jsonl_path), t.max_age(t.jsonl_max_age)) if t.jsonl_path else None

    def read(self) -> list[Series]:
        with self.path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = fh.seek(max(0, size - JSONL_TAIL))
            mtime = os.fstat(fh.fileno()).st_mtime
            lines = fh.read().splitlines(keepends=True)
        if start:
            start += len(lines[0])
            lines = lines[1:]  # the first line may be cut
        last: dict[str, Series] = {}
        for line in lines:
            offset, start = start, start + len(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            measured = _line_time(obj.pop(JSONL_TIME, None), mtime)
            values = {str(obj["metric"]): obj["value"]} if {"metric", "value"} <= obj.keys() else obj
            for name, value in values.items():
                last[name] = Series(name, value, {}, measured, self.max_age, f"{self.path.name} byte {offset}")
        return list(last.values())


JSONL_TIME = "time"  # the key of a JSONL line's measurement time


def _line_time(value: object, mtime: float) -> float:
    """A JSONL line's time: its "time" (epoch seconds or ISO 8601; a naive one is UTC), else the file's mtime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return mtime


@dataclass(frozen=True)
class ProbeSource:
    """The benchmark queries on the live database, read-only: probe.p50_ms / probe.p95_ms (worst query) and
    probe.errors (failing queries), measured exactly as the baseline's ``metrics`` are recorded."""

    db: Path
    queries: list[str]
    runs: int
    kind: ClassVar[str] = "probe"

    @classmethod
    def configured(cls, cfg: Config) -> ProbeSource | None:
        return cls(cfg.source_path, cfg.benchmark.queries, cfg.benchmark.runs) if cfg.triggers.probe else None

    def read(self) -> list[Series]:
        timings, errors = time_readonly(self.db, self.queries, self.runs)
        return [Series(name, value) for name, value in probe_metrics(timings, errors).items()]


@dataclass(frozen=True)
class IntegritySource:
    """``PRAGMA quick_check`` on the live database, read-only: ``integrity`` 1 ok, 0 failed; read only when a rule
    watches ``integrity``."""

    db: Path
    kind: ClassVar[str] = "integrity"

    @classmethod
    def configured(cls, cfg: Config) -> IntegritySource | None:
        return cls(cfg.source_path) if any(r.metric == INTEGRITY for r in cfg.triggers.rules) else None

    def read(self) -> list[Series]:
        conn = connect(self.db, readonly=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
        except (apsw.CorruptError, apsw.NotADBError):
            return [Series(INTEGRITY, 0.0)]
        finally:
            conn.close()
        return [Series(INTEGRITY, 1.0 if rows == ["ok"] else 0.0)]


for _kind in (PrometheusSource, PromqlSource, JsonlSource, ProbeSource, IntegritySource):
    register_source(_kind.kind, _kind.configured)
