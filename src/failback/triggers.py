"""Automated rollback triggers: metric sources, the rule state machine, the watch loop, hold and release.

Pure part (no I/O): ``policy_problems``, ``lookup``, ``threshold_for`` and ``evaluate`` turn one sample plus the facts
around it (baseline, hold, current provider) and the rules' states into an ``Evaluation``: one result per rule, the
decision, the next states and the audit events to write. Effects: the metric sources, ``hold.json``, the audit log
and ``Watcher``, which samples every interval and runs the rollback.

Semantics (also in ``failback watch --help``):

- A rule states the *failure* condition: the sample fails when ``value <op> threshold`` holds. The threshold is
  ``threshold``, or ``baseline.metrics[metric] * baseline_ratio`` from ``<state>/baseline.json``.
- A rule fires when ``for`` consecutive samples fail, exactly once per streak; a passing sample ends the streak.
- A sample is inconclusive when the metric is missing (its source failed, or did not answer in full within its
  deadline: the interval, between 1 and 10 s), not a number, matched by several Prometheus series, or its
  baseline is missing. ``[triggers] inconclusive``: ``keep`` ignores the sample (the streak is kept), ``fail``
  counts it as a failing sample, ``pause`` drops the streak and pauses the rule until a conclusive sample arrives.
- Severity ``warn`` is reported and audited; ``rollback`` runs a standard rollback, ``emergency`` an emergency one.
  A rule on ``integrity`` always rolls back in emergency mode: a failed ``quick_check`` is a critical signal.
- Risk gate of an automatic rollback: the firing rule is the operator's pre-authorisation of a *high* risk
  (``yes=True``), never of a *critical* one (no ``force``): that run is refused (exit 3) and a human decides.
- A hold (``failback hold``) blocks automatic rollbacks: every evaluation says so, the due rule stays due and fires
  on the first failing sample after ``failback release``. Warnings are still reported.
- An automatic rollback runs only while the app config selects the native provider: rolling back again would
  replace the sql.js data written since the first switch. ``watch`` ends after an automatic rollback, with its
  exit code; ``check`` never rolls back and exits ``CHECK_FIRED`` (3) when a rollback rule fires (hold or not).
"""

from __future__ import annotations

import contextlib
import getpass
import http.client
import json
import math
import operator
import os
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TypeVar

import apsw
from prometheus_client.parser import text_string_to_metric_families

from .audit import AuditLog
from .benchmark import load_baseline, probe_metrics, time_readonly
from .config import Config, TriggerRule
from .errors import ConfigError, FailbackError
from .files import ensure_dir, fsync_dir, remove_quietly, write_text
from .rollback import Options, Outcome, Rollback
from .sqlite import connect
from .switch import current_provider

CHECK_FIRED = 3  # exit code of `failback check` when a rollback rule fires
PROBE_METRICS = ("probe.p50_ms", "probe.p95_ms", "probe.errors")
INTEGRITY = "integrity"
JSONL_TAIL = 1 << 20  # bytes read from the end of the JSONL file
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
Policy = Literal["keep", "pause", "fail"]
Event = tuple[str, dict[str, Any]]
T = TypeVar("T")


# -- data -------------------------------------------------------------------------------------------
@dataclass
class Series:
    """One value read from a source; JSONL and built-in metrics carry no labels."""

    name: str
    value: object
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    series: list[Series]
    errors: list[str] = field(default_factory=list)  # "source: problem" for each source that failed
    seconds: float = 0.0


@dataclass(frozen=True)
class RuleState:
    """Where a rule stands between samples."""

    streak: int = 0  # consecutive failing samples
    fired: bool = False  # fired in this streak (fires once per streak)
    blocked: bool = False  # due but blocked by a hold (audited once per streak)
    paused: bool = False  # paused by an inconclusive sample (policy "pause")
    values: tuple[float | None, ...] = ()  # the streak's last `for` values


@dataclass
class RuleResult:
    rule: str
    metric: str
    severity: str
    op: str
    value: float | None
    threshold: float | None
    status: str  # ok, failing, firing, fired, inconclusive, paused
    streak: int
    need: int
    note: str = ""
    values: list[float | None] = field(default_factory=list)


@dataclass
class Hold:
    reason: str
    since: str
    user: str
    host: str


@dataclass
class Facts:
    """What an evaluation knows besides the sample."""

    baseline: dict[str, float] | None = None  # baseline.json "metrics"
    hold: Hold | None = None
    provider: str | None = None  # the app config's current provider value
    native: str = "native"  # the value that selects the native provider


