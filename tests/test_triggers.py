"""Automated rollback triggers: the rule state machine, real metric sources (an HTTP server on 127.0.0.1 serving
changing metrics, a JSONL file, probes on real databases), the watch loop with real rollbacks, hold and release."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import apsw
import pytest
from prometheus_client.parser import text_string_to_metric_families

import failback
from failback.audit import AuditLog, verify_chain
from failback.autorollback.hold import Hold, place_hold, read_hold, release_hold
from failback.autorollback.rules import Evaluation, Facts, RuleState, Sample, Series, evaluate, policy_problems
from failback.autorollback.sources import SOURCE_KINDS, IntegritySource, JsonlSource, ProbeSource, register_source
from failback.autorollback.watcher import Stop, Watcher
from failback.config import Config, TriggerRule, load_config
from failback.pipeline.rollback import Options, Outcome, Rollback

Cli = Callable[..., subprocess.CompletedProcess[str]]
MISSING = None  # a sample without the metric


# -- helpers ----------------------------------------------------------------------------------------
class MetricsServer:
    """A real HTTP server on 127.0.0.1: request n gets the n-th body of a script (the last one repeats)."""

    def __init__(self, bodies: list[str]) -> None:
        self.bodies, self.requests = bodies, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.bodies[min(server.requests, len(server.bodies) - 1)].encode()
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetricsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TricklingServer:
    """A real HTTP server on 127.0.0.1 that answers one byte every half second, in its headers or in its body,
    until the client goes away or the test ends (``asked`` is set once a request arrived)."""

    def __init__(self, where: str) -> None:
        self.asked, self.done = threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.asked.set()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                body = ("# a metrics page that never ends\n" * 1000).encode()
                data = body if where == "body" else head + body
                if where == "body":
                    self.wfile.write(head)
                    self.wfile.flush()
                for i in range(len(data)):
                    if server.done.wait(0.5):
                        return
                    try:
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.done.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["headers", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[TricklingServer]:
    s = TricklingServer(request.param)
    yield s
    s.close()


def prom(latency: float | None) -> str:
    """A /metrics page: the /notes latency (absent when None) beside another series of the same metric."""
    lines = ["# TYPE app_latency_ms gauge", 'app_latency_ms{route="/search"} 1']
    if latency is not None:
        lines.append(f'app_latency_ms{{route="/notes"}} {latency}')
    return "\n".join(lines) + "\n"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[MetricsServer]:
    with MetricsServer([prom(v) for v in request.param]) as s:
        yield s


LATENCY_RULE = """
[[triggers.rules]]
name = "notes-latency"
metric = "app_latency_ms"
labels = {{ route = "/notes" }}
op = ">"
threshold = 100
for = {n}
severity = "{severity}"
"""


def configure(
    folder: Path, triggers: str, rules: str = "", *, n: int = 3, severity: str = "rollback"
) -> tuple[Config, Path]:
    """Append a [triggers] policy to the demo's failback.toml and load it."""
    path = folder / "failback.toml"
    rules = rules or LATENCY_RULE.format(n=n, severity=severity)
    path.write_text(path.read_text() + f"\n[triggers]\n{triggers}\n{rules}")
    return load_config(path), path


def prom_triggers(url: str, inconclusive: str = "keep") -> str:
    return f'interval = 0.01\ninconclusive = "{inconclusive}"\nprometheus_url = "{url}"'


def events(cfg: Config, prefix: str = "") -> list[dict[str, Any]]:
    return [r for r in AuditLog(cfg.state_path / "audit.jsonl").records() if r["event"].startswith(prefix)]


def provider(demo: Path) -> str:
    return next(line for line in (demo / "app.env").read_text().splitlines() if line.startswith("DATABASE_PROVIDER="))


def rule(for_: int = 3, severity: str = "rollback", **kw: Any) -> TriggerRule:
    return TriggerRule.model_validate(
        {"name": "r", "metric": "m", "threshold": 100, "for": for_, "severity": severity, **kw}
    )


def run_pure(
    values: list[float | None], r: TriggerRule, policy: str = "keep", holds: list[bool] | None = None
) -> list[Evaluation]:
    """Feed a series of values through the pure evaluation, the way the watcher does."""
    states: dict[str, RuleState] = {}
    out = []
    for i, v in enumerate(values):
        hold = Hold("incident", "t", "ops", "h") if holds and holds[i] else None
        sample = Sample([] if v is None else [Series("m", v)])
        ev = evaluate([r], states, sample, Facts(hold=hold, provider="native"), policy, seq=i + 1)  # type: ignore[arg-type]
        states = ev.states
        out.append(ev)
    return out


