"""The target engine in a real browser: the same sql.js and the same actions (actions.js) in headless Chromium.

For one run, failback serves ``browser.html``, sql.js, hash-wasm, actions.js, the job and the database from
127.0.0.1 (a free port, only these files, for the duration of the run); Chromium loads the page, which runs the
job as runner.js does under Node and POSTs the result document back (no DevTools protocol, no new dependency).
The run's ``peak_rss_bytes`` is the tab's peak memory (its renderer processes' VmHWM, Linux; None elsewhere),
``peak_js_heap_bytes`` the page's largest JS heap sampled after each action (WebAssembly memory apart).
Chromium is ``FAILBACK_CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import EngineError
from .. import Action, EngineRun
from . import RUNNER_DIR, SqlJsEngine, engine_run, runner_modules

CHROMIUM_VARIABLE = "FAILBACK_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE = RUNNER_DIR / "browser.html"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}


def find_chromium() -> str:
    """The Chromium to run: ``FAILBACK_CHROMIUM`` or the first known name on PATH; EngineError naming how."""
    named = os.environ.get(CHROMIUM_VARIABLE)
    found = shutil.which(named) if named else next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if found is None:
        what = f"{CHROMIUM_VARIABLE}={named} is not a program" if named else "no Chromium on PATH"
        raise EngineError(
            f"browser verification needs Chromium: {what}",
            hint="install it (Debian: apt-get install chromium) or set FAILBACK_CHROMIUM to its path",
        )
    return found


class _Served:
    """The files of one run by URL path (a file or bytes), and the result document the page posts (``done`` set
    when it has)."""

    def __init__(self, files: Mapping[str, Path | bytes]) -> None:
        self.files = files
        self.result: dict[str, Any] | None = None
        self.done = threading.Event()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = urlsplit(self.path).path.lstrip("/")  # a page may take a query string
                found = served.files.get(name)
                if found is None:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Type", _TYPES.get(Path(name).suffix, "application/octet-stream"))
                self.send_header("Cache-Control", "no-store")
                if isinstance(found, bytes):
                    self.send_header("Content-Length", str(len(found)))
                    self.end_headers()
                    self.wfile.write(found)
                    return None
                self.send_header("Content-Length", str(found.stat().st_size))
                self.end_headers()
                with open(found, "rb") as fh:
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/result" and served.result is None:
                    try:
                        doc = json.loads(body)
                    except ValueError as err:
                        doc = {"ok": False, "kind": "job", "error": f"the page's result is not JSON: {err}"}
                    served.result = doc if isinstance(doc, dict) else {"ok": False, "error": "not a document"}
                    served.done.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the page's requests are not the user's business."""

        return Handler


@dataclass
class PageRun:
    """What a page posted to /result, and the tab's peak memory (None where it cannot be read)."""

    result: dict[str, Any]
    peak_tab_bytes: int | None


def run_page(
    files: Mapping[str, Path | bytes],
    page: str,
    *,
    timeout: float | None = None,
    profile: Path | None = None,
    port: int = 0,
) -> PageRun:
    """Serve ``files`` (URL path → a file or its bytes, nothing else) from 127.0.0.1 for the duration and open
    ``page`` in a fresh headless Chromium until the page POSTs its result document to ``/result``, Chromium
    exits, or ``timeout`` seconds pass (None: no limit). ``profile``: Chromium's user data folder, kept, so a
    later run on the same ``port`` (the same origin; 0: a free one) sees what this one stored (IndexedDB);
    default: a temporary one. EngineError when no result came."""
    served = _Served(files)
    server = ThreadingHTTPServer(("127.0.0.1", port), served.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="failback-chromium-") as scratch:
            url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
            return _browse(url, served, Path(profile or scratch), Path(scratch, "chromium.log"), timeout)
    finally:
        server.shutdown()
        server.server_close()


def _browse(url: str, served: _Served, profile: Path, log_path: Path, timeout: float | None) -> PageRun:
    chromium = find_chromium()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [chromium, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: stopped whole, by its id
        )
    try:
        _wait(served.done, proc, timeout)
        peak = _renderer_peak(proc.pid)  # before it stops
    finally:
        _stop(proc)
    if served.result is None:
        lines = [x for x in log_path.read_text(errors="replace").splitlines() if x.strip()]
        why = "did not answer in time" if proc.returncode is None else f"exited ({proc.returncode})"
        raise EngineError(
            f"Chromium {why} before the page gave its result: {lines[-1] if lines else 'no output'}",
            hint="check that Chromium starts: chromium --headless --no-sandbox --dump-dom about:blank",
        )
    return PageRun(served.result, peak)


class SqlJsBrowserEngine(SqlJsEngine):
    """Runs engine actions in sql.js inside headless Chromium (see the module), one browser per run."""

    name: str = "sqljs-browser"

    def warm(self) -> None:
        """Nothing to start ahead: each run starts its own browser."""

    def run(self, database: Path | None, actions: list[Action]) -> EngineRun:
        """Load ``database`` (``None``: empty) into sql.js in a Chromium tab and run ``actions``; the file is only
        read (served to the page)."""
        start = time.perf_counter()
        job = self.job(database, actions)
        files: dict[str, Path | bytes] = {
            "index.html": PAGE,
            "job.json": json.dumps(job).encode(),
            **sqljs_files(self.sqljs_dir, self.configured_dir),
        }
        if job["database"] is not None:
            files["database"] = Path(job["database"])
        page = run_page(files, "index.html", timeout=self.timeout)
        doc = page.result
        if not doc.get("ok") and doc.get("kind") != "database":
            raise EngineError(
                f"the sql.js page failed in Chromium: {doc.get('error', 'unknown error')}",
                hint="check that Chromium starts: chromium --headless --no-sandbox --dump-dom about:blank",
            )
        return engine_run(doc | {"peak_rss": page.peak_tab_bytes}, start)


def sqljs_files(folder: Path | None = None, configured: Path | None = None) -> dict[str, Path]:
    """The files a page loads to run actions.js, by URL path: sql.js (its .wasm beside it; ``folder``,
    ``configured``: another build's, as :func:`runner_modules`), hash-wasm's XXH3, actions.js itself (the same
    files the Node runner loads)."""
    modules = runner_modules(folder, configured)
    sqljs = modules["sql.js"]
    return {
        "actions.js": RUNNER_DIR / "actions.js",
        sqljs.name: sqljs,
        "sql-wasm.wasm": sqljs.with_name("sql-wasm.wasm"),
        modules["hash-wasm"].name: modules["hash-wasm"],
    }


_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI containers) Chromium refuses to start with its sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--enable-precise-memory-info",  # performance.memory unrounded
    "--remote-debugging-port=0",  # keeps a headless browser open after the page has loaded
)


def _wait(done: threading.Event, proc: subprocess.Popen[bytes], timeout: float | None) -> None:
    """Until the page has posted its result, Chromium has exited, or ``timeout`` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done.wait(0.2) and proc.poll() is None:
        if deadline is not None and time.monotonic() > deadline:
            return


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the Chromium this run started: its process group, by the group's id."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


def _renderer_peak(root: int) -> int | None:
    """The largest peak RSS (VmHWM) among the renderer processes under ``root``; None without /proc."""
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    peaks = []
    for pid in pids:
        try:
            if os.getpgid(pid) != root or b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        except (OSError, StopIteration):
            continue
        peaks.append(int(line.split()[1]) * 1024)
    return max(peaks, default=None)
