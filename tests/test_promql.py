"""PromQL trigger rules against a real Prometheus server (Debian's `prometheus`, installed by `make
deps-prometheus`) started on 127.0.0.1, scraping a test exporter (prometheus_client's HTTP server) every second."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from failback.autorollback.rules import RuleResult
from failback.autorollback.sources import PromqlSource, configured_sources
from failback.autorollback.watcher import Watcher
from failback.config import Config
from failback.errors import ConfigError

from .test_triggers import configure, free_port

PROMETHEUS = Path("/usr/bin/prometheus")
QUERY = "histogram_quantile(0.95, rate(app_query_seconds_bucket[1m]))"
POLL = 0.2  # seconds between looks at the server while waiting for a scrape


@dataclass
class Exporter:
    """The app: a histogram of query durations served on 127.0.0.1."""

    histogram: Histogram
    server: socketserver.TCPServer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def observe(self, seconds: float, n: int = 20) -> None:
        for _ in range(n):
            self.histogram.observe(seconds)

    def die(self) -> None:
        """The app goes away: its port answers nothing."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class PrometheusServer:
    url: str

    def query(self, expr: str) -> list[dict[str, object]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}") as resp:
            result: list[dict[str, object]] = json.load(resp)["data"]["result"]
        return result

    def wait_for(self, expr: str, value: str, looks: int = 300) -> None:
        """Wait (polling, at most ``looks`` times) until ``expr`` answers ``value``."""
        for _ in range(looks):
            answer = self.query(expr)
            if answer and answer[0]["value"][1] == value:  # type: ignore[index]
                return
            time.sleep(POLL)
        pytest.fail(f"{expr} never answered {value}")


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    histogram = Histogram("app_query_seconds", "query time", buckets=(0.1, 0.25, 0.5, 1.0), registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    exporter = Exporter(histogram, server)
    yield exporter
    exporter.die()
    thread.join()


@pytest.fixture
def prometheus(exporter: Exporter, tmp_path: Path) -> Iterator[PrometheusServer]:
    """Debian's prometheus on a free port, temp storage, scraping the exporter every second."""
    if not PROMETHEUS.exists():
        why = f"{PROMETHEUS} is missing: run `make deps-prometheus` (as root) or `apt-get install prometheus`"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}")
    try:
        for _ in range(300):
            try:
                if server.query("up"):
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            time.sleep(POLL)
        server.wait_for('up{job="app"}', "1")
        yield server
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def promql_config(
    demo: Path, url: str, query: str = QUERY, *, n: int = 3, policy: str = "keep", promql: str = ""
) -> tuple[Config, Path]:
    """The demo watching one PromQL rule on the server at ``url``; ``promql``: more [triggers.promql] settings."""
    triggers = (
        f'interval = 1\ninconclusive = "{policy}"\n[triggers.promql]\nurl = "{url}"\nfreshness = \'up{{job="app"}}\'\n'
        + promql
    )
    rule = f'[[triggers.rules]]\nname = "p95"\nquery = \'{query}\'\nop = ">"\nthreshold = 0.25\nfor = {n}\n'
    return configure(demo, triggers, rule)


def sample_until(w: Watcher, exporter: Exporter, stop: str, looks: int = 300) -> list[RuleResult]:
    """Evaluate (slow queries observed before each look) until a rule result has status ``stop``."""
    seen: list[RuleResult] = []
    for _ in range(looks):
        exporter.observe(0.5)
        seen.append(w.evaluate().results[0])
        if seen[-1].status == stop:
            return seen
        time.sleep(POLL)
    pytest.fail(f"never {stop}: {[(r.status, r.note) for r in seen[-5:]]}")


@pytest.mark.timeout(300)
def test_a_promql_rule_fires_after_for_fresh_failures(
    demo_dir: Path, prometheus: PrometheusServer, exporter: Exporter
) -> None:
    cfg, path = promql_config(demo_dir, prometheus.url)
    w = Watcher(cfg, path, dry_run=True)
    assert [s.kind for s in w.sources()] == ["promql"]
    seen = sample_until(w, exporter, "firing")
    counted = [r for r in seen if r.status != "inconclusive"]
    assert [r.status for r in counted] == ["failing", "failing", "firing"]
    assert all(0.25 < v <= 0.5 for v in counted[-1].values)  # type: ignore[operator]
    waited = {r.note.split(":")[0] for r in seen if r.status == "inconclusive"}
    assert waited <= {f"{QUERY} missing", QUERY}  # before rate() has two scrapes; the same scrape read again
    assert any(r.note == f"{QUERY}: no new sample since the last one counted ({QUERY})" for r in seen)