def statuses(evs: list[Evaluation]) -> list[str]:
    return [ev.results[0].status for ev in evs]


# -- the pure state machine -------------------------------------------------------------------------
def test_fires_once_per_streak_and_again_after_a_pass() -> None:
    evs = run_pure([500, 500, 500, 500, 10, 500, 500, 500], rule(), holds=None)
    assert statuses(evs) == ["failing", "failing", "firing", "fired", "ok", "failing", "failing", "firing"]
    assert [ev.decision.action for ev in evs].count("rollback") == 2
    assert evs[2].results[0].values == [500, 500, 500]
    fired = [e for ev in evs for e in ev.events if e[0] == "trigger.fired"]
    assert len(fired) == 2 and fired[0][1]["rules"][0]["samples"] == [500, 500, 500]


def test_a_single_spike_never_fires() -> None:
    evs = run_pure([10, 500, 10, 500, 500, 10, 900, 10], rule())
    assert "firing" not in statuses(evs)
    assert all(ev.decision.action == "none" for ev in evs)
    assert [(ev.seq, e[0]) for ev in evs for e in ev.events] == [(6, "trigger.flapping")]  # noise, said so once


@pytest.mark.parametrize(
    ("policy", "values", "expected"),
    [
        # keep: a missing sample is ignored; the streak survives it
        ("keep", [500, 500, MISSING, 500], ["failing", "failing", "inconclusive", "firing"]),
        # pause: the streak is dropped, the rule paused until a conclusive sample, then counts from zero
        ("pause", [500, 500, MISSING, MISSING, 500, 500, 500],
         ["failing", "failing", "paused", "paused", "failing", "failing", "firing"]),
        # fail: a missing sample counts as a failure
        ("fail", [500, MISSING, MISSING], ["failing", "failing", "firing"]),
    ],
)  # fmt: skip
def test_inconclusive_policies(policy: str, values: list[float | None], expected: list[str]) -> None:
    evs = run_pure(values, rule(), policy)
    assert statuses(evs) == expected
    names = [e[0] for ev in evs for e in ev.events]
    assert names.count("trigger.paused") == names.count("trigger.resumed") == (policy == "pause")
    assert evs[2].results[0].note == "m missing"


def test_hold_blocks_and_the_rule_stays_due_until_release() -> None:
    evs = run_pure([500] * 6, rule(for_=2), holds=[True, True, True, True, False, False])
    assert [ev.decision.action for ev in evs] == ["none", "held", "held", "held", "rollback", "none"]
    assert all(ev.hold is not None for ev in evs[:4])
    assert [e[0] for ev in evs for e in ev.events] == ["trigger.held", "trigger.fired"]  # held audited once


def test_warnings_ignore_the_hold_and_integrity_rolls_back_in_emergency_mode() -> None:
    warn = run_pure([500], rule(for_=1, severity="warn"), holds=[True])[0]
    assert warn.decision.action == "warn" and warn.events[0][0] == "trigger.warn"
    integrity = rule(for_=1, metric="integrity", op="<", threshold=1)
    ev = evaluate([integrity], {}, Sample([Series("integrity", 0.0)]), Facts(provider="native"), "keep")
    assert (ev.decision.action, ev.decision.mode) == ("rollback", "emergency")


def test_no_rollback_when_the_app_is_no_longer_on_the_native_provider() -> None:
    ev = evaluate([rule(for_=1)], {}, Sample([Series("m", 500)]), Facts(provider="sqljs"), "keep")
    assert ev.decision.action == "skipped" and "'sqljs'" in ev.decision.note
    assert ev.events[0][0] == "trigger.skipped"


def test_baseline_ratio_and_lookup_edge_cases() -> None:
    r = rule(for_=1, threshold=None, baseline_ratio=2.0)
    ev = evaluate([r], {}, Sample([Series("m", 30)]), Facts(baseline={"m": 10.0}, provider="native"), "keep")
    assert (ev.results[0].threshold, ev.results[0].status) == (20.0, "firing")
    no_base = evaluate([r], {}, Sample([Series("m", 30)]), Facts(provider="native"), "keep")
    assert (no_base.results[0].status, no_base.results[0].note) == ("inconclusive", "no baseline recorded")
    for series, note in [
        ([Series("m", "fast")], "m is not a number ('fast')"),
        ([Series("m", float("nan"))], "m is not a number (nan)"),
        ([Series("m", 1, {"a": "1"}), Series("m", 2, {"a": "2"})], "2 series match m; add labels to the rule"),
    ]:
        got = evaluate([rule()], {}, Sample(series), Facts(), "keep").results[0]
        assert (got.status, got.note) == ("inconclusive", note)


