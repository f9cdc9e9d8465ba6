"""Metric sources of the automatic rollback: Prometheus, JSONL, the built-in probe and integrity check."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import apsw
from prometheus_client.parser import text_string_to_metric_families

from ..db.connect import connect
from ..errors import FailbackError
from ..pipeline.postcheck import probe_metrics, time_readonly
from .rules import INTEGRITY, Series

JSONL_TAIL = 1 << 20  # bytes read from the end of the JSONL file


# -- sources ----------------------------------------------------------------------------------------
SOURCE_ERRORS = (OSError, ValueError, http.client.HTTPException, apsw.Error, FailbackError)


MAX_METRICS_BYTES = 16 << 20  # a /metrics page larger than this is cut, not read whole


def read_prometheus(url: str, timeout: float) -> list[Series]:
    """Every sample of a Prometheus text-format endpoint (names as exposed, e.g. ``requests_total``).

    The whole request — connecting, the headers, the body — has ``timeout`` seconds: a socket timeout bounds each
    read, not the request, so a watchdog shuts the connection at the deadline and an endpoint that trickles is a
    ``TimeoutError`` (the rule is inconclusive), never a sample that blocks ``watch``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: only http(s) metrics endpoints are read")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    deadline = time.monotonic() + timeout
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    conn.connect()  # bounded by the socket timeout; the socket is kept: http.client lets go of it after the headers
    expired = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _expire, (conn.sock, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")))
        resp = conn.getresponse()
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status} {resp.reason}")
        body = resp.read(MAX_METRICS_BYTES)
    except (OSError, http.client.HTTPException):
        if not expired.is_set():
            raise
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():
        raise TimeoutError(f"no complete answer within {timeout:g} s (a slow or trickling endpoint)")
    text = body.decode("utf-8")
    return [
        Series(s.name, s.value, dict(s.labels)) for fam in text_string_to_metric_families(text) for s in fam.samples
    ]


def _expire(sock: socket.socket, expired: threading.Event) -> None:
    """The deadline passed: wake whatever read is blocked on ``sock`` (it sees the end of the stream)."""
    expired.set()
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the OS socket, also under TLS


def read_jsonl(path: Path) -> list[Series]:
    """The last value of each metric in a JSONL file the app appends to (its last MiB is read).

    A line is an object of metric -> value, or ``{"metric": name, "value": v}``; unreadable lines (such as a line
    still being written) are skipped."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - JSONL_TAIL))
        lines = fh.read().splitlines()
    if size > JSONL_TAIL:
        lines = lines[1:]  # the first line may be cut
    last: dict[str, object] = {}
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            last.update({str(obj["metric"]): obj["value"]} if {"metric", "value"} <= obj.keys() else obj)
    return [Series(k, v) for k, v in last.items()]


def run_probe(db: Path, queries: list[str], runs: int) -> list[Series]:
    """The benchmark queries on the live database, read-only: probe.p50_ms / probe.p95_ms (worst query) and
    probe.errors (failing queries), measured exactly as the baseline's ``metrics`` are recorded."""
    timings, errors = time_readonly(db, queries, runs)
    return [Series(name, value) for name, value in probe_metrics(timings, errors).items()]


def run_integrity(db: Path) -> list[Series]:
    """``PRAGMA quick_check`` on the live database, read-only: ``integrity`` 1 ok, 0 failed."""
    conn = connect(db, readonly=True)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except (apsw.CorruptError, apsw.NotADBError):
        return [Series(INTEGRITY, 0.0)]
    finally:
        conn.close()
    return [Series(INTEGRITY, 1.0 if rows == ["ok"] else 0.0)]
