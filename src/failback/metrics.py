"""failback's own metrics, in the Prometheus text format: a textfile (for node_exporter's textfile collector)
rewritten atomically after every run and every ``watch`` sample, and ``watch --metrics-port`` serving ``/metrics``;
a fleet's textfile (``<fleet state>/metrics.prom``) rewritten after every wave.

Every metric is a gauge; ``METRICS`` names them, their labels and meaning (the runbook's table is generated from
it). The rule metrics appear in what ``watch`` writes and serves (a run outside ``watch`` has no rule states).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest, start_http_server

from .autorollback.hold import cooldown_until, read_hold
from .backup.keep import unpaid
from .backup.manifest import created_at
from .backup.sets import list_backups
from .config import Config
from .errors import FailbackError, from_os_error
from .files import write_text
from .journal import list_runs
from .report.markdown import md_table

if TYPE_CHECKING:
    from .autorollback.rules import Evaluation
    from .fleet.journal import FleetState

__all__ = [
    "METRICS",
    "RULE_STATES",
    "MetricsCollector",
    "exposition",
    "fleet_exposition",
    "metrics_reference",
    "publish_fleet_metrics",
    "publish_metrics",
    "serve_metrics",
]

RULE_STATES = ("ok", "failing", "firing", "fired", "inconclusive", "paused")
METRICS: dict[str, tuple[tuple[str, ...], str]] = {  # name -> (labels, meaning)
    "failback_last_run_info": (("run", "mode", "status"), "1 for the newest run."),
    "failback_last_run_exit_code": ((), "The newest run's exit code (absent while it runs)."),
    "failback_last_run_start_timestamp_seconds": ((), "When the newest run started."),
    "failback_last_run_step_seconds": (("step",), "Seconds each step of the newest run took."),
    "failback_debts_open": ((), "Runs with verification debt not yet paid."),
    "failback_backups": ((), "Backups with a valid manifest."),
    "failback_backup_newest_age_seconds": ((), "Age of the newest backup (absent: no backup)."),
    "failback_backup_oldest_age_seconds": ((), "Age of the oldest backup (absent: no backup)."),
    "failback_hold": ((), "1 while automatic rollbacks are held."),
    "failback_rule_state": (
        ("rule", "state"),
        f"1 for each rule's state in the last sample, else 0 ({', '.join(RULE_STATES)}).",
    ),
    "failback_rule_streak": (("rule",), "The rule's consecutive failing samples."),
    "failback_rule_value": (("rule",), "The rule's last value read (absent: none read)."),
    "failback_rule_flapping": (("rule",), "1 while the rule flips fast (triggers.flap_changes)."),
    "failback_watch_last_sample_timestamp_seconds": ((), "When the last sample was evaluated."),
    "failback_cooldown_until_timestamp_seconds": ((), "Automatic rollbacks wait until then (triggers.cooldown)."),
    "failback_fleet_info": (("status",), "1 for a fleet's status (running, halted, awaiting-approval, done)."),
    "failback_fleet_wave": ((), "The fleet's current wave, from 1 (its number of waves + 1 when done)."),
    "failback_fleet_tenants": (("state",), "A fleet's tenants in each state (switched, refused, failed, lost, …)."),
}


class MetricsCollector:
    """A prometheus_client collector of failback's metrics; ``evaluation`` gives the last sample (or None)."""

    def __init__(self, cfg: Config, evaluation: Callable[[], Evaluation | None] = lambda: None) -> None:
        self.cfg, self.evaluation = cfg, evaluation

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        yield from _runs(self.cfg)
        yield _gauge("failback_debts_open", len(unpaid(self.cfg.state_path)))
        yield from _backups(self.cfg, now)
        yield _gauge("failback_hold", read_hold(self.cfg) is not None)
        until, _ = cooldown_until(self.cfg)
        yield _gauge("failback_cooldown_until_timestamp_seconds", until if until > now else 0.0)
        ev = self.evaluation()
        if ev is not None:
            yield from _rules(ev)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name][1], value=float(value))


def _family(name: str) -> GaugeMetricFamily:
    labels, doc = METRICS[name]
    return GaugeMetricFamily(name, doc, labels=list(labels))