# -- policy validation ------------------------------------------------------------------------------
BASE_TOML = '[source]\npath = "n.sqlite"\n[target]\npath = "t.sqlite"\n[app]\nconfig = "app.env"\n'


@pytest.mark.parametrize(
    ("triggers", "rules", "needle"),
    [
        ("", "", "triggers.rules: no rules defined"),
        ('jsonl_path = "m.jsonl"', '[[triggers.rules]]\nname = "a"\nmetric = "x"', "set exactly one of threshold"),
        ("", '[[triggers.rules]]\nname = "a"\nmetric = "probe.p95_ms"\nthreshold = 5', "needs triggers.probe = true"),
        ("", '[[triggers.rules]]\nname = "a"\nmetric = "x"\nthreshold = 5', "needs triggers.prometheus_url"),
        ("probe = true", '[[triggers.rules]]\nname = "a"\nmetric = "probe.p95_ms"\nthreshold = 5',
         "needs benchmark.queries"),
        ("probe = true", '[[triggers.rules]]\nname = "a"\nmetric = "integrity"\nthreshold = 1\nlabels = { a = "b" }',
         "labels apply to Prometheus metrics"),
        ('jsonl_path = "m.jsonl"', '[[triggers.rules]]\nname = "a"\nmetric = "x"\nthreshold = 1\n' * 2,
         "rule 'a': defined more than once"),
    ],
)  # fmt: skip
def test_policy_problems(tmp_path: Path, triggers: str, rules: str, needle: str) -> None:
    path = tmp_path / "failback.toml"
    path.write_text(f"{BASE_TOML}[triggers]\n{triggers}\n{rules}\n")
    assert needle in policy_problems(load_config(path))[0]


def test_an_unusable_policy_is_a_config_error(demo_dir: Path, cli: Cli) -> None:
    _, path = configure(demo_dir, "", "\n")
    res = cli("watch", "-c", str(path), "--once")
    assert res.returncode == 2 and "triggers.rules: no rules defined" in res.stderr and "Traceback" not in res.stderr


# -- sources ----------------------------------------------------------------------------------------
def test_jsonl_source_keeps_the_last_value_of_each_metric(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"p95_ms": 10, "errors": 0}\n'
        '{"metric": "errors", "value": 2}\n'
        "not json\n"
        '{"p95_ms": 20, "state": "degraded"}\n'
        '{"p95_ms": 9'  # still being written
    )
    assert {s.name: s.value for s in JsonlSource(path).read()} == {"p95_ms": 20, "errors": 2, "state": "degraded"}


def test_watch_reads_a_jsonl_file_relative_to_the_config(demo_dir: Path) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"p95_ms": 250}\n')
    rules = '[[triggers.rules]]\nname = "p95"\nmetric = "p95_ms"\nthreshold = 200\nfor = 1\nseverity = "warn"\n'
    cfg, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', rules)
    ev = Watcher(cfg, path).evaluate()
    assert (ev.results[0].value, ev.decision.action) == (250, "warn")
    (demo_dir / "metrics.jsonl").unlink()
    ev = Watcher(cfg, path).evaluate()
    assert ev.results[0].status == "inconclusive" and "jsonl:" in ev.errors[0]


