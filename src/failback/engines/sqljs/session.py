"""Long-lived runner.js processes (``--serve``): an engine run costs a job, not a Node start and a sql.js load.

A :class:`RunnerSession` owns one Node process, started on first use and again after it died; :func:`run_job`
runs a job in an idle session of this process for the same command, Node packages (the same files, unchanged)
and ``legacy_functions``, else in the one :func:`warm` is starting for them (it waits), else in a new one. So the CLI,
the API and a fleet worker each pay Node's start once per build (a fleet worker's one thread keeps one Node), and two
threads never share a pipe: each takes its own session. Sessions end at interpreter exit or with
:func:`close_sessions`; a forked child forgets its parent's (their pipes stay the parent's).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import EngineError, NodeNotFound

SERVE = "--serve"
EAGER_WASM = "--no-wasm-dynamic-tiering"  # Node compiles all WebAssembly with its optimizing compiler at once
STDERR_TAIL = 16384  # bytes of a job's stderr kept for the message when the process dies
KEEP_RSS = 256 << 20  # a process whose job peaked above this is stopped after it: its grown WebAssembly memory
# never shrinks, and a big job pays Node's start (~0.2 s) many times over anyway


class RunnerSession:
    """One ``runner.js --serve`` process, running one job at a time (the caller holds the session alone)."""

    def __init__(self, command: Sequence[str]) -> None:
        """``command``: Node and runner.js (and Node's options); :data:`SERVE` is added, and :data:`EAGER_WASM`
        after :func:`compile_eagerly`."""
        self.command = [command[0], *_node_options, *command[1:], SERVE]
        self._proc: subprocess.Popen[bytes] | None = None
        self._drainer: threading.Thread | None = None
        self._stderr = bytearray()
        self._busy = threading.RLock()  # held while a job uses the pipes: they are closed only when none does

    @property
    def pid(self) -> int | None:
        """The Node process's id while it runs; None before the first job and after it stopped."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def run(self, job: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """The result document of ``job`` (runner.js's protocol), run within ``timeout`` seconds (None: no limit).

        Starts the process if it is not running. EngineError when the process dies, answers what is not a
        document or runs out of time; the process is then stopped, the next job starts a new one."""
        with self._busy:
            return self._run(job, timeout)

    def _run(self, job: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        proc = self._proc
        if proc is None or proc.poll() is not None:
            proc = self._start()
        assert proc.stdin and proc.stdout
        self._stderr.clear()  # what the process prints from now on is this job's
        try:
            view = memoryview(json.dumps(job).encode() + b"\n")
            while view:
                view = view[os.write(proc.stdin.fileno(), view) :]
            answer = _read_line(proc.stdout.fileno(), deadline)
        except BrokenPipeError:
            answer = b""
        except TimeoutError:
            self.close()
            raise EngineError(f"the sql.js runner did not finish within {timeout} s") from None
        except BaseException:  # e.g. KeyboardInterrupt: the job's answer would be read as the next job's
            self.close()
            raise
        try:
            doc = json.loads(answer) if answer else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self.close()
            raise EngineError(f"the sql.js runner failed (exit status {proc.returncode}): {self._last_words()}")
        return doc

    def close(self) -> None:
        """Stop the process (it holds nothing to save: the engine never writes a file); its stderr is read to
        the end first. Called from another thread while a job runs (a worker leaving, the interpreter exiting),
        the job ends with an EngineError (the process died) and the pipes are closed after it, never under it: a
        descriptor closed while another thread reads it fails that read, or reads a file opened next with its
        number."""
        proc = self._proc
        if proc is None:
            return
        proc.kill()  # a job waiting for its answer sees the pipe end
        with self._busy:
            if self._proc is not proc:  # the job closed it on its way out
                return
            self._proc = None
            proc.wait()
            if self._drainer:
                self._drainer.join()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()

    def _start(self) -> subprocess.Popen[bytes]:
        self.close()
        try:
            proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as err:
            raise NodeNotFound(f"cannot start {self.command[0]}: {err.strerror}") from None
        self._proc, self._stderr = proc, bytearray()
        self._drainer = threading.Thread(target=_drain, args=(proc, self._stderr), name="failback-sqljs", daemon=True)
        self._drainer.start()
        return proc

    def _last_words(self) -> str:
        """The first line the dead process wrote to stderr during the job naming an error ("FATAL ERROR: …",
        "TypeError: …": a stack trace follows), else its last line, else "no output"."""
        lines = [line.strip() for line in self._stderr.decode(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "ERROR" in line]
        return errors[0] if errors else lines[-1] if lines else "no output"

    def forget(self) -> None:
        """Drop the process without stopping it (a forked child's copy of its parent's session): the child's
        copies of the pipes are closed, nothing is written to them."""
        proc, self._proc, self._drainer = self._proc, None, None
        for pipe in (proc.stdin, proc.stdout, proc.stderr) if proc else ():
            if pipe:
                pipe.close()


def _drain(proc: subprocess.Popen[bytes], tail: bytearray) -> None:
    """Read ``proc``'s stderr until it ends, keeping its last STDERR_TAIL bytes in ``tail``."""
    assert proc.stderr
    while chunk := proc.stderr.read(65536):
        tail += chunk
        del tail[:-STDERR_TAIL]