def metrics_reference() -> str:
    """The table of failback's own metrics (a generated region of the runbook)."""
    rows = [[f"`{name}`", ", ".join(f"`{x}`" for x in labels), doc] for name, (labels, doc) in METRICS.items()]
    return "\n".join(md_table(["metric", "labels", "meaning"], rows))


def _runs(cfg: Config) -> Iterator[Metric]:
    runs = list_runs(cfg.state_path)
    if not runs:
        return
    state = runs[0].load()
    info = _family("failback_last_run_info")
    info.add_metric([state.id, state.mode, state.status], 1.0)
    yield info
    if state.exit_code is not None:
        yield _gauge("failback_last_run_exit_code", state.exit_code)
    started = datetime.fromisoformat(state.created).timestamp()
    yield _gauge("failback_last_run_start_timestamp_seconds", started)
    steps = _family("failback_last_run_step_seconds")
    for step in state.steps:
        if step.seconds is not None:
            steps.add_metric([step.name], step.seconds)
    yield steps


def _backups(cfg: Config, now: float) -> Iterator[Metric]:
    made = [created_at(e["manifest"]).timestamp() for e in list_backups(cfg.backup_layers)]
    yield _gauge("failback_backups", len(made))
    if made:
        yield _gauge("failback_backup_newest_age_seconds", now - max(made))
        yield _gauge("failback_backup_oldest_age_seconds", now - min(made))


def _rules(ev: Evaluation) -> Iterator[Metric]:
    state = _family("failback_rule_state")
    streak = _family("failback_rule_streak")
    value = _family("failback_rule_value")
    flapping = _family("failback_rule_flapping")
    for r in ev.results:
        for s in RULE_STATES:
            state.add_metric([r.rule, s], float(r.status == s))
        streak.add_metric([r.rule], r.streak)
        flapping.add_metric([r.rule], float(r.flapping))
        if r.value is not None:
            value.add_metric([r.rule], r.value)
    yield from (state, streak, value, flapping)
    sampled = datetime.fromisoformat(ev.time).timestamp() if ev.time else time.time()
    yield _gauge("failback_watch_last_sample_timestamp_seconds", sampled)


def exposition(cfg: Config, evaluation: Evaluation | None = None) -> str:
    """The metrics now, in the Prometheus text format."""
    return generate_latest(_registry(MetricsCollector(cfg, lambda: evaluation))).decode("utf-8")


def _registry(collector: MetricsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@contextlib.contextmanager
def serve_metrics(
    cfg: Config, evaluation: Callable[[], Evaluation | None], address: str, port: int
) -> Iterator[tuple[str, int]]:
    """Serve the metrics at ``http://address:port/metrics`` (in a thread) while the block runs; yields where."""
    try:
        server, thread = start_http_server(port, address, _registry(MetricsCollector(cfg, evaluation)))
    except OSError as err:
        raise from_os_error(err, f"cannot serve metrics on {address}:{port}") from err
    try:
        yield address, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish_metrics(cfg: Config, evaluation: Evaluation | None = None) -> str:
    """Rewrite the metrics textfile atomically; "" or why it could not be written (never raised: metrics must not
    fail a run or a watch)."""
    return _publish(cfg.metrics_textfile, lambda: exposition(cfg, evaluation))


class FleetCollector:
    """A prometheus_client collector of a fleet's metrics, from its journal's state."""

    def __init__(self, state: FleetState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        info = _family("failback_fleet_info")
        info.add_metric([self.state.status], 1.0)
        yield info
        yield _gauge("failback_fleet_wave", self.state.wave + 1)
        tenants = _family("failback_fleet_tenants")
        for name, count in self.state.counts().items():
            tenants.add_metric([name], float(count))
        yield tenants


def fleet_exposition(state: FleetState) -> str:
    """A fleet's metrics now, in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state))
    return generate_latest(registry).decode("utf-8")


def publish_fleet_metrics(path: Path, state: FleetState) -> str:
    """Rewrite a fleet's metrics textfile atomically; "" or why it could not be written (never raised)."""
    return _publish(path, lambda: fleet_exposition(state))


def _publish(path: Path, text: Callable[[], str]) -> str:
    try:
        write_text(path, text())
    except (OSError, FailbackError, ValueError) as err:
        return str(err)
    return ""