def test_probes_read_the_live_database_without_writing(native_db: Path, tmp_path: Path) -> None:
    queries = ["SELECT count(*) FROM note", "SELECT * FROM no_such_table", "DELETE FROM note"]
    got = {s.name: s.value for s in ProbeSource(native_db, queries, runs=3).read()}
    assert got["probe.errors"] == 2.0  # the missing table and the write (refused: the connection is read-only)
    assert 0 < got["probe.p50_ms"] <= got["probe.p95_ms"]  # type: ignore[operator]
    assert [(s.name, s.value) for s in IntegritySource(native_db).read()] == [("integrity", 1.0)]
    # a damaged file: integrity 0 (a critical signal); the native_db fixture proves the live file was not written
    bad = tmp_path / "bad.sqlite"
    conn = apsw.Connection(str(bad))
    conn.execute("CREATE TABLE t(x TEXT); CREATE INDEX t_x ON t(x)")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<2000) "
        "INSERT INTO t SELECT hex(randomblob(40)) FROM n"
    )
    conn.close()
    data = bytearray(bad.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = os.urandom(200)
    bad.write_bytes(bytes(data))
    assert IntegritySource(bad).read()[0].value == 0.0
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database" * 100)
    assert IntegritySource(tmp_path / "garbage.sqlite").read()[0].value == 0.0


def test_probe_against_the_recorded_baseline(demo_dir: Path) -> None:
    rules = (
        '[[triggers.rules]]\nname = "p95"\nmetric = "probe.p95_ms"\nbaseline_ratio = 1000\nfor = 1\n'
        '[[triggers.rules]]\nname = "errors"\nmetric = "probe.errors"\nthreshold = 0\nfor = 1\n'
    )
    cfg, path = configure(demo_dir, "interval = 0.01\nprobe = true", rules)
    cfg.benchmark.queries, cfg.benchmark.runs = ["SELECT count(*) FROM note"], 5
    first = Watcher(cfg, path, dry_run=True).evaluate()
    assert [r.status for r in first.results] == ["inconclusive", "ok"]
    assert first.results[0].note == "no baseline recorded"
    baseline = {"recorded": "t", "engine": "sqljs", "runs": 5, "queries": [], "metrics": {"probe.p95_ms": 50.0}}
    cfg.state_path.mkdir(parents=True, exist_ok=True)
    (cfg.state_path / "baseline.json").write_text(json.dumps(baseline))
    ev = Watcher(cfg, path, dry_run=True).evaluate()
    assert (ev.results[0].threshold, ev.results[0].status) == (50_000.0, "ok")


@pytest.mark.parametrize("server", [[500, 10]], indirect=True)
def test_prometheus_labels_pick_one_series_and_a_dead_endpoint_is_inconclusive(
    demo_dir: Path, server: MetricsServer
) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url))
    w = Watcher(cfg, path, dry_run=True)
    assert [w.evaluate().results[0].value for _ in range(2)] == [500, 10]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"  # nothing listens once closed
    cfg.triggers.prometheus_url = dead
    ev = Watcher(cfg, path, dry_run=True).evaluate()
    assert ev.results[0].status == "inconclusive" and ev.errors[0].startswith("prometheus:")


@dataclass(frozen=True)
class FixedSource:
    """An extra source kind: one fixed value of the latency rule's series."""

    value: float
    kind: ClassVar[str] = "fixed"

    def read(self) -> list[Series]:
        return [Series("app_latency_ms", self.value, {"route": "/notes"})]


def test_a_registered_source_kind_is_sampled_beside_the_built_ins(demo_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"  # nothing listens once closed
    cfg, path = configure(demo_dir, prom_triggers(dead))
    register_source(FixedSource.kind, lambda cfg: FixedSource(500.0) if cfg.triggers.prometheus_url else None)
    try:
        w = Watcher(cfg, path, dry_run=True)
        assert [source.kind for source in w.sources()] == ["prometheus", "fixed"]
        ev = w.evaluate()
    finally:
        SOURCE_KINDS.pop(FixedSource.kind)
    assert ev.results[0].value == 500.0 and ev.errors[0].startswith("prometheus:")
    assert [source.kind for source in Watcher(cfg, path).sources()] == ["prometheus"]


@pytest.mark.timeout(120)
def test_a_trickling_endpoint_is_inconclusive_within_its_deadline(
    demo_dir: Path, trickler: TricklingServer, cli: Cli
) -> None:
    """Defect: one byte every 0.5 s kept `check` running for as long as the endpoint liked (each read had a
    timeout, the request none). Now the request has the interval (1 s here) and the rule is inconclusive."""
    _, path = configure(demo_dir, f'interval = 1\nprometheus_url = "{trickler.url}"', n=1)
    res = cli("check", "-c", str(path), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    [ev] = doc["evaluations"]
    assert trickler.asked.is_set()
    assert [r["status"] for r in ev["rules"]] == ["inconclusive"]
    assert ev["errors"] == ["prometheus: no complete answer within 1 s (a slow or trickling endpoint)"]
    assert (doc["fired"], ev["decision"]["action"]) == (False, "none")


@pytest.mark.timeout(120)
def test_sigterm_stops_watch_while_a_source_trickles(demo_dir: Path, trickler: TricklingServer) -> None:
    """Defect: SIGTERM was only looked at between samples, and a trickling endpoint held the sample for good."""
    cfg, path = configure(demo_dir, f'interval = 30\nprometheus_url = "{trickler.url}"', n=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "failback", "watch", "-c", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert trickler.asked.wait(60), "watch never asked the endpoint"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # "it did not hang"; samples == 0 below: abandoned, not timed out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"samples": 0, "stopped": "signal", "exit_code": 0}
    assert events(cfg, "watch.stop")[0]["data"]["stopped"] == "signal"


# -- watch: end to end with real rollbacks ----------------------------------------------------------
@pytest.mark.parametrize("server", [[10, 10, 500, 500, 500, 500]], indirect=True)
def test_sustained_regression_rolls_back_once(demo_dir: Path, server: MetricsServer) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url), n=3)
    seen: list[Evaluation] = []
    result = Watcher(cfg, path).watch(max_samples=20, on_evaluation=seen.append)
    assert (result.stopped, result.exit_code, result.samples) == ("rollback", 0, 5)
    assert [ev.decision.action for ev in seen] == ["none"] * 4 + ["rollback"]
    assert provider(demo_dir) == "DATABASE_PROVIDER=sqljs"
    fired = events(cfg, "trigger.fired")
    assert len(fired) == 1
    assert fired[0]["data"]["rules"][0] | {"samples": None} == {
        "rule": "notes-latency",
        "metric": "app_latency_ms",
        "labels": {"route": "/notes"},
        "op": ">",
        "threshold": 100.0,
        "fixed_threshold": 100.0,
        "baseline_ratio": None,
        "for": 3,
        "severity": "rollback",
        "samples": None,
    }
    assert fired[0]["data"]["rules"][0]["samples"] == [500, 500, 500]
    done = events(cfg, "trigger.rollback")[0]
    assert done["data"]["status"] == "done" and done["run"] == result.rollback.run_id  # type: ignore[union-attr]
    assert [r["event"] for r in events(cfg, "watch.")] == ["watch.start", "watch.stop"]
    assert verify_chain(cfg.state_path / "audit.jsonl").ok


@pytest.mark.parametrize("server", [[10, 500, 10, 500, 500, 10, 900, 10]], indirect=True)
def test_noise_never_rolls_back(demo_dir: Path, server: MetricsServer) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url), n=3)
    result = Watcher(cfg, path).watch(max_samples=8)
    assert (result.stopped, result.samples, result.rollback) == ("max-samples", 8, None)
    assert provider(demo_dir) == "DATABASE_PROVIDER=native"
    assert [r["event"] for r in events(cfg, "trigger.")] == ["trigger.flapping"]