def _read_line(fd: int, deadline: float | None) -> bytes:
    """One line from ``fd`` (b"" if it ends first); TimeoutError at ``deadline`` (a monotonic time)."""
    got = bytearray()
    ready = select.poll()  # not select.select: a busy process's descriptors pass FD_SETSIZE
    ready.register(fd, select.POLLIN)
    while not got.endswith(b"\n"):
        wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not ready.poll(wait):
            raise TimeoutError
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b""
        got += chunk
    return bytes(got)


_lock = threading.Condition()  # guards what follows; notified when a session is given back
_idle: dict[tuple[Any, ...], list[RunnerSession]] = {}
_taken: Counter[tuple[Any, ...]] = Counter()  # sessions out of _idle: running a job or being warmed
_warming: Counter[tuple[Any, ...]] = Counter()  # sessions being warmed (a run waits for one, not for a busy one)
_sessions: list[RunnerSession] = []
_node_options: list[str] = []  # Node options every session started from now on gets (compile_eagerly)


def sessions() -> list[RunnerSession]:
    """Every session this process started, idle or running a job."""
    return list(_sessions)


def compile_eagerly() -> None:
    """Sessions started from now on have Node compile sql.js's WebAssembly with its optimizing compiler before the
    first job (:data:`EAGER_WASM`), not function by function as they get hot: ~0.05–0.1 s more CPU per start,
    ~15% less CPU per job once warm. For a process that runs many jobs (a fleet worker)."""
    if EAGER_WASM not in _node_options:
        _node_options.append(EAGER_WASM)


def run_job(command: Sequence[str], job: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """The result document of ``job`` run by ``command`` (Node and runner.js) in an idle session of this process
    for the same Node packages (their files unchanged since it loaded them) and ``legacy_functions``, else in the
    one being warmed for them (waiting for it), else in a new one; see :meth:`RunnerSession.run`."""
    key = _key(command, job)
    with _lock:
        while not _idle.get(key) and _warming[key]:
            _lock.wait()
        session = _take(key, command)
    return _run(key, session, job, timeout)


def warm(command: Sequence[str], job: dict[str, Any], timeout: float | None = None) -> None:
    """Start a session for ``job``'s command, packages and ``legacy_functions`` by running ``job`` (an empty one,
    within ``timeout`` seconds), unless this process has one for them already: idle with its process running, being
    warmed, or running a job. A run asking meanwhile waits for this one rather than starting another Node."""
    key = _key(command, job)
    with _lock:
        if _taken[key] or any(s.pid is not None for s in _idle.get(key, ())):
            return
        session = _take(key, command)
        _warming[key] += 1
    _run(key, session, job, timeout, warming=True)


def _take(key: tuple[Any, ...], command: Sequence[str]) -> RunnerSession:
    """An idle session for ``key``, else a new one, taken out of the idle ones (the caller holds ``_lock``)."""
    idle = _idle.setdefault(key, [])
    if idle:
        session = idle.pop()
    else:
        session = RunnerSession(command)
        _sessions.append(session)
    _taken[key] += 1
    return session


def _run(
    key: tuple[Any, ...], session: RunnerSession, job: dict[str, Any], timeout: float | None, warming: bool = False
) -> dict[str, Any]:
    """``job`` run in the taken ``session``, which is given back afterwards (idle; its process stopped if the job
    peaked above KEEP_RSS)."""
    try:
        doc = session.run(job, timeout)
        if (doc.get("peak_rss") or 0) > KEEP_RSS:
            session.close()
        return doc
    finally:
        with _lock:
            _taken[key] -= 1
            _warming[key] -= warming
            _idle[key].append(session)
            _lock.notify_all()


def _key(command: Sequence[str], job: dict[str, Any]) -> tuple[Any, ...]:
    """What a session serves: the command, the Node packages' files as they are now, ``legacy_functions``."""
    return (tuple(command), tuple(sorted(_identities(job["modules"]))), job.get("legacy_functions"))


def _identities(modules: dict[str, str]) -> Iterator[tuple[str, int, int, int]]:
    """What changes when a module's file is replaced or rewritten (path, inode, size, modification time), and its
    ``.wasm`` beside it (sql.js's sql-wasm.wasm) when there is one."""
    for path in map(Path, modules.values()):
        wasm = path.with_suffix(".wasm")
        for file in (path, wasm) if wasm.is_file() else (path,):
            st = file.stat()
            yield str(file), st.st_ino, st.st_size, st.st_mtime_ns


def close_sessions() -> None:
    """Stop every session's process (a session used again starts a new one)."""
    for session in sessions():
        session.close()


def _forget_in_child() -> None:
    """In a forked child: forget the parent's sessions (and a lock another thread may have held at the fork)."""
    global _lock
    _lock = threading.Condition()
    for session in _sessions:
        session.forget()
    _idle.clear()
    _taken.clear()
    _warming.clear()
    _sessions.clear()


atexit.register(close_sessions)
os.register_at_fork(after_in_child=_forget_in_child)