@dataclass
class Decision:
    action: str  # none, warn, rollback, would-rollback, held, skipped
    mode: str | None = None  # standard or emergency when a rollback rule fired
    rules: list[str] = field(default_factory=list)  # the firing rollback/emergency rules
    warnings: list[str] = field(default_factory=list)  # the firing warn rules
    note: str = ""

    @property
    def rollback_fired(self) -> bool:
        """A rollback or emergency rule fired (whether or not a rollback may run)."""
        return self.mode is not None


@dataclass
class Evaluation:
    seq: int
    time: str
    results: list[RuleResult]
    decision: Decision
    hold: Hold | None
    errors: list[str]
    seconds: float
    dry_run: bool
    states: dict[str, RuleState] = field(repr=False)
    events: list[Event] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "decision": asdict(self.decision),
            "hold": asdict(self.hold) if self.hold else None,
            "dry_run": self.dry_run,
            "rules": [asdict(r) for r in self.results],
            "errors": self.errors,
            "sample_ms": round(self.seconds * 1000, 3),
        }


# -- pure: policy, lookup, evaluation ---------------------------------------------------------------
def policy_problems(cfg: Config) -> list[str]:
    """What makes the [triggers] policy unusable (a typo must not silently disable a trigger)."""
    t = cfg.triggers
    if not t.rules:
        return ["triggers.rules: no rules defined"]
    problems: list[str] = []
    names = [r.name for r in t.rules]
    problems += [f"rule {n!r}: defined more than once" for n in sorted({n for n in names if names.count(n) > 1})]
    external = bool(t.prometheus_url or t.jsonl_path)
    for r in t.rules:
        if (r.threshold is None) == (r.baseline_ratio is None):
            problems.append(f"rule {r.name!r}: set exactly one of threshold and baseline_ratio")
        builtin = r.metric in PROBE_METRICS or r.metric == INTEGRITY
        if r.metric in PROBE_METRICS and not t.probe:
            problems.append(f"rule {r.name!r}: {r.metric} needs triggers.probe = true")
        if builtin and r.labels:
            problems.append(f"rule {r.name!r}: labels apply to Prometheus metrics, not to {r.metric}")
        if not builtin and not external:
            problems.append(f"rule {r.name!r}: {r.metric} needs triggers.prometheus_url or triggers.jsonl_path")
    if t.probe and not cfg.benchmark.queries:
        problems.append("triggers.probe = true needs benchmark.queries")
    return problems


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def lookup(sample: Sample, rule: TriggerRule) -> tuple[float | None, str]:
    """The rule's value in the sample, or None and why the sample is inconclusive for it."""
    hits = [
        s for s in sample.series if s.name == rule.metric and all(s.labels.get(k) == v for k, v in rule.labels.items())
    ]
    if not hits:
        why = f"{rule.metric} missing"
        return None, f"{why} ({'; '.join(sample.errors)})" if sample.errors else why
    if len(hits) > 1:
        return None, f"{len(hits)} series match {rule.metric}; add labels to the rule"
    value = _number(hits[0].value)
    return (value, "") if value is not None else (None, f"{rule.metric} is not a number ({hits[0].value!r})")


def threshold_for(rule: TriggerRule, baseline: dict[str, float] | None) -> tuple[float | None, str]:
    """The rule's threshold, or None and why it cannot be known (no baseline)."""
    if rule.threshold is not None:
        return rule.threshold, ""
    assert rule.baseline_ratio is not None
    if baseline is None:
        return None, "no baseline recorded"
    base = _number(baseline.get(rule.metric))
    if base is None:
        return None, f"baseline has no {rule.metric}"
    return base * rule.baseline_ratio, ""


def judge(
    rule: TriggerRule, state: RuleState, sample: Sample, baseline: dict[str, float] | None, policy: Policy
) -> tuple[RuleResult, RuleState, list[Event]]:
    """One rule on one sample: its result, next state and pause/resume events (hold not yet applied)."""
    value, why = lookup(sample, rule)
    threshold, twhy = threshold_for(rule, baseline)
    result = RuleResult(rule.name, rule.metric, rule.severity, rule.op, value, threshold, "ok", 0, rule.for_)
    events: list[Event] = []
    if value is None or threshold is None:
        result.note = why or twhy
        if policy == "keep":
            result.status, result.streak, result.values = "inconclusive", state.streak, list(state.values)
            return result, state, events
        if policy == "pause":
            result.status = "paused"
            if not state.paused:
                events.append(("trigger.paused", {"rule": rule.name, "reason": result.note}))
            return result, RuleState(paused=True), events
        failing = True  # policy "fail": the missing sample counts as a failure
    else:
        failing = OPS[rule.op](value, threshold)
    if state.paused:
        events.append(("trigger.resumed", {"rule": rule.name, "value": value}))
    if not failing:
        return result, RuleState(), events
    state = replace(state, streak=state.streak + 1, paused=False, values=(*state.values, value)[-rule.for_ :])
    result.streak, result.values = state.streak, list(state.values)
    result.status = "failing" if state.streak < rule.for_ else ("fired" if state.fired else "firing")
    return result, state, events


