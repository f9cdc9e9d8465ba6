"""Run directories: ``<state>/runs/<run-id>/state.json`` records each step's status, timings and results,
written atomically as the run goes (when: ``pipeline.driver.Rollback._step``), so a run can be inspected, resumed
or aborted after a crash.
Also the one-rollback-at-a-time lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import LockedError, from_os_error
from .files import ensure_dir, write_text
from .state import StatePaths

DEBT = "verification-debt.json"
STEPS = ("snapshot", "backup", "assess", "convert", "verify", "switch", "postcheck", "report")


@dataclass
class StepState:
    name: str
    status: str = "pending"  # pending, running, done, failed, skipped
    started: float | None = None
    seconds: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class RunState:
    """Everything known about one run; saved to state.json as the run goes."""

    id: str
    config: str
    mode: str
    created: str
    status: str = "running"  # running, done, failed, refused, interrupted, dry-run
    steps: list[StepState] = field(default_factory=lambda: [StepState(s) for s in STEPS])
    exit_code: int | None = None
    error: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> StepState:
        return next(s for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        """A shallow JSON form (results are JSON already; saved several times a run, so no deep copy)."""
        return {**vars(self), "steps": [dict(vars(s)) for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        steps = [StepState(**s) for s in data.pop("steps")]
        return cls(steps=steps, **data)


_crash_hits: Counter[str] = Counter()
_crash_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Fault-injection hook for the crash tests: ``FAILBACK_KILL_AT=<name>[:<n>]`` makes the process SIGKILL
    itself the n-th time (default: the first) it reaches ``name``, as a power cut or the OOM killer would.
    Unset (always, outside the tests), it does nothing."""
    at = os.environ.get("FAILBACK_KILL_AT", "")
    point, sep, nth = at.rpartition(":")
    if not (sep and nth.isdigit()):  # names contain ":" ("progress:copy"): only a number counts as n
        point, nth = at, "1"
    if point != name:
        return
    with _crash_lock:  # progress ticks arrive from the background backup thread too
        _crash_hits[name] += 1
        if _crash_hits[name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


def plain(value: object) -> object:
    """``json.dumps``'s ``default`` for a run's state (its step results may hold what JSON cannot write): a
    dataclass as its fields, anything else as text. state.json and report.json write the state alike."""
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else str(value)


class RunDir:
    """One run's folder: state, snapshot, kept config, reports."""

    def __init__(self, state_dir: Path, run_id: str) -> None:
        self.path = StatePaths(state_dir).run(run_id)
        self.id = run_id

    @classmethod
    def create(
        cls, state_dir: Path, config: Path, mode: str, options: dict[str, Any] | None = None
    ) -> tuple[RunDir, RunState]:
        """A new run's folder and state, saved with its ``options`` in its first write (a run killed right after
        resumes with them: its --yes, its reason)."""
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(2).hex()
        rd = cls(state_dir, run_id)
        ensure_dir(rd.path)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        state = RunState(run_id, str(config), mode, created, options=dict(options or {}))
        rd.save(state)
        return rd, state

    def file(self, name: str) -> Path:
        return self.path / name

    def save(self, state: RunState) -> None:
        # compact: the C encoder (indent would take the pure-Python one, ~10x slower on a run's results)
        text = json.dumps(state.to_json(), separators=(",", ":"), default=plain)
        write_text(self.file("state.json"), text + "\n")

    def load(self) -> RunState:
        return RunState.from_json(json.loads(self.file("state.json").read_text(encoding="utf-8")))


def list_runs(state_dir: Path) -> list[RunDir]:
    """Run directories, newest first."""
    runs = StatePaths(state_dir).runs
    if not runs.is_dir():
        return []
    return [RunDir(state_dir, p.name) for p in sorted(runs.iterdir(), reverse=True) if (p / "state.json").exists()]


def find_run(state_dir: Path, run_id: str | None, statuses: tuple[str, ...] | None = None) -> RunDir:
    """A run by id or unique id prefix; without one, the newest run (whose status is in ``statuses``, if given)."""
    from .errors import InputError

    runs = list_runs(state_dir)
    if run_id:
        match = [rd for rd in runs if rd.id.startswith(run_id)]
        if len(match) != 1:
            raise InputError(f"no single run matches {run_id!r}", "see `failback status`")
        return match[0]
    for rd in runs:
        if statuses is None or rd.load().status in statuses:
            return rd
    what = f"no run that is {' or '.join(statuses)}" if statuses else "no runs yet"
    raise InputError(f"{what} in {StatePaths(state_dir).runs}", "see `failback status`")


class RunLock:
    """One rollback at a time per state folder: an OS lock (``flock``) on ``<state>/lock``, held for the whole
    run and released by the kernel when its holder dies (SIGKILL, power cut, a container retried on another
    host), so it can neither be stolen from a live run nor stay stuck after a dead one. The file also says who
    holds it (run, pid, host, since) for messages; only the flock decides. Only the object that took the lock
    gives it up."""

    def __init__(self, state_dir: Path) -> None:
        self.path = StatePaths(state_dir).lock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def holder(self) -> dict[str, Any]:
        """What the last holder wrote (information only: empty once released)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, run: str) -> None:
        """Take the lock for ``run`` without waiting; LockedError (naming the holder) when a live process holds it."""
        if self._fd is not None:
            return
        ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise from_os_error(err, f"cannot open the lock file {self.path}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            raise LockedError(
                f"another failback run holds the lock: run {h.get('run')}, pid {h.get('pid')} on {h.get('host')}"
            ) from None
        except OSError as err:
            os.close(fd)
            raise from_os_error(err, f"cannot lock {self.path}") from err
        self._fd = fd
        body = json.dumps({"run": run, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, body.encode(), 0)
            os.fsync(fd)
        except OSError as err:
            self.release()
            raise from_os_error(err, f"cannot write {self.path}") from err

    def release(self) -> None:
        """Give the lock up if this object holds it; another holder's lock is never touched."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the holder info goes while the lock is still ours
        os.close(fd)  # closing the only descriptor releases the flock