@pytest.mark.timeout(300)
def test_a_stale_promql_value_never_fires(demo_dir: Path, prometheus: PrometheusServer, exporter: Exporter) -> None:
    """The app dies: whatever rate() over a minute still answers (old slow queries, or nothing), no fresh scrape
    stands behind it — inconclusive, never a failure, even under inconclusive = "fail"."""
    cfg, path = promql_config(demo_dir, prometheus.url, n=2, policy="fail")
    w = Watcher(cfg, path, dry_run=True)
    assert sample_until(w, exporter, "failing")[-1].streak == 1
    exporter.die()
    prometheus.wait_for('up{job="app"}', "0")
    stale = [w.evaluate() for _ in range(3)]
    for ev in stale:
        [r] = ev.results
        assert r.value is None or r.value > 0.25  # rate() may still answer the old slow queries...
        assert (r.status, r.streak) == ("inconclusive", 1)  # ...and counts for nothing
        target = f'{{instance="127.0.0.1:{exporter.port}", job="app"}}'
        assert r.note == f"{QUERY} is stale: target {target} is down (its last scrape failed)"
        assert ev.decision.action == "none"


@pytest.mark.timeout(300)
def test_a_query_error_is_inconclusive_with_the_reason(demo_dir: Path, prometheus: PrometheusServer) -> None:
    cfg, path = promql_config(demo_dir, prometheus.url, "rate(app_query_seconds_bucket)", n=1, policy="keep")
    ev = Watcher(cfg, path, dry_run=True).evaluate()
    assert ev.results[0].status == "inconclusive"
    assert ev.errors[0].startswith("promql: rate(app_query_seconds_bucket): HTTP 400 Bad Request: ")
    assert "range vector" in ev.errors[0]


class FakeApi:
    """A real HTTP server on 127.0.0.1 standing in for Prometheus's API: ``answer(path)`` gives each GET's status and
    body; ``seen`` records each request's Authorization header."""

    def __init__(self, answer: Callable[[str], tuple[int, bytes]]) -> None:
        self.seen: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(self.headers.get("Authorization"))
                status, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a client that read enough hangs up
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def refuse(_: str) -> tuple[int, bytes]:
    return 401, b'{"status": "error", "errorType": "unauthorized", "error": "who are you"}'


def test_credentials_come_from_the_environment(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeApi(refuse) as server:
        cfg, path = promql_config(demo_dir, server.url, n=1)
        cfg.triggers.promql.bearer_token_env = "FAILBACK_TEST_TOKEN"
        with pytest.raises(ConfigError, match="environment variable FAILBACK_TEST_TOKEN is not set"):
            Watcher(cfg, path)
        monkeypatch.setenv("FAILBACK_TEST_TOKEN", "s3cret")
        ev = Watcher(cfg, path, dry_run=True).evaluate()
        assert ev.errors == ['promql: up{job="app"}[60s]: HTTP 401 Unauthorized: who are you']
        assert ev.results[0].status == "inconclusive"
        cfg.triggers.promql.bearer_token_env = None
        cfg.triggers.promql.basic_user, cfg.triggers.promql.basic_password_env = "ops", "FAILBACK_TEST_TOKEN"
        Watcher(cfg, path, dry_run=True).watch(max_samples=1)  # audits its start: the rules and sources
        assert server.seen == ["Bearer s3cret", "Basic " + base64.b64encode(b"ops:s3cret").decode()]
        assert "s3cret" not in (cfg.state_path / "audit.jsonl").read_text()


def test_tls_is_verified_by_default(demo_dir: Path) -> None:
    cfg, _ = promql_config(demo_dir, "https://127.0.0.1:1", n=1)
    [source] = configured_sources(cfg)
    assert isinstance(source, PromqlSource) and source.tls is not None
    assert source.tls.verify_mode == ssl.CERT_REQUIRED and source.tls.check_hostname


def answer_of(size: int) -> Callable[[str], tuple[int, bytes]]:
    """Prometheus's answers: the freshness query's target scraped just now; the rule's query one series whose
    label pads the answer to exactly ``size`` bytes."""

    def answer(path: str) -> tuple[int, bytes]:
        now = time.time()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["query"][0]
        if query.startswith("up{"):
            result = [{"metric": {"job": "app"}, "values": [[now, "1"]]}]
            return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()

        def body(pad: str) -> bytes:
            series = [{"metric": {"instance": "app", "pad": pad}, "value": [now, "0.1"]}]
            return json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()

        return 200, body("x" * (size - len(body(""))))

    return answer


@pytest.mark.parametrize("size", [1024, 1025, 1 << 20])
def test_an_answer_larger_than_max_bytes_is_inconclusive(demo_dir: Path, size: int) -> None:
    """max_bytes = 1024: an answer of exactly that size is read; one byte more, or a megabyte, is inconclusive with
    a reason naming the limit."""
    with FakeApi(answer_of(size)) as server:
        cfg, path = promql_config(demo_dir, server.url, n=1, promql="max_bytes = 1024\n")
        ev = Watcher(cfg, path, dry_run=True).evaluate()
    [r] = ev.results
    if size <= 1024:
        assert (ev.errors, r.status, r.value) == ([], "ok", 0.1)
    else:
        reason = f"promql: {QUERY}: the answer is larger than 1024 bytes (max_bytes)"
        assert ev.errors == [reason] and r.note == f"{QUERY} missing ({reason})"
        assert (r.status, r.streak, ev.decision.action) == ("inconclusive", 0, "none")