@pytest.mark.parametrize(
    ("policy", "server", "fires_at"),
    [("keep", [500, 500, None, 500], 4), ("pause", [500, 500, None, 500, 500, 500], 6), ("fail", [500, None, None], 3)],
    indirect=["server"],
)
def test_missing_metrics_follow_the_inconclusive_policy(
    demo_dir: Path, server: MetricsServer, policy: str, fires_at: int
) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url, policy), n=3)
    seen: list[Evaluation] = []
    Watcher(cfg, path, dry_run=True).watch(max_samples=fires_at, on_evaluation=seen.append)
    assert [ev.decision.action for ev in seen] == ["none"] * (fires_at - 1) + ["would-rollback"]
    assert seen[2].results[0].note == "app_latency_ms missing"
    assert len(events(cfg, "trigger.paused")) == (policy == "pause")


@pytest.mark.parametrize("server", [[500]], indirect=True)
def test_hold_blocks_and_release_unblocks(demo_dir: Path, server: MetricsServer) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url), n=2)
    place_hold(cfg, "incident 42: investigating by hand")
    before = provider(demo_dir)

    def on_evaluation(ev: Evaluation) -> None:
        if ev.seq < 4:
            assert ev.hold is not None and ev.hold.reason == "incident 42: investigating by hand"
        if ev.seq == 4:  # held for two due samples: nothing switched, no backup made; then a human releases
            assert provider(demo_dir) == before and not (demo_dir / "backups").exists()
            release_hold(cfg)

    seen: list[Evaluation] = []
    result = Watcher(cfg, path).watch(max_samples=10, on_evaluation=lambda ev: (seen.append(ev), on_evaluation(ev)))
    assert [ev.decision.action for ev in seen] == ["none", "held", "held", "held", "rollback"]
    assert result.exit_code == 0 and provider(demo_dir) == "DATABASE_PROVIDER=sqljs"
    names = [r["event"] for r in events(cfg)]
    assert names.index("hold") < names.index("trigger.held") < names.index("release") < names.index("trigger.fired")
    assert names.count("trigger.held") == 1
    assert events(cfg, "trigger.held")[0]["data"]["hold"]["reason"] == "incident 42: investigating by hand"


