"""The audit log on real files and real processes: appends in place under a lock, a head kept apart that
reveals truncation (also through the copy each run report keeps), torn lines and a head one record behind
told apart from tampering, and no record lost when processes append at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from failback.audit import AuditHead, AuditLog, head_path, read_head, record_hash, verify_chain
from failback.config import load_config
from failback.journal import RunDir

Cli = Callable[..., subprocess.CompletedProcess[str]]
LOOPS = 3  # hold/release loops running beside the rollback (a hold placed twice at once is two records)


def log_of(demo_dir: Path) -> Path:
    return demo_dir / ".failback" / "audit.jsonl"


def filled(log: Path, n: int) -> list[dict[str, object]]:
    """``n`` real appends (each in a different run), the records written."""
    audit = AuditLog(log)
    return [audit.append(f"event.{i}", {"i": i}, f"run-{i % 3}") for i in range(n)]


def lines(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines(keepends=True)


NOT_IN_HEAD = (
    "not in the head yet (a crash before the head was updated, or a run between syncs); "
    "the next append updates the head"
)


def read_head_hash(log: Path, seq: int | None = None) -> str:
    """The hash of record ``seq`` (default: the one the head names)."""
    head = read_head(log)
    assert head is not None
    return str(AuditLog(log).records()[(seq or head.seq) - 1]["hash"])


def audit_verify(cli: Cli, demo_dir: Path) -> subprocess.CompletedProcess[str]:
    return cli("audit", "verify", "-c", str(demo_dir / "failback.toml"))


def test_append_adds_one_line_in_place_and_updates_the_head(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 5)
    inode, before = log.stat().st_ino, log.read_bytes()
    record = AuditLog(log).append("one.more", {"x": 1})
    after = log.read_bytes()
    assert log.stat().st_ino == inode  # appended to, not rewritten under a new name
    assert after[: len(before)] == before  # earlier bytes untouched
    assert json.loads(after[len(before) :]) == record and after.endswith(b"\n")
    assert record["seq"] == 6 and record["hash"] == record_hash(record)
    head = read_head(log)
    assert head is not None and (head.seq, head.hash) == (6, record["hash"])
    check = verify_chain(log)
    assert (check.ok, check.records, check.notes) == (True, 6, [])


@pytest.mark.parametrize("removed", [1, 3])
def test_audit_verify_detects_lines_removed_from_the_end(demo_dir: Path, cli: Cli, removed: int) -> None:
    log = log_of(demo_dir)
    total = len(filled(log, 8))
    assert audit_verify(cli, demo_dir).returncode == 0
    log.write_bytes(b"".join(lines(log)[:-removed]))
    res = audit_verify(cli, demo_dir)
    assert res.returncode == 1
    assert f"truncated: the head records {total} record(s), the log holds {total - removed}" in res.stderr
    assert f"({removed} missing at the end)" in res.stderr
    AuditLog(log).append("after.the.cut")  # the next append chains onto the head: the gap stays visible
    assert f"line {total - removed + 1}: does not follow" in audit_verify(cli, demo_dir).stderr


def test_a_missing_head_fails_the_check(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 3)
    head_path(log).unlink()
    check = verify_chain(log)
    assert not check.ok and "head (audit.head) is missing" in check.problem


def test_an_edit_and_a_reorder_are_still_detected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 6)
    original = lines(log)
    edited = list(original)
    edited[3] = edited[3].replace(b'"event.3"', b'"event.X"')
    log.write_bytes(b"".join(edited))
    check = verify_chain(log)
    assert not check.ok and check.problem == "line 4: content does not match its hash (edited)"
    reordered = list(original)
    reordered[2], reordered[3] = reordered[3], reordered[2]
    log.write_bytes(b"".join(reordered))
    check = verify_chain(log)
    assert not check.ok and check.problem.startswith("line 3: does not follow line 2")


def test_a_rewritten_end_with_a_valid_chain_disagrees_with_the_head(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 4)
    head = head_path(log).read_bytes()
    kept = lines(log)[:-1]
    log.write_bytes(b"".join(kept))
    head_path(log).write_bytes(b'{"seq": 3, "hash": "' + json.loads(kept[-1])["hash"].encode() + b'"}')
    AuditLog(log).append("forged", {"replaces": "record 4"})  # a valid record 4, chained onto record 3
    head_path(log).write_bytes(head)  # …but the head still names the original record 4
    check = verify_chain(log)
    assert not check.ok and check.problem.startswith("record 4 is not the one the head records")


def test_a_torn_last_line_is_not_tampering_and_the_next_append_records_it(demo_dir: Path, cli: Cli) -> None:
    log = log_of(demo_dir)
    filled(log, 4)
    partial = b'{"data":{},"event":"half","hash":"ab'  # what a kill in the middle of the write leaves
    with log.open("ab") as fh:
        fh.write(partial)
    res = audit_verify(cli, demo_dir)
    assert res.returncode == 0, res.stderr
    assert f"torn final line: {len(partial)} byte(s) after record 4" in res.stderr
    assert "audit chain intact: 4 record(s)" in res.stdout
    record = AuditLog(log).append("next")
    records = AuditLog(log).records()
    assert [r["event"] for r in records[-2:]] == ["audit.torn", "next"] and record["seq"] == 6
    assert records[-2]["data"] == {
        "bytes": len(partial),
        "sha256": hashlib.sha256(partial).hexdigest(),
        "text": partial.decode(),
    }
    check = verify_chain(log)
    assert (check.ok, check.records, check.notes) == (True, 6, [])


def test_a_crash_between_the_append_and_the_head_update(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 3)
    head_before = head_path(log).read_bytes()
    AuditLog(log).append("appended.then.killed")
    head_path(log).write_bytes(head_before)  # the head update never happened
    check = verify_chain(log)
    assert check.ok and check.records == 4
    assert check.notes == [f"record 4 is {NOT_IN_HEAD}"]
    AuditLog(log).append("next")
    head = read_head(log)
    assert head is not None and head.seq == 5 and verify_chain(log).notes == []
    assert [r["seq"] for r in AuditLog(log).records()] == [1, 2, 3, 4, 5]
    head_path(log).write_bytes(head_before)  # two records the head does not name yet: they chain from it
    check = verify_chain(log)
    assert check.ok and check.notes == [f"records 4–5 are {NOT_IN_HEAD}"]


def test_records_appended_unsynced_chain_and_a_sync_names_them(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 3)
    run = AuditLog(log)
    written = [run.append(f"step.{i}", {"i": i}, "run-x", sync=False) for i in range(4)]
    assert [r["seq"] for r in written] == [4, 5, 6, 7] and written[0]["prev"] == read_head_hash(log)
    assert read_head(log) == AuditHead(3, read_head_hash(log))  # written, not yet named by the head
    check = verify_chain(log)
    assert (check.ok, check.records, check.notes) == (True, 7, [f"records 4–7 are {NOT_IN_HEAD}"])
    other = AuditLog(log).append("hold")  # another appender chains onto the log's end, not onto the head
    assert (other["seq"], other["prev"]) == (8, written[-1]["hash"])
    assert read_head(log) == AuditHead(8, other["hash"])
    more = run.append("run.end", {}, "run-x", sync=False)
    run.sync()
    assert read_head(log) == AuditHead(9, more["hash"]) and verify_chain(log).notes == []
    run.sync()  # nothing appended since: nothing to do
    assert read_head(log) == AuditHead(9, more["hash"])


def test_the_first_record_of_a_log_is_synced_even_when_asked_not_to(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    first = AuditLog(log).append("run.start", {}, "run-x", sync=False)  # a run killed right after: a head exists
    assert read_head(log) == AuditHead(1, first["hash"]) and verify_chain(log).notes == []


@pytest.mark.parametrize("step", [1, 2])  # one of the object's unsynced records, or its last: same size, same file
def test_an_unsynced_record_edited_is_tampering_and_stays_visible(tmp_path: Path, step: int) -> None:
    log = tmp_path / "audit.jsonl"
    filled(log, 3)
    run = AuditLog(log)
    for i in range(3):
        run.append(f"step.{i}", {"i": i}, "run-x", sync=False)
    edited = lines(log)
    edited[3 + step] = edited[3 + step].replace(f'"step.{step}"'.encode(), b'"step.X"')
    log.write_bytes(b"".join(edited))
    assert verify_chain(log).problem == f"line {4 + step}: content does not match its hash (edited)"
    record = run.append("next")  # the records after the head no longer chain from it: the next one follows the head
    assert (record["seq"], record["prev"]) == (4, read_head_hash(log, seq=3))
    assert not verify_chain(log).ok


def test_a_run_s_records_are_on_disk_before_its_first_destructive_act(demo_dir: Path) -> None:
    cfg = demo_dir / "failback.toml"
    res = subprocess.run(
        [sys.executable, "-m", "failback", "rollback", "-c", str(cfg), "--yes"],
        capture_output=True,
        text=True,
        env={**os.environ, "FAILBACK_KILL_AT": "switch.kept"},  # killed right after the first act (keep_previous)
    )
    assert res.returncode == -signal.SIGKILL, res.stderr
    log = log_of(demo_dir)
    events = {r["event"]: r["seq"] for r in AuditLog(log).records()}
    head = read_head(log)
    assert head is not None and head.seq >= events["step.verify.done"] > events["run.start"]
    assert verify_chain(log).ok


def test_processes_appending_at_once_lose_no_record(tmp_path: Path) -> None:
    log, procs, each = tmp_path / "audit.jsonl", 4, 40
    code = (
        "import sys; from pathlib import Path; from failback.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "for i in range(int(sys.argv[3])): log.append('stress', {'writer': sys.argv[2], 'i': i})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(log), str(w), str(each)]) for w in range(procs)]
    assert [p.wait(timeout=600) for p in writers] == [0] * procs
    records = AuditLog(log).records()
    assert sorted((r["data"]["writer"], r["data"]["i"]) for r in records) == [
        (str(w), i) for w in range(procs) for i in range(each)
    ]
    check = verify_chain(log)
    assert check.ok and check.records == procs * each and check.notes == []


def test_a_rollback_and_a_hold_release_loop_lose_no_record(demo_dir: Path, cli: Cli) -> None:
    cfg_path = demo_dir / "failback.toml"
    rollback = subprocess.Popen(
        [sys.executable, "-m", "failback", "rollback", "-c", str(cfg_path), "--yes", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def loop(n: int) -> tuple[int, int]:
        """hold/release until the rollback ends (three rounds at least): (holds placed, holds released)."""
        holds = releases = 0
        while rollback.poll() is None or holds < 3:
            held = cli("hold", "-c", str(cfg_path), "--reason", f"loop {n}.{holds}", "--json")
            holds += held.returncode == 0
            released = cli("release", "-c", str(cfg_path), "--json")
            releases += released.returncode == 0 and json.loads(released.stdout)["released"] is not None
        return holds, releases

    with ThreadPoolExecutor(LOOPS) as pool:
        counts = list(pool.map(loop, range(LOOPS)))
    holds, releases = (sum(c) for c in zip(*counts, strict=True))
    out, errors = rollback.communicate(timeout=600)
    assert rollback.returncode == 0, errors
    run = json.loads(out)["run"]
    records = AuditLog(log_of(demo_dir)).records()
    outside = Counter(r["event"] for r in records if r["run"] is None)
    assert (outside["hold"], outside["release"]) == (holds, releases) and holds >= 3 * LOOPS
    state = RunDir(load_config(cfg_path).state_path, run).load()
    done = [f"step.{s.name}.done" for s in state.steps if s.status == "done" and s.name != "report"]
    events = Counter(r["event"] for r in records if r["run"] == run)
    assert {e: events[e] for e in ["run.start", *done, "run.end"]} == dict.fromkeys(["run.start", *done, "run.end"], 1)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    check = verify_chain(log_of(demo_dir))
    assert check.ok and check.records == len(records), check.problem


def test_a_run_report_anchors_the_chain_when_log_and_head_are_cut_together(demo_dir: Path, cli: Cli) -> None:
    cfg_path = demo_dir / "failback.toml"
    res = cli("rollback", "-c", str(cfg_path), "--yes", "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)["run"]
    log = log_of(demo_dir)
    report = json.loads(RunDir(demo_dir / ".failback", run).file("report.json").read_text())
    head = read_head(log)
    assert head is not None and report["audit_head"] == head.to_json()  # the report copied the head
    assert head.seq == len(AuditLog(log).records())
    kept = lines(log)[:-2]
    log.write_bytes(b"".join(kept))
    last = json.loads(kept[-1])
    head_path(log).write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))  # the head cut to match
    assert verify_chain(log).ok  # log and head agree with each other…
    res = audit_verify(cli, demo_dir)
    assert res.returncode == 1  # …but not with what the run's report saw
    saw = f"the report of run {run} records {head.seq} record(s)"
    assert f"truncated: {saw}, the log holds {head.seq - 2} (2 missing at the end)" in res.stderr
