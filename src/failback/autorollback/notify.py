"""Notifications: ``[[notify]]`` webhooks told of what happens to the app, read off the audit log.

Every audit record written through ``audit_log(cfg)`` is matched against ``EVENTS``; a record that means a
notification event is queued for each webhook that wants it and delivered by one background thread per state
folder: a POST of JSON (``format = "json"``: ``{"event", "summary", "run", "time", "state_dir", "data"}``) or of
Slack's ``{"text": …}``, retried ``retries`` times 1, 2, 4 … s apart. Nothing waits for a delivery: a rollback
never slows down or fails because a receiver is down. Each delivery ends as one audit record, ``notify.sent`` or
``notify.failed`` (the webhook named by scheme and host only: a URL can hold a secret). At exit, deliveries still
pending get ``FLUSH_AT_EXIT`` seconds; those left are recorded as failed.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from ..audit import AuditLog
from ..config import Config, NotifyConfig, NotifyEvent

__all__ = ["EVENTS", "Notifier", "audit_log", "notification_event"]

FLUSH_AT_EXIT = 5.0  # seconds a process exiting waits for deliveries still pending
RUN_END = {  # a run's final status -> the event (a dry run tells no one)
    "done": "rollback.done",
    "refused": "rollback.refused",
    "failed": "rollback.failed",
    "interrupted": "rollback.failed",
}
AUDITED = {"hold": "hold", "release": "release", "verify.debt": "debt.left", "verify.debt.paid": "debt.paid"}
EVENTS: tuple[str, ...] = get_args(NotifyEvent)


def notification_event(record: dict[str, Any]) -> str | None:
    """The notification event an audit record means, or None."""
    event, data = record["event"], record.get("data") or {}
    if event == "trigger.fired":
        return "rollback.fired" if data.get("action") == "rollback" else None
    if event == "run.end":
        return RUN_END.get(str(data.get("status")))
    return AUDITED.get(event)


def summary(event: str, record: dict[str, Any]) -> str:
    """One line for a person: what happened, to which run, and why when the record says."""
    data = record.get("data") or {}
    run = f" (run {record['run']})" if record.get("run") else ""
    why = data.get("error") or data.get("reason") or (data.get("hold") or {}).get("reason") or ""
    if event == "rollback.fired":
        why = "rules " + ", ".join(r["rule"] for r in data.get("rules", []))
    return f"failback: {event}{run}" + (f" — {why}" if why else "")


@dataclass(frozen=True)
class Delivery:
    target: NotifyConfig
    event: str
    body: bytes


class Notifier:
    """The webhooks of one state folder and the thread delivering to them."""

    def __init__(self, cfg: Config) -> None:
        self.targets, self.state_dir = cfg.notify, cfg.state_path
        self.audit = AuditLog(cfg.state.audit_log)  # plain: a delivery record notifies no one
        self.pending: queue.Queue[Delivery] = queue.Queue()
        self.idle = threading.Condition()
        self.busy = 0
        threading.Thread(target=self._work, name="failback-notify", daemon=True).start()

    def on_record(self, record: dict[str, Any]) -> None:
        """Queue the notifications ``record`` means (called after it is in the log)."""
        event = notification_event(record)
        if event is None:
            return
        for target in self.targets:
            if not target.events or event in target.events:
                with self.idle:
                    self.busy += 1
                self.pending.put(Delivery(target, event, self._body(target, event, record)))

    def _body(self, target: NotifyConfig, event: str, record: dict[str, Any]) -> bytes:
        text = summary(event, record)
        if target.format == "slack":
            doc: dict[str, Any] = {"text": text}
        else:
            keys = ("run", "time", "data")
            doc = {"event": event, "summary": text, "state_dir": str(self.state_dir)} | {k: record[k] for k in keys}
        return json.dumps(doc, default=str).encode()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued delivery has ended (at most ``timeout`` s); True when none is left."""
        with self.idle:
            return self.idle.wait_for(lambda: self.busy == 0, timeout)

    def _work(self) -> None:
        while True:
            d = self.pending.get()
            attempts, error = deliver(d.target, d.body)
            data = {"event": d.event, "webhook": _redacted(d.target), "attempts": attempts}
            self.audit.append("notify.failed" if error else "notify.sent", data | ({"error": error} if error else {}))
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()

    def abandon(self) -> None:
        """At exit: record the deliveries still queued as failed."""
        while True:
            try:
                d = self.pending.get_nowait()
            except queue.Empty:
                return
            data = {"event": d.event, "webhook": _redacted(d.target), "error": "abandoned: the process exited"}
            self.audit.append("notify.failed", data)


def deliver(target: NotifyConfig, body: bytes) -> tuple[int, str]:
    """POST ``body`` to the webhook, retrying with backoff: (attempts, "" or the last error)."""
    error = ""
    for attempt in range(target.retries + 1):
        if attempt:
            time.sleep(min(2.0 ** (attempt - 1), 30.0))
        try:
            url = _url(target)
            headers = {"Content-Type": "application/json", "User-Agent": "failback"}
            if target.bearer_token_env:
                headers["Authorization"] = f"Bearer {_env(target.bearer_token_env)}"
            request = urllib.request.Request(url, body, headers, method="POST")
            with urllib.request.urlopen(request, timeout=target.timeout) as resp:
                resp.read(1 << 16)
            return attempt + 1, ""
        except (OSError, ValueError, urllib.error.URLError) as err:
            error = str(err)
        except LookupError as err:  # a secret's variable is not set: retrying does not help
            return attempt + 1, str(err)
    return target.retries + 1, error


def _url(target: NotifyConfig) -> str:
    url = target.url if target.url is not None else _env(str(target.url_env))
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("only http(s) webhooks are called")
    return url


def _env(name: str) -> str:
    if name not in os.environ:
        raise LookupError(f"environment variable {name} is not set")
    return os.environ[name]


def _redacted(target: NotifyConfig) -> str:
    """The webhook as the audit log names it: scheme and host (a URL's path or query may be a secret)."""
    if target.url is None:
        return f"${target.url_env}"
    parts = urllib.parse.urlsplit(target.url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


NOTIFIERS: dict[Path, Notifier] = {}  # one per state folder in this process


def audit_log(cfg: Config) -> AuditLog:
    """The audit log of ``cfg``'s state folder; when ``[[notify]]`` webhooks are set, each record written through it
    is also offered to them (see the module's docstring)."""
    log = AuditLog(cfg.state.audit_log)
    if cfg.notify:
        key = cfg.state.audit_log.resolve()
        if key not in NOTIFIERS:
            NOTIFIERS[key] = Notifier(cfg)
        log.on_record = NOTIFIERS[key].on_record
    return log


@atexit.register
def _flush_at_exit() -> None:
    deadline = time.monotonic() + FLUSH_AT_EXIT
    for notifier in NOTIFIERS.values():
        if not notifier.flush(max(0.0, deadline - time.monotonic())):
            notifier.abandon()
