"""A tamper-evident audit log: JSON lines, each carrying the SHA-256 of the previous record, anchored by a head
kept apart from the log.

Each record is ``{"seq", "time", "run", "event", "data", "prev", "hash"}`` where ``hash`` is the SHA-256 of the
canonical JSON (sorted keys, no spaces) of the record without ``hash``. Editing, removing or reordering a line
breaks the chain at that line. Removing lines *from the end* leaves a valid chain, so as records are made durable
the newest ``seq`` and ``hash`` are written atomically to the head (``audit.head`` beside the log) and copied into
each run's report.json: a log with fewer records than its head, or than a report saw, is truncated.

An append holds an exclusive ``flock`` on ``audit.lock`` (beside the log) while it reads the head and the log's
last records (seeking to the tail, never reading the whole file), writes one line in append mode, fsyncs, and
replaces the head — so processes appending at once (a rollback, ``failback hold``/``release``) never lose a
record. A rollback's own records are appended with ``sync=False`` (written, not yet fsynced nor in the head) and
made durable together by :meth:`AuditLog.sync` before each destructive act (``guard.Guard``) and at the run's end:
three syncs a run instead of one per record. Between syncs an :class:`AuditLog` object remembers the bytes it
appended after the head's record: while the log still ends with exactly them (same file, same size, same bytes,
same head), the next append chains onto its own last record without parsing and re-hashing them again; anything
else (another appender, an edit, a torn line) takes the full check above. What a crash can leave, and how it is
read:

* killed mid-write: the log ends in a torn line (no newline) while the head still names the last whole record.
  ``verify_chain`` notes it as torn, not tampered; the next append cuts the torn bytes off and records them
  (size, SHA-256, text) in an ``audit.torn`` record first.
* killed before the head named the newest records (between an append and the head update, or before a run's next
  sync): the log is records ahead of the head, and they chain from the head's record. This is accepted (with a
  note) and the next append or sync updates the head. The head anchors every record up to it; records after it are
  as safe as an unkeyed chain makes them (anyone can append records that chain).
* any other disagreement (lines removed or rewritten at the end): the next append chains onto the head, not onto
  the log, so the gap stays visible to ``verify_chain`` for good.

A head that is missing while the log has records fails the check (a log written before heads existed gets its
head at its next append). Rewriting the log *and* its head consistently is only caught by a report's copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import from_os_error
from .files import FILE_MODE, ensure_dir, fsync_dir, write_text

GENESIS = "0" * 64
TAIL_CHUNK = 64 << 10  # bytes read per step when seeking back to the log's last line
TORN_TEXT = 4096  # characters of a torn line kept in its audit.torn record
MAX_AHEAD = 10_000  # records after the head an append reads back to chain onto (a run syncs every few records)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    """The hash of a record (its ``hash`` field excluded)."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class AuditHead:
    """The newest record of the chain: its ``seq`` (= the number of records) and ``hash``."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}

    @classmethod
    def parse(cls, data: Any) -> AuditHead | None:
        """A head from JSON data (a head file, a report's copy, a record); None when it is not one."""
        if isinstance(data, dict) and type(data.get("seq")) is int and isinstance(data.get("hash"), str):
            return cls(data["seq"], data["hash"])
        return None


START = AuditHead(0, GENESIS)


def head_path(log: Path) -> Path:
    """Where the head of ``log`` is kept."""
    return log.with_suffix(".head")


def read_head(log: Path) -> AuditHead | None:
    """The head of ``log``; None when it is missing or unreadable."""
    try:
        head = AuditHead.parse(json.loads(head_path(log).read_bytes()))
    except (OSError, ValueError):
        return None
    return head if head is not None and head.seq > 0 else None


def _follows(record: dict[str, Any], head: AuditHead) -> bool:
    """``record`` is an intact record right after ``head``."""
    return (
        record.get("seq") == head.seq + 1
        and record.get("prev") == head.hash
        and record.get("hash") == record_hash(record)
    )


def chain_end(tail: list[dict[str, Any] | None], head: AuditHead | None) -> AuditHead:
    """What the next record follows, given the log's last records (``tail``, oldest first): the last one when it
    agrees with the head (equal, or the records after the head chain from it: a crash or a run between syncs left
    them; with no head yet, a log written before heads existed), else the head — so a log cut short stays visibly
    broken after the next append."""
    last = tail[-1] if tail else None
    if last is None or (end := AuditHead.parse(last)) is None:
        return head or START
    if head is None or end == head:
        return end
    ahead = end.seq - head.seq
    if 0 < ahead <= len(tail):
        link = head
        for record in tail[-ahead:]:
            if record is None or not _follows(record, link):
                return head
            link = AuditHead(record["seq"], record["hash"])
        return end
    return head


def _last_lines(fd: int, size: int, count: int) -> tuple[list[bytes], int]:
    """The log's last ``count`` whole lines (fewer when it holds fewer), oldest first, and the offset where whole
    lines end (bytes after it are a torn line), read backwards from the end in chunks."""
    buf, pos = b"", size
    while pos > 0 and buf.count(b"\n") <= count:
        start = max(0, pos - TAIL_CHUNK)
        buf, pos = os.pread(fd, pos - start, start) + buf, start
    end = buf.rfind(b"\n")
    if end < 0:
        return [], 0
    whole = buf[:end].split(b"\n")
    if pos > 0:  # the first piece may be cut: it is not a whole line
        whole = whole[1:]
    return whole[-count:], pos + end + 1


def _log_end(fd: int, size: int, head: AuditHead | None) -> tuple[AuditHead, int]:
    """What the next record follows (:func:`chain_end`) and the offset where the log's whole lines end: the last
    record is read, and as many before it as it is ahead of the head (at most MAX_AHEAD)."""
    lines, whole = _last_lines(fd, size, 1)
    last = _parse(lines[-1]) if lines else None
    newest = last.get("seq") if last else None
    if head is not None and isinstance(newest, int) and 1 < newest - head.seq <= MAX_AHEAD:
        lines, whole = _last_lines(fd, size, newest - head.seq)
    return chain_end([_parse(line) for line in lines], head), whole


def _parse(line: bytes | None) -> dict[str, Any] | None:
    try:
        rec = json.loads(line) if line is not None else None
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


@dataclass(frozen=True)
class _Tail:
    """What an :class:`AuditLog` object last left at the log's end: ``end``, the record the next one follows, and
    the lines ``data`` it wrote from byte ``start`` of the file ``inode`` after ``base``, the head's record then
    (None: other records came between, so the log must be read)."""

    inode: int
    start: int
    data: bytes
    base: AuditHead | None
    end: AuditHead

    @property
    def size(self) -> int:
        """Where these lines end: the log's size, or where a torn line begins."""
        return self.start + len(self.data)

    def holds(self, fd: int, stat: os.stat_result, head: AuditHead | None) -> bool:
        """The log still ends with exactly these lines, right after the record the head still names."""
        return (
            self.base is not None
            and (stat.st_ino, stat.st_size, head) == (self.inode, self.size, self.base)
            and os.pread(fd, len(self.data), self.start) == self.data
        )

    def grown(self, line: bytes, record: dict[str, Any]) -> _Tail:
        """This tail with ``record`` (written as ``line``) appended."""
        return _Tail(self.inode, self.start, self.data + line, self.base, AuditHead(record["seq"], record["hash"]))


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing); the kernel drops it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class AuditLog:
    """Append-only, hash-chained log at ``path``, its head beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.on_record: Callable[[dict[str, Any]], None] | None = None  # told of each record once it is written
        self.unsynced = False  # this object appended records with sync=False that no sync has made durable yet
        self._tail: _Tail | None = None  # what this object last left at the log's end, while it can tell

    def head(self) -> AuditHead | None:
        """The newest record as the head file records it."""
        return read_head(self.path)

    def append(
        self, event: str, data: dict[str, Any] | None = None, run: str | None = None, *, sync: bool = True
    ) -> dict[str, Any]:
        """Add one event (serialized with every other process appending); returns the record written. With
        ``sync=False`` the record is written but not fsynced, and the head does not name it until the next
        :meth:`sync` or synced append (a crash before then may lose it, never the records before it)."""
        self._tail, tail = None, self._tail  # forgotten unless this append completes
        with self._locked() as (fd, stat):
            head = self.head()
            sync = sync or head is None  # a log's first record names itself in the head: a headless log is suspect
            tail = self._end(fd, stat, head, tail)
            if tail.size < stat.st_size:  # a torn line: an append killed mid-write
                torn = os.pread(fd, stat.st_size - tail.size, tail.size)
                os.ftruncate(fd, tail.size)
                note, line = self._write(fd, tail.end, "audit.torn", _torn_data(torn), None)
                tail = self._name_in_head(fd, tail.grown(line, note))
            record, line = self._write(fd, tail.end, event, data or {}, run)
            tail = tail.grown(line, record)
            self._tail = self._name_in_head(fd, tail) if sync else tail
            self.unsynced = not sync
        if self.on_record is not None:
            self.on_record(record)
        return record

    def sync(self) -> None:
        """Make the records appended with ``sync=False`` durable and name the newest record in the head (when the
        log's end chains from the head; else the log is only fsynced and the gap stays visible); nothing to do
        when this object appended none since the last sync."""
        if not self.unsynced:
            return
        self._tail, tail = None, self._tail
        with self._locked() as (fd, stat):
            head = self.head()
            tail = self._end(fd, stat, head, tail)
            if head is None or tail.end.seq > head.seq:
                tail = self._name_in_head(fd, tail)
            else:
                os.fsync(fd)
            self._tail = tail
            self.unsynced = False

    @staticmethod
    def _end(fd: int, stat: os.stat_result, head: AuditHead | None, tail: _Tail | None) -> _Tail:
        """What the next record follows: ``tail`` when the log still ends with it, else read from the log
        (:func:`_log_end`; ``start`` is where whole lines end, any bytes after it a torn line), a tail that holds
        only when no record follows the head (else the records are read and checked again next time)."""
        if tail is not None and tail.holds(fd, stat, head):
            return tail
        end, whole = _log_end(fd, stat.st_size, head)
        return _Tail(stat.st_ino, whole, b"", head if end == head else None, end)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[int, os.stat_result]]:
        """The log open for appending (created if missing) and its status, under the exclusive lock; an OSError
        becomes a clean error."""
        try:
            ensure_dir(self.path.parent)
            with _exclusive(self.path.with_suffix(".lock")):
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
                try:
                    if created:
                        fsync_dir(self.path.parent)
                    yield fd, os.fstat(fd)
                finally:
                    os.close(fd)
        except OSError as err:
            raise from_os_error(err, f"cannot append to the audit log {self.path}") from err

    def _write(
        self, fd: int, end: AuditHead, event: str, data: dict[str, Any], run: str | None
    ) -> tuple[dict[str, Any], bytes]:
        """Write the record following ``end`` as one line (not yet fsynced); the record and its line."""
        record: dict[str, Any] = {
            "seq": end.seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "run": run,
            "event": event,
            "data": data,
            "prev": end.hash,
        }
        record["hash"] = record_hash(record)
        line = _canonical(record) + b"\n"
        left = memoryview(line)
        while left:
            left = left[os.write(fd, left) :]
        return record, line

    def _name_in_head(self, fd: int, tail: _Tail) -> _Tail:
        """fsync the log (every record written so far), then replace the head with ``tail.end``; the tail that
        follows it."""
        os.fsync(fd)
        write_text(head_path(self.path), json.dumps(tail.end.to_json()) + "\n")
        return _Tail(tail.inode, tail.size, b"", tail.end, tail.end)

    def records(self, run: str | None = None) -> list[dict[str, Any]]:
        """All whole records (of one run when ``run`` is given); a torn last line is left out."""
        try:
            lines = self.path.read_bytes().split(b"\n")[:-1]
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in lines if line.strip()]
        return [r for r in out if run is None or r.get("run") == run]


def _torn_data(torn: bytes) -> dict[str, Any]:
    return {
        "bytes": len(torn),
        "sha256": hashlib.sha256(torn).hexdigest(),
        "text": torn.decode("utf-8", "backslashreplace")[:TORN_TEXT],
    }


@dataclass(frozen=True)
class ChainCheck:
    """What checking the audit chain found: intact or not, the records read, the first problem, and benign notes
    (a torn last line, a head one record behind)."""

    ok: bool
    records: int
    problem: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_chain(path: Path, anchors: Iterable[tuple[str, AuditHead]] = ()) -> ChainCheck:
    """Check every line's hash and link, then the log's end against its head and against ``anchors`` (heads
    copied elsewhere, e.g. into run reports, each with where it came from). The first problem is named."""
    try:
        *lines, torn = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        lines, torn = [], b""
    hashes: list[str] = []
    for n, line in enumerate(lines, 1):
        rec = _parse(line)
        if rec is None:
            return ChainCheck(False, n - 1, f"line {n}: not valid JSON")
        if rec.get("prev") != (hashes[-1] if hashes else GENESIS) or rec.get("seq") != n:
            return ChainCheck(False, n - 1, f"line {n}: does not follow line {n - 1} (removed or reordered)")
        if rec.get("hash") != record_hash(rec):
            return ChainCheck(False, n - 1, f"line {n}: content does not match its hash (edited)")
        hashes.append(rec["hash"])
    count, notes, head = len(hashes), [], read_head(path)
    problem = _end_problem(hashes, head, anchors)
    if not problem and head is not None and count > head.seq:
        records = f"record {count} is" if count == head.seq + 1 else f"records {head.seq + 1}–{count} are"
        notes.append(
            f"{records} not in the head yet (a crash before the head was updated, or a run between syncs); "
            "the next append updates the head"
        )
    if torn:
        notes.append(
            f"torn final line: {len(torn)} byte(s) after record {count} (an append interrupted by a crash); the "
            "next append moves them into an audit.torn record"
        )
    return ChainCheck(not problem, count, problem, notes)


def _end_problem(hashes: list[str], head: AuditHead | None, anchors: Iterable[tuple[str, AuditHead]]) -> str:
    """Why the end of a valid chain (``hashes``, one per record) disagrees with its head or an anchor, or ""."""
    count = len(hashes)
    if head is None:
        return "" if not count else "the head (audit.head) is missing or unreadable: truncation cannot be ruled out"
    for source, anchor in [("the head", head), *anchors]:
        if anchor.seq > count:
            return (
                f"truncated: {source} records {anchor.seq} record(s), the log holds {count} "
                f"({anchor.seq - count} missing at the end)"
            )
        if anchor.seq > 0 and hashes[anchor.seq - 1] != anchor.hash:
            return f"record {anchor.seq} is not the one {source} records (the end of the log was rewritten)"
    return ""