def decide(results: list[RuleResult], facts: Facts, dry_run: bool) -> Decision:
    """What the firing rules lead to, given the hold and the app's current provider."""
    firing = [r for r in results if r.status == "firing"]
    acting = [r for r in firing if r.severity != "warn"]
    warnings = [r.rule for r in firing if r.severity == "warn"]
    if not acting:
        return Decision("warn" if warnings else "none", warnings=warnings)
    emergency = any(r.severity == "emergency" or r.metric == INTEGRITY for r in acting)
    d = Decision("rollback", "emergency" if emergency else "standard", [r.rule for r in acting], warnings)
    if facts.hold is not None:
        d.action, d.note = "held", f"held by {facts.hold.user} since {facts.hold.since}: {facts.hold.reason}"
    elif facts.provider != facts.native:
        d.action = "skipped"
        d.note = f"the app config selects {facts.provider!r}, not {facts.native!r}: nothing to roll back"
    elif dry_run:
        d.action = "would-rollback"
    return d


def evaluate(
    rules: list[TriggerRule],
    states: dict[str, RuleState],
    sample: Sample,
    facts: Facts,
    policy: Policy,
    *,
    dry_run: bool = False,
    seq: int = 1,
    now: str = "",
) -> Evaluation:
    """One evaluation of the policy: results, decision, next states and the audit events it calls for."""
    results: list[RuleResult] = []
    nxt: dict[str, RuleState] = {}
    events: list[Event] = []
    for rule in rules:
        res, st, ev = judge(rule, states.get(rule.name, RuleState()), sample, facts.baseline, policy)
        results.append(res)
        nxt[rule.name] = st
        events += ev
    d = decide(results, facts, dry_run)
    newly_blocked = False
    for res in (r for r in results if r.status == "firing"):
        st = nxt[res.rule]
        if d.action == "held" and res.rule in d.rules:  # stays due: fires on the first failing sample after release
            newly_blocked |= not st.blocked
            nxt[res.rule] = replace(st, blocked=True)
        else:
            nxt[res.rule] = replace(st, fired=True, blocked=False)
    by_name = {r.name: r for r in rules}

    def fired(names: list[str]) -> list[dict[str, Any]]:
        return [_fired_json(by_name[r.rule], r) for r in results if r.rule in names]

    if d.warnings:
        events.append(("trigger.warn", {"rules": fired(d.warnings), "dry_run": dry_run}))
    if d.mode is not None and (d.action != "held" or newly_blocked):
        data = {"action": d.action, "mode": d.mode, "rules": fired(d.rules), "note": d.note, "dry_run": dry_run}
        if facts.hold is not None:
            data["hold"] = asdict(facts.hold)
        name = {"held": "trigger.held", "skipped": "trigger.skipped"}.get(d.action, "trigger.fired")
        events.append((name, data))
    return Evaluation(seq, now, results, d, facts.hold, sample.errors, sample.seconds, dry_run, nxt, events)


def _fired_json(rule: TriggerRule, r: RuleResult) -> dict[str, Any]:
    """What the audit log keeps of a firing rule: rule, samples and thresholds."""
    return {
        "rule": rule.name,
        "metric": rule.metric,
        "labels": rule.labels,
        "op": rule.op,
        "threshold": r.threshold,
        "fixed_threshold": rule.threshold,
        "baseline_ratio": rule.baseline_ratio,
        "for": rule.for_,
        "severity": rule.severity,
        "samples": r.values,
    }


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


# -- hold -------------------------------------------------------------------------------------------
def hold_path(cfg: Config) -> Path:
    return cfg.state_path / "hold.json"


