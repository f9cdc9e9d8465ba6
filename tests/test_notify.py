"""[[notify]] webhooks: a real HTTP receiver on 127.0.0.1 gets each event once; a receiver that hangs or is down
delays nothing (the run finishes) and the audit log records the failed delivery."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import failback
from failback.autorollback.hold import place_hold, release_hold
from failback.autorollback.notify import NOTIFIERS, audit_log
from failback.autorollback.watcher import Watcher
from failback.config import Config, load_config
from failback.pipeline.rollback import Options, Rollback

from .test_cli import write
from .test_triggers import Cli, configure, events


class Receiver:
    """A webhook receiver on 127.0.0.1: records (path, JSON body) of each POST; ``hang`` holds every answer until
    ``let_go`` is set, then drops the connection unanswered."""

    def __init__(self, hang: bool = False) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.asked, self.let_go = threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.asked.set()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hang:
                    receiver.let_go.wait()
                    self.close_connection = True
                    return
                receiver.got.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.let_go.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def flush(cfg: Config) -> None:
    assert NOTIFIERS[cfg.state.audit_log.resolve()].flush()


EMERGENCY_RULE = (
    '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 1\nseverity = "emergency"\n'
)


def test_each_event_reaches_each_webhook_once(demo_dir: Path, receiver: Receiver) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500}\n')
    webhooks = (
        f'[[notify]]\nurl = "{receiver.url}/json"\n'
        f'[[notify]]\nurl = "{receiver.url}/slack"\nformat = "slack"\nevents = ["rollback.done", "debt.paid"]\n'
    )
    (demo_dir / "failback.toml").write_text(webhooks + (demo_dir / "failback.toml").read_text())
    cfg, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', EMERGENCY_RULE)
    place_hold(cfg, "release freeze")
    release_hold(cfg)
    result = Watcher(cfg, path).watch(max_samples=3)
    assert (result.stopped, result.exit_code) == ("rollback", 0)
    paid = failback.pay_debt(path)
    assert paid.report.ok
    flush(cfg)
    run = result.rollback.run_id  # type: ignore[union-attr]
    generic = [body for where, body in receiver.got if where == "/json"]
    assert [b["event"] for b in generic] == [
        "hold",
        "release",
        "rollback.fired",
        "debt.left",
        "rollback.done",
        "debt.paid",
    ]
    assert {b["run"] for b in generic[2:]} == {None, run} and generic[1]["data"]["hold"]["reason"] == "release freeze"
    assert generic[2]["summary"] == "failback: rollback.fired — rules lat"
    slack = [body for where, body in receiver.got if where == "/slack"]
    assert slack == [{"text": f"failback: rollback.done (run {run})"}, {"text": f"failback: debt.paid (run {run})"}]
    sent = events(cfg, "notify.")
    assert [r["event"] for r in sent] == ["notify.sent"] * 8
    assert {r["data"]["webhook"] for r in sent} == {receiver.url}  # the path (a secret, for Slack) is left out


def test_a_receiver_that_hangs_or_is_down_delays_nothing(demo_dir: Path) -> None:
    hanging = Receiver(hang=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"  # nothing listens once closed
    try:
        webhooks = (
            f'[[notify]]\nurl = "{hanging.url}/hook"\nretries = 0\ntimeout = 60\n'
            f'[[notify]]\nurl = "{dead}"\nretries = 1\n'
        )
        (demo_dir / "failback.toml").write_text(webhooks + (demo_dir / "failback.toml").read_text())
        cfg, path = configure(demo_dir, "", EMERGENCY_RULE)
        audit_log(cfg).append("run.end", {"status": "failed", "error": "disk full"})  # the first delivery hangs…
        assert hanging.asked.wait(60)
        outcome = Rollback(cfg, path, Options(yes=True)).run()  # …and the rollback runs meanwhile, to the end
        assert outcome.exit_code == 0 and outcome.status == "done"
        assert not events(cfg, "notify.")  # still delivering the first event while the run is done
        hanging.let_go.set()
        flush(cfg)
    finally:
        hanging.close()
    failed = [r["data"] for r in events(cfg, "notify.failed")]
    down = dead.removesuffix("/hook")
    expected = [(e, w, n) for e in ("rollback.failed", "rollback.done") for w, n in ((hanging.url, 1), (down, 2))]
    assert sorted((d["event"], d["webhook"], d["attempts"]) for d in failed) == sorted(expected)
    assert all("refused" in d["error"] for d in failed if d["webhook"] != hanging.url)


def with_webhook(demo: Path, url: str) -> Path:
    """The demo's failback.toml with one generic webhook."""
    path = demo / "failback.toml"
    path.write_text(f'[[notify]]\nurl = "{url}/hook"\n' + path.read_text())
    return path


def test_a_refused_rollback_is_told_once_before_the_process_exits(demo_dir: Path, receiver: Receiver, cli: Cli) -> None:
    """The demo is high risk: `failback rollback` without --yes is refused (exit 3) and the process exits at once;
    the webhook has had its one rollback.refused by then."""
    path = with_webhook(demo_dir, receiver.url)
    res = cli("rollback", "-c", str(path))
    assert res.returncode == 3 and "risk high" in res.stderr, res.stderr
    [run] = [r["run"] for r in events(load_config(path), "run.end")]
    [(where, body)] = receiver.got
    assert (where, body["event"], body["run"], body["data"]["status"]) == ("/hook", "rollback.refused", run, "refused")
    assert body["summary"].startswith(f"failback: rollback.refused (run {run}) — risk high: ")
    assert [r["event"] for r in events(load_config(path), "notify.")] == ["notify.sent"]
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()


def test_a_failed_rollback_is_told_once(demo_dir: Path, receiver: Receiver) -> None:
    """The converted file loses a row before verification: verification fails, the run fails (exit 1), the app
    stays on native, and the webhook gets one rollback.failed naming the run and why."""
    path = with_webhook(demo_dir, receiver.url)
    cfg = load_config(path)

    def spoil_the_target(step: str, event: str, result: dict[str, Any]) -> None:
        if (step, event) == ("convert", "done"):
            write(Path(result["path"]), "DELETE FROM note WHERE id = (SELECT max(id) FROM note)")

    outcome = Rollback(cfg, path, Options(yes=True), on_step=spoil_the_target).run()
    assert (outcome.status, outcome.exit_code) == ("failed", 1), outcome.error
    assert str(outcome.error).startswith("verification failed: table note: content differs"), outcome.error
    flush(cfg)
    [(_, body)] = receiver.got
    assert (body["event"], body["run"], body["data"]["error"]) == (
        "rollback.failed",
        outcome.run_id,
        str(outcome.error),
    )
    assert body["summary"] == f"failback: rollback.failed (run {outcome.run_id}) — {outcome.error}"
    assert [r["event"] for r in events(cfg, "notify.")] == ["notify.sent"]
    assert "DATABASE_PROVIDER=native" in (demo_dir / "app.env").read_text()