@pytest.mark.parametrize("server", [[500]], indirect=True)
def test_dry_run_changes_nothing(demo_dir: Path, server: MetricsServer, cli: Cli) -> None:
    cfg, path = configure(demo_dir, prom_triggers(server.url), n=2)
    watched = [demo_dir / "app.env", demo_dir / "app-sqljs.sqlite"]
    before = [p.read_bytes() for p in watched]
    res = cli("watch", "-c", str(path), "--dry-run", "--max-samples", "5", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [x["decision"]["action"] for x in lines[:5]] == ["none", "would-rollback", "none", "none", "none"]
    assert [x["rules"][0]["status"] for x in lines[:5]] == ["failing", "firing", "fired", "fired", "fired"]
    assert lines[5] == {"samples": 5, "stopped": "max-samples", "exit_code": 0}
    assert [p.read_bytes() for p in watched] == before
    assert not (demo_dir / "backups").exists() and not (cfg.state_path / "runs").exists()
    assert [r["data"]["action"] for r in events(cfg, "trigger.fired")] == ["would-rollback"]


def test_interrupted_mid_rollback_exits_4_and_switches_nothing(demo_dir: Path) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500}\n')
    rules = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 1\n'
    cfg, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', rules)
    signalled: list[str] = []

    def progress(phase: str, done: int, total: int) -> None:  # a real SIGTERM arrives during the snapshot
        if not signalled:
            signalled.append(phase)
            os.kill(os.getpid(), signal.SIGTERM)

    def run(opts: Options) -> Outcome:
        return Rollback(cfg, path, opts, progress).run()

    with Stop().installed() as stop:
        result = Watcher(cfg, path, run_rollback=run, stop=stop).watch(max_samples=5)
    assert signalled and (result.stopped, result.exit_code) == ("rollback", 4)
    assert result.rollback is not None and result.rollback.status == "interrupted"
    assert provider(demo_dir) == "DATABASE_PROVIDER=native"


# -- the commands -----------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [[500, 500, 10]], indirect=True)
def test_check_exits_3_when_a_rollback_rule_fires(demo_dir: Path, server: MetricsServer, cli: Cli) -> None:
    _, path = configure(demo_dir, prom_triggers(server.url), n=1)
    fired = cli("check", "-c", str(path))
    assert fired.returncode == 3, fired.stderr
    assert "would roll back (standard)" in fired.stdout and "notes-latency" in fired.stdout
    as_json = cli("check", "-c", str(path), "--json")
    fired_doc = json.loads(as_json.stdout)
    assert as_json.returncode == 3 and (fired_doc["fired"], fired_doc["exit_code"]) == (True, 3)
    assert fired_doc["evaluations"][0]["decision"]["mode"] == "standard"
    healthy = cli("check", "-c", str(path), "--json")
    healthy_doc = json.loads(healthy.stdout)
    assert healthy.returncode == 0 and (healthy_doc["fired"], healthy_doc["exit_code"]) == (False, 0)
    assert healthy_doc["evaluations"][0]["rules"][0]["status"] == "ok"
    assert provider(demo_dir) == "DATABASE_PROVIDER=native"


@pytest.mark.parametrize("server", [[500, 500, 10]], indirect=True)
def test_check_json_is_one_document_and_jsonl_one_line_per_sample(
    demo_dir: Path, server: MetricsServer, cli: Cli
) -> None:
    """--json: one document whatever --samples says; --jsonl: the lines `watch --json` prints."""
    _, path = configure(demo_dir, prom_triggers(server.url), n=2)
    doc = cli("check", "-c", str(path), "--samples", "2", "--json")
    assert doc.returncode == 3, doc.stderr
    parsed = json.loads(doc.stdout)  # fails on two concatenated JSON lines
    assert (parsed["samples"], parsed["fired"]) == (2, True)
    assert [e["rules"][0]["status"] for e in parsed["evaluations"]] == ["failing", "firing"]
    lines = cli("check", "-c", str(path), "--samples", "2", "--jsonl")  # samples 3 and 4: 10, 10 (healthy)
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [r["rules"][0]["status"] for r in records[:-1]] == ["ok", "ok"]
    assert records[-1] == {"samples": 2, "fired": False, "exit_code": 0}
    both = cli("check", "-c", str(path), "--json", "--jsonl")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_check_header_agrees_with_the_rule_rows(demo_dir: Path, cli: Cli) -> None:
    """A failing rule (streak 1 of 3) is no "ok" sample: the header says no action and counts the rows."""
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500, "errors": 1}\n')
    rules = "".join(
        f'[[triggers.rules]]\nname = "{name}"\nmetric = "{metric}"\nthreshold = 100\nfor = 3\n'
        for name, metric in (("lat", "latency"), ("err", "errors"), ("gone", "missing"))
    )
    _, path = configure(demo_dir, 'jsonl_path = "metrics.jsonl"', rules)
    res = cli("check", "-c", str(path))
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[0]
    rows = {name: line for line in res.stdout.splitlines() for name in ("lat", "err", "gone") if f" {name} " in line}
    assert "failing" in rows["lat"] and "ok" in rows["err"] and "inconclusive" in rows["gone"]
    assert " ok " not in header.split("·")[0] and "no action" in header
    assert header.endswith("3 rule(s): 1 failing, 1 inconclusive, 1 ok")


