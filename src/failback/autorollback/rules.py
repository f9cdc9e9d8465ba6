"""The automatic rollback's rules (pure): one sample plus the facts around it and the rules' states → an
``Evaluation`` (one result per rule, the decision, the next states and the audit events to write)."""

from __future__ import annotations

import math
import operator
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import Any, Literal, TypeVar

from ..config import Config, TriggerRule
from .hold import Hold

__all__ = [
    "Decision",
    "Evaluation",
    "Facts",
    "RuleResult",
    "RuleState",
    "Sample",
    "Series",
    "evaluate",
    "policy_problems",
]

PROBE_METRICS = ("probe.p50_ms", "probe.p95_ms", "probe.errors")
INTEGRITY = "integrity"
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
Flap = tuple[int, int]  # (flap_window, flap_changes)
BLOCKED = ("held", "cooldown")  # decisions that keep a due rule due
T = TypeVar("T")


# -- data -------------------------------------------------------------------------------------------
@dataclass
class Series:
    """One value read from a source; JSONL and built-in metrics carry no labels.

    ``time`` is when the value was measured (epoch seconds; None: at the read, always fresh); a value older than
    ``max_age`` seconds is stale. ``origin`` names the datum within its source (a JSONL line's offset, a query):
    the same origin and time read again is the same sample, not a new one. ``stale`` is why its source knows
    the value is stale (a scrape target down), or ""."""

    name: str
    value: object
    labels: dict[str, str] = field(default_factory=dict)
    time: float | None = None
    max_age: float = math.inf
    origin: str = ""
    stale: str = ""


Stamp = tuple[str, float]  # (origin, time): what makes a sample distinct from the one before


@dataclass
class Sample:
    series: list[Series]
    errors: list[str] = field(default_factory=list)  # "source: problem" for each source that failed
    seconds: float = 0.0
    now: float = field(default_factory=time.time)  # when it was taken (epoch seconds): the ages are measured from it


@dataclass(frozen=True)
class RuleState:
    """Where a rule stands between samples."""

    streak: int = 0  # consecutive failing samples
    fired: bool = False  # fired in this streak (fires once per streak)
    blocked: bool = False  # due but blocked by a hold (audited once per streak)
    paused: bool = False  # paused by an inconclusive sample (policy "pause")
    values: tuple[float | None, ...] = ()  # the streak's last `for` values
    last: Stamp | None = None  # the last sample counted (a timed one): read again, it is not counted again
    history: tuple[bool, ...] = ()  # failing or not, for the last conclusive samples (flap_window of them)
    flapping: bool = False


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
    flapping: bool = False  # flipped between passing and failing flap_changes times in the last flap_window samples


@dataclass
class Facts:
    """What an evaluation knows besides the sample."""

    baseline: dict[str, float] | None = None  # baseline.json "metrics"
    hold: Hold | None = None
    provider: str | None = None  # the app config's current provider value
    native: str = "native"  # the value that selects the native provider
    cooldown: str = ""  # why automatic rollbacks wait (an automatic rollback ran less than [triggers] cooldown ago)


@dataclass
class Decision:
    action: str  # none, warn, rollback, would-rollback, held, cooldown, skipped
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
    """One evaluation of the rules: each rule's result, the decision (what to do and why), the hold if any, the
    sources' errors, and the rule states the next evaluation starts from."""

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
    for name in (t.promql.bearer_token_env, t.promql.basic_password_env):
        if name and name not in os.environ:
            problems.append(f"triggers.promql: environment variable {name} is not set")
    if t.promql.basic_user and not t.promql.basic_password_env:
        problems.append("triggers.promql.basic_user needs basic_password_env")
    for r in t.rules:
        if (r.threshold is None) == (r.baseline_ratio is None):
            problems.append(f"rule {r.name!r}: set exactly one of threshold and baseline_ratio")
        if r.query is not None:
            if not t.promql.url:
                problems.append(f"rule {r.name!r}: a query needs triggers.promql.url")
            continue
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


def lookup(sample: Sample, rule: TriggerRule) -> tuple[float | None, str, Series | None]:
    """The rule's value in the sample and the series holding it, or None and why the sample is inconclusive."""
    hits = [
        s for s in sample.series if s.name == rule.metric and all(s.labels.get(k) == v for k, v in rule.labels.items())
    ]
    if not hits:  # a source that knows its data is stale says so even when it has no value to give
        hits = [s for s in sample.series if s.name == rule.metric and s.stale][:1]
    if not hits:
        why = f"{rule.metric} missing"
        return None, f"{why} ({'; '.join(sample.errors)})" if sample.errors else why, None
    if len(hits) > 1:
        return None, f"{len(hits)} series match {rule.metric}; add labels to the rule", None
    value = _number(hits[0].value)
    if value is None and not hits[0].stale:
        return None, f"{rule.metric} is not a number ({hits[0].value!r})", None
    return value, "", hits[0]