def read_hold(cfg: Config) -> Hold | None:
    """The current hold; an unreadable hold.json still holds (fail safe)."""
    path = hold_path(cfg)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Hold(str(data["reason"]), str(data["since"]), str(data["user"]), str(data["host"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return Hold(f"{path} is unreadable ({err}); remove it with `failback release`", "?", "?", "?")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def place_hold(cfg: Config, reason: str) -> Hold:
    """Block automatic rollbacks until ``release_hold``; audited."""
    if not reason.strip():
        raise ConfigError("a hold needs a reason", "pass --reason '…' (it is shown on every evaluation)")
    current = read_hold(cfg)
    if current is not None:
        raise FailbackError(
            f"already held by {current.user} since {current.since}: {current.reason}",
            "run `failback release` first to replace the hold",
        )
    hold = Hold(reason.strip(), _now(), _user(), socket.gethostname())
    ensure_dir(cfg.state_path)
    write_text(hold_path(cfg), json.dumps(asdict(hold), indent=2) + "\n")
    AuditLog(cfg.state_path / "audit.jsonl").append("hold", asdict(hold))
    return hold


def release_hold(cfg: Config) -> Hold | None:
    """Remove the hold (None when there was none); audited."""
    hold = read_hold(cfg)
    if hold is None:
        return None
    path = hold_path(cfg)
    remove_quietly(path)
    fsync_dir(path.parent)
    AuditLog(cfg.state_path / "audit.jsonl").append("release", {"hold": asdict(hold), "by": _user()})
    return hold


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- stopping ---------------------------------------------------------------------------------------
class Stop:
    """SIGINT/SIGTERM: stop within a slice — a sample still being read is abandoned (``run``); during a rollback
    the signal becomes KeyboardInterrupt, so the rollback stops the way it does on Ctrl-C (nothing switched,
    resumable, exit 4)."""

    SLICE = 0.1  # seconds between checks while sleeping

    def __init__(self) -> None:
        self.requested = ""  # name of the signal that asked to stop
        self._in_rollback = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name
        if self._in_rollback:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stop]:
        """Handle SIGINT and SIGTERM while the block runs (main thread only)."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def rollback(self) -> Iterator[None]:
        self._in_rollback = True
        try:
            yield
        finally:
            self._in_rollback = False

    def run(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` in a daemon thread, waited for in slices: None as soon as a stop is requested (``fn`` is
        abandoned: whatever a source is doing, a signal is answered within a slice)."""
        done = threading.Event()
        box: list[T] = []
        failed: list[BaseException] = []

        def work() -> None:
            try:
                box.append(fn())
            except BaseException as err:  # handed to the caller's thread
                failed.append(err)
            finally:
                done.set()

        threading.Thread(target=work, name="failback-sample", daemon=True).start()
        while not done.wait(self.SLICE):
            if self.requested:
                return None
        if failed:
            raise failed[0]
        return box[0]

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.SLICE))


# -- the watcher ------------------------------------------------------------------------------------
@dataclass
class WatchResult:
    samples: int
    stopped: str  # max-samples, signal, rollback, interrupted, error
    exit_code: int = 0
    rollback: Outcome | None = None