def test_hold_and_release_commands(demo_dir: Path, cli: Cli) -> None:
    cfg, path = configure(demo_dir, "")
    held = cli("hold", "-c", str(path), "--reason", "release freeze")
    assert held.returncode == 0, held.stderr
    hold_file = cfg.state_path / "hold.json"
    assert hold_file.stat().st_mode & 0o777 == 0o600
    assert read_hold(cfg) is not None and read_hold(cfg).reason == "release freeze"  # type: ignore[union-attr]
    again = cli("hold", "-c", str(path), "--reason", "other")
    assert again.returncode == 2 and "already held" in again.stderr
    manual = Rollback(cfg, path, Options(yes=True)).run()  # a manual rollback does not look at the hold
    assert manual.exit_code == 0 and provider(demo_dir) == "DATABASE_PROVIDER=sqljs"
    assert cli("hold", "-c", str(path), "--reason", "  ").returncode == 2
    assert cli("release", "-c", str(path)).returncode == 0 and not hold_file.exists()
    assert "no hold to release" in cli("release", "-c", str(path)).stdout
    assert [r["event"] for r in events(cfg) if r["event"] in ("hold", "release")] == ["hold", "release"]
    hold_file.write_text("{broken")  # an unreadable hold still holds
    assert "unreadable" in read_hold(cfg).reason  # type: ignore[union-attr]