def freshness(series: Series, now: float, last: Stamp | None) -> tuple[Stamp | None, str]:
    """The series' stamp, and why it may not count (stale, or the sample counted last time), or ""."""
    if series.stale:
        return None, f"{series.name} is stale: {series.stale}"
    if series.time is None:
        return None, ""
    age = now - series.time
    if age > series.max_age:
        return None, f"{series.name} is stale: measured {age:.0f} s ago (max_age {series.max_age:g} s)"
    stamp = (series.origin, series.time)
    if stamp == last:
        return None, f"{series.name}: no new sample since the last one counted ({series.origin or 'same time'})"
    return stamp, ""


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
    rule: TriggerRule,
    state: RuleState,
    sample: Sample,
    baseline: dict[str, float] | None,
    policy: Policy,
    flap: Flap = (10, 4),
) -> tuple[RuleResult, RuleState, list[Event]]:
    """One rule on one sample: its result, next state and pause/resume/flapping events (hold not yet applied).

    A stale value, or the value counted last time read again, is inconclusive whatever the policy: it never
    counts as a failure, and the streak stays as it was. A rule whose conclusive samples flipped between passing
    and failing ``flap[1]`` times within the last ``flap[0]`` is flapping (reported and audited, not acted on)."""
    value, why, series = lookup(sample, rule)
    threshold, twhy = threshold_for(rule, baseline)
    result = RuleResult(rule.name, rule.metric, rule.severity, rule.op, value, threshold, "ok", 0, rule.for_)
    result.flapping = state.flapping
    events: list[Event] = []
    stamp, old = freshness(series, sample.now, state.last) if series else (None, "")
    if old:
        result.status, result.note, result.streak, result.values = "inconclusive", old, state.streak, list(state.values)
        return result, state, events
    if value is None or threshold is None:
        result.note = why or twhy
        if policy == "keep":
            result.status, result.streak, result.values = "inconclusive", state.streak, list(state.values)
            return result, state, events
        if policy == "pause":
            result.status = "paused"
            if not state.paused:
                events.append(("trigger.paused", {"rule": rule.name, "reason": result.note}))
            return result, replace(state, streak=0, fired=False, blocked=False, values=(), paused=True), events
        failing = True  # policy "fail": the missing sample counts as a failure
    else:
        failing = OPS[rule.op](value, threshold)
    if state.paused:
        events.append(("trigger.resumed", {"rule": rule.name, "value": value}))
    last, history = stamp or state.last, (*state.history, failing)[-flap[0] :]
    flips = sum(a != b for a, b in pairwise(history))
    result.flapping = flips >= flap[1]
    if result.flapping and not state.flapping:
        events.append(("trigger.flapping", {"rule": rule.name, "flips": flips, "samples": len(history)}))
    if not failing:
        return result, RuleState(last=last, history=history, flapping=result.flapping), events
    values = (*state.values, value)[-rule.for_ :]
    state = replace(
        state,
        streak=state.streak + 1,
        paused=False,
        values=values,
        last=last,
        history=history,
        flapping=result.flapping,
    )
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
    elif facts.cooldown and not dry_run:
        d.action, d.note = "cooldown", facts.cooldown
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
    flap: Flap = (10, 4),
) -> Evaluation:
    """One evaluation of the policy: results, decision, next states and the audit events it calls for. A hold or
    a cooldown blocks the rollback; its rules stay due and fire on the first failing sample once it is lifted."""
    results: list[RuleResult] = []
    nxt: dict[str, RuleState] = {}
    events: list[Event] = []
    for rule in rules:
        res, st, ev = judge(rule, states.get(rule.name, RuleState()), sample, facts.baseline, policy, flap)
        results.append(res)
        nxt[rule.name] = st
        events += ev
    d = decide(results, facts, dry_run)
    newly_blocked = False
    for res in (r for r in results if r.status == "firing"):
        st = nxt[res.rule]
        if d.action in BLOCKED and res.rule in d.rules:  # stays due: fires on the first failing sample after release
            newly_blocked |= not st.blocked
            nxt[res.rule] = replace(st, blocked=True)
        else:
            nxt[res.rule] = replace(st, fired=True, blocked=False)
    by_name = {r.name: r for r in rules}

    def fired(names: list[str]) -> list[dict[str, Any]]:
        return [_fired_json(by_name[r.rule], r) for r in results if r.rule in names]

    if d.warnings:
        events.append(("trigger.warn", {"rules": fired(d.warnings), "dry_run": dry_run}))
    if d.mode is not None and (d.action not in BLOCKED or newly_blocked):
        data = {"action": d.action, "mode": d.mode, "rules": fired(d.rules), "note": d.note, "dry_run": dry_run}
        if facts.hold is not None:
            data["hold"] = asdict(facts.hold)
        name = {"held": "trigger.held", "cooldown": "trigger.cooldown", "skipped": "trigger.skipped"}.get(
            d.action, "trigger.fired"
        )
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
