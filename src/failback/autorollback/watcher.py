"""The watch loop: sample every interval, evaluate the rules, run the rollback; and how it stops."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..config import Config
from ..errors import ConfigError, FailbackError
from ..metrics import publish_metrics
from ..pipeline.postcheck import load_baseline
from ..pipeline.rollback import Options, Outcome, Rollback
from ..pipeline.switch import current_provider
from .hold import _now, cooldown_note, read_hold, start_cooldown
from .notify import audit_log
from .rules import Evaluation, Facts, RuleState, Sample, T, evaluate, policy_problems
from .sources import SOURCE_ERRORS, MetricSource, configured_sources

__all__ = ["CHECK_FIRED", "Stop", "WatchResult", "Watcher"]

CHECK_FIRED = 3  # exit code of `failback check` when a rollback rule fires


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
    """How a watch ended: the samples evaluated, why it stopped (max-samples, signal, rollback, interrupted, error),
    its exit code and the automatic rollback it ran, if any."""

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
        self.audit = audit_log(cfg)
        self.states: dict[str, RuleState] = {}
        self.seq = 0
        self.last: Evaluation | None = None  # the last evaluation (its rule states are in the metrics)
        self.metrics_problem = ""  # why the metrics textfile could not be written last time (audited once)

    def sources(self) -> list[MetricSource]:
        """The metric sources the config asks for (see :mod:`failback.autorollback.sources`)."""
        return configured_sources(self.cfg)

    def sample(self) -> Sample:
        """Read every source once; a failing source is an error note (its metrics are missing), never a crash."""
        t0 = time.perf_counter()
        sample = Sample([])
        for source in self.sources():
            try:
                sample.series += source.read()
            except SOURCE_ERRORS as err:
                sample.errors.append(f"{source.kind}: {err}")
        sample.seconds = time.perf_counter() - t0
        return sample

    def facts(self) -> Facts:
        app = self.cfg.app
        try:
            provider = current_provider(self.cfg.app_config_path, app.key)
        except FailbackError:
            provider = None
        return Facts(self.baseline(), read_hold(self.cfg), provider, app.native_value, cooldown_note(self.cfg))

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
            t.rules,
            self.states,
            sample,
            facts,
            t.inconclusive,
            dry_run=self.dry_run,
            seq=self.seq,
            now=_now(),
            flap=(t.flap_window, t.flap_changes),
        )
        self.states, self.last = ev.states, ev
        for name, data in ev.events:
            self.audit.append(name, {"via": self.via, "seq": ev.seq, **data})
        return ev

    def publish(self) -> None:
        """Rewrite the metrics textfile with the last evaluation; a failure is audited (once until it changes)."""
        problem = publish_metrics(self.cfg, self.last)
        if problem and problem != self.metrics_problem:
            self.audit.append("metrics.failed", {"via": self.via, "error": problem})
        self.metrics_problem = problem

    def act(self, ev: Evaluation) -> Outcome | None:
        """Run the rollback the evaluation decided on (none for any other action)."""
        if ev.decision.action != "rollback":
            return None
        assert ev.decision.mode is not None
        with self.stop.rollback():
            outcome = self.run_rollback(Options(mode=ev.decision.mode, yes=True))
        start_cooldown(self.cfg, outcome.run_id, outcome.status)
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
                "sources": [source.kind for source in self.sources()],
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
                self.publish()
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