@pytest.mark.parametrize("flag", ["--json", "--jsonl"])  # a watch is a stream: both print JSON Lines
def test_sigterm_stops_watch_cleanly(demo_dir: Path, flag: str) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 5}\n')
    rules = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\n'
    cfg, path = configure(demo_dir, 'interval = 0.05\njsonl_path = "metrics.jsonl"', rules)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "failback", "watch", "-c", str(path), flag, "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # it is watching
        assert first["rules"][0]["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:  # and serving its metrics
            served = resp.read().decode()
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(rest.splitlines()[-1])
    assert summary["stopped"] == "signal" and summary["exit_code"] == 0
    assert events(cfg, "watch.stop")[0]["data"]["stopped"] == "signal"
    got = {
        (s.name, tuple(s.labels.values())): s.value for f in text_string_to_metric_families(served) for s in f.samples
    }
    assert got[("failback_rule_state", ("lat", "ok"))] == 1 and got[("failback_rule_value", ("lat",))] == 5
    assert got[("failback_hold", ())] == 0


# -- fresh data only --------------------------------------------------------------------------------
JSONL_RULE = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 3\n'


def test_a_stale_jsonl_line_never_fires(demo_dir: Path, cli: Cli) -> None:
    """Defect: one JSONL line two hours old, read three times, fired (`check --samples 3` exit 3)."""
    metrics = demo_dir / "metrics.jsonl"
    metrics.write_text('{"latency": 500}\n')
    two_hours_ago = metrics.stat().st_mtime - 7200
    os.utime(metrics, (two_hours_ago, two_hours_ago))
    _, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', JSONL_RULE)
    res = cli("check", "-c", str(path), "--samples", "3", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    rules = [ev["rules"][0] for ev in doc["evaluations"]]
    assert [r["status"] for r in rules] == ["inconclusive"] * 3 and doc["fired"] is False
    assert all(re.fullmatch(r"latency is stale: measured 72\d\d s ago \(max_age 60 s\)", r["note"]) for r in rules)
    # the line's own "time" wins over the file's mtime
    metrics.write_text(json.dumps({"latency": 500, "time": "2020-01-01T00:00:00Z"}) + "\n")
    [series] = JsonlSource(metrics, 60).read()
    assert series.time == 1577836800.0 and series.origin == "metrics.jsonl byte 0"


def test_the_same_jsonl_line_read_again_is_not_a_new_sample(demo_dir: Path, cli: Cli) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500}\n')
    _, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', JSONL_RULE)
    res = cli("check", "-c", str(path), "--samples", "3", "--json")
    assert res.returncode == 0, res.stderr
    rules = [ev["rules"][0] for ev in json.loads(res.stdout)["evaluations"]]
    assert [(r["status"], r["streak"]) for r in rules] == [("failing", 1), ("inconclusive", 1), ("inconclusive", 1)]
    assert rules[1]["note"] == "latency: no new sample since the last one counted (metrics.jsonl byte 0)"


@pytest.mark.parametrize("policy", ["keep", "pause", "fail"])
def test_a_fresh_failing_jsonl_series_fires_after_for_distinct_lines(demo_dir: Path, policy: str) -> None:
    metrics = demo_dir / "metrics.jsonl"
    metrics.write_text("")
    triggers = f'interval = 0.01\ninconclusive = "{policy}"\njsonl_path = "metrics.jsonl"'
    cfg, path = configure(demo_dir, triggers, JSONL_RULE)
    w = Watcher(cfg, path, dry_run=True)
    seen: list[str] = []
    for appended in (True, False, True, False, True):  # a read with no new line counts for nothing, whatever the policy
        if appended:
            with metrics.open("a") as fh:
                fh.write('{"latency": 500}\n')
        seen.append(w.evaluate().results[0].status)
    assert seen == ["failing", "inconclusive", "failing", "inconclusive", "firing"]


# -- flapping and cooldown --------------------------------------------------------------------------
def test_a_rule_that_flips_fast_is_flapping() -> None:
    evs = run_pure([500, 10, 500, 10, 500, 500, 500, 500, 500, 500, 500, 500], rule())
    assert [ev.results[0].flapping for ev in evs][:6] == [False, False, False, False, True, True]
    assert not evs[-1].results[0].flapping  # ten samples later only one flip is left in the window
    assert [e[0] for ev in evs for e in ev.events if e[0] == "trigger.flapping"] == ["trigger.flapping"]
    assert evs[4].to_json()["rules"][0]["flapping"] is True


def test_after_an_automatic_rollback_watch_cools_down(demo_dir: Path) -> None:
    metrics = demo_dir / "metrics.jsonl"
    metrics.write_text('{"latency": 500}\n')
    rules = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 1\n'
    cfg, path = configure(demo_dir, 'interval = 0.01\ncooldown = 3600\njsonl_path = "metrics.jsonl"', rules)
    first = Watcher(cfg, path).watch(max_samples=3)
    assert (first.stopped, first.exit_code) == ("rollback", 0) and first.rollback is not None
    env = demo_dir / "app.env"  # a person switches back to native by hand; the metric still fails; watch restarts
    env.write_text(env.read_text().replace("DATABASE_PROVIDER=sqljs", "DATABASE_PROVIDER=native"))
    assert provider(demo_dir) == "DATABASE_PROVIDER=native"
    seen: list[Evaluation] = []
    w = Watcher(cfg, path)

    def append_line(ev: Evaluation) -> None:
        seen.append(ev)
        with metrics.open("a") as fh:
            fh.write('{"latency": 500}\n')

    again = w.watch(max_samples=3, on_evaluation=append_line)
    assert (again.stopped, again.rollback) == ("max-samples", None)
    assert [ev.decision.action for ev in seen] == ["cooldown"] * 3
    assert seen[0].decision.note.startswith("cooling down until ")
    assert f"after the automatic rollback run {first.rollback.run_id} (done)" in seen[0].decision.note
    assert len(events(cfg, "trigger.cooldown")) == 1 and provider(demo_dir) == "DATABASE_PROVIDER=native"
    cooldown = json.loads(cfg.state.cooldown.read_text())
    cfg.state.cooldown.write_text(json.dumps(cooldown | {"until": 0}))  # the cooldown is over
    assert w.evaluate().decision.action == "rollback"  # the rule stayed due


def test_the_python_api_checks_like_the_command(demo_dir: Path, cli: Cli) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500}\n')
    rules = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 1\n'
    _, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', rules)
    result = failback.check(path, samples=2)
    assert (result.fired, result.exit_code) == (True, 3)
    assert [ev.results[0].status for ev in result.evaluations] == ["firing", "inconclusive"]  # the same line
    doc = result.to_json()
    command = json.loads(cli("check", "-c", str(path), "--samples", "2", "--json").stdout)
    assert doc.keys() == command.keys() and (doc["fired"], doc["exit_code"]) == (command["fired"], 3)
    assert [e["rules"][0]["status"] for e in doc["evaluations"]] == ["firing", "inconclusive"]
    assert provider(demo_dir) == "DATABASE_PROVIDER=native"