class Watcher:
    """Samples the sources, evaluates the policy and acts on it. ``via`` names the command in audit records."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path,
        *,
        dry_run: bool = False,
        via: str = "watch",
        run_rollback: Callable[[Options], Outcome] | None = None,
        stop: Stop | None = None,
    ) -> None:
        problems = policy_problems(cfg)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConfigError(f"{config_path}: {problems[0]}{more}")
        self.cfg, self.config_path, self.dry_run, self.via = cfg, config_path, dry_run, via
        self.run_rollback = run_rollback or (lambda opts: Rollback(cfg, config_path, opts).run())
        self.stop = stop or Stop()
        self.audit = AuditLog(cfg.state_path / "audit.jsonl")
        self.states: dict[str, RuleState] = {}
        self.seq = 0

    def sources(self) -> list[tuple[str, Callable[[], list[Series]]]]:
        t, cfg = self.cfg.triggers, self.cfg
        out: list[tuple[str, Callable[[], list[Series]]]] = []
        if t.prometheus_url:
            url, timeout = t.prometheus_url, max(1.0, min(10.0, t.interval))
            out.append(("prometheus", lambda: read_prometheus(url, timeout)))
        if t.jsonl_path:
            jsonl = cfg.resolve(t.jsonl_path)
            out.append(("jsonl", lambda: read_jsonl(jsonl)))
        if t.probe:
            out.append(("probe", lambda: run_probe(cfg.source_path, cfg.benchmark.queries, cfg.benchmark.runs)))
        if any(r.metric == INTEGRITY for r in t.rules):
            out.append(("integrity", lambda: run_integrity(cfg.source_path)))
        return out

    def sample(self) -> Sample:
        """Read every source once; a failing source is an error note (its metrics are missing), never a crash."""
        t0 = time.perf_counter()
        sample = Sample([])
        for name, read in self.sources():
            try:
                sample.series += read()
            except SOURCE_ERRORS as err:
                sample.errors.append(f"{name}: {err}")
        sample.seconds = time.perf_counter() - t0
        return sample

    def facts(self) -> Facts:
        app = self.cfg.app
        try:
            provider = current_provider(self.cfg.app_config_path, app.key)
        except FailbackError:
            provider = None
        return Facts(self.baseline(), read_hold(self.cfg), provider, app.native_value)

    def baseline(self) -> dict[str, float] | None:
        """The baseline's ``metrics`` (None when absent or unreadable: baseline_ratio rules are inconclusive)."""
        if all(r.baseline_ratio is None for r in self.cfg.triggers.rules):
            return None
        try:
            data = load_baseline(self.cfg.state_path)
        except OSError:
            return None
        metrics = data.get("metrics") if data else None
        return metrics if isinstance(metrics, dict) else None

    def evaluate(self, sample: Sample | None = None) -> Evaluation:
        """Evaluate ``sample`` (default: one taken now), keep the next states and write the audit events."""
        self.seq += 1
        t = self.cfg.triggers
        sample, facts = sample or self.sample(), self.facts()
        ev = evaluate(
            t.rules, self.states, sample, facts, t.inconclusive, dry_run=self.dry_run, seq=self.seq, now=_now()
        )
        self.states = ev.states
        for name, data in ev.events:
            self.audit.append(name, {"via": self.via, "seq": ev.seq, **data})
        return ev

    def act(self, ev: Evaluation) -> Outcome | None:
        """Run the rollback the evaluation decided on (none for any other action)."""
        if ev.decision.action != "rollback":
            return None
        assert ev.decision.mode is not None
        with self.stop.rollback():
            outcome = self.run_rollback(Options(mode=ev.decision.mode, yes=True))
        self.audit.append(
            "trigger.rollback",
            {
                "via": self.via,
                "seq": ev.seq,
                "rules": ev.decision.rules,
                "mode": ev.decision.mode,
                "status": outcome.status,
                "exit_code": outcome.exit_code,
                "error": str(outcome.error) if outcome.error else None,
            },
            outcome.run_id,
        )
        return outcome

    def watch(
        self,
        max_samples: int | None = None,
        on_evaluation: Callable[[Evaluation], None] | None = None,
    ) -> WatchResult:
        """Evaluate every interval until max_samples, a stop signal, or an automatic rollback (which ends it)."""
        t = self.cfg.triggers
        self.audit.append(
            "watch.start",
            {
                "via": self.via,
                "dry_run": self.dry_run,
                "interval": t.interval,
                "inconclusive": t.inconclusive,
                "rules": [r.model_dump(by_alias=True) for r in t.rules],
                "sources": [name for name, _ in self.sources()],
            },
        )
        result = WatchResult(0, "max-samples")
        due = time.monotonic()
        try:
            while True:
                sample = self.stop.run(self.sample)
                if sample is None:  # a signal arrived while the sources were read: the sample is abandoned
                    result.stopped = "signal"
                    break
                ev = self.evaluate(sample)
                result.samples += 1
                if on_evaluation:
                    on_evaluation(ev)
                outcome = self.act(ev)
                if outcome is not None:
                    result.stopped, result.exit_code, result.rollback = "rollback", outcome.exit_code, outcome
                    break
                if max_samples is not None and result.samples >= max_samples:
                    break
                due = max(due + t.interval, time.monotonic())  # late samples are not made up in a burst
                self.stop.sleep(due - time.monotonic())
                if self.stop.requested:
                    result.stopped = "signal"
                    break
        except KeyboardInterrupt:  # outside a rollback's own handling (no Stop installed, or between steps)
            result.stopped, result.exit_code = "interrupted", 4
            raise
        except FailbackError as err:
            result.stopped, result.exit_code = "error", err.exit_code
            raise
        finally:
            self.audit.append(
                "watch.stop",
                {"via": self.via, "samples": result.samples, "stopped": result.stopped, "exit_code": result.exit_code},
            )
        return result


__all__ = [
    "CHECK_FIRED",
    "Decision",
    "Evaluation",
    "Facts",
    "Hold",
    "RuleResult",
    "RuleState",
    "Sample",
    "Series",
    "Stop",
    "WatchResult",
    "Watcher",
    "evaluate",
    "place_hold",
    "policy_problems",
    "read_hold",
    "release_hold",
]
