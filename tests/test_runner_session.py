"""The kept sql.js runner (engines/sqljs/session.py, runner.js --serve): real Node, real sql.js, real databases.

Each test runs Node through its own link in tmp_path, so its engine runs get sessions of their own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import apsw
import pytest

from failback import api
from failback.engines.sqljs import RUNNER, SqlJsEngine, session
from failback.engines.sqljs.session import RunnerSession, close_sessions, sessions
from failback.errors import EngineError

from .conftest import digest_specs_of

SELECT_ONE = [{"op": "query", "sql": "SELECT 1"}]
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def node(tmp_path: Path) -> str:
    """Node, through a link of this test's own: sessions are kept per command, so none is shared with others."""
    link = tmp_path / "node"
    link.symlink_to(shutil.which("node") or "node")
    return str(link)


def pids(node: str) -> list[int | None]:
    """The Node process of each session started for ``node``."""
    return [s.pid for s in sessions() if s.command[0] == node]


def dead(pid: int) -> bool:
    """Wait until the child ``pid`` has exited, leaving it to be reaped by its Popen; True."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return True


def test_runs_share_one_node_process(node: str) -> None:
    engine = SqlJsEngine(node=node)
    assert pids(node) == []
    assert engine.run(None, SELECT_ONE).results[0]["rows"] == [[{"int": "1"}]]
    first = pids(node)
    assert len(first) == 1 and first[0] is not None
    assert engine.run(None, SELECT_ONE).results[0]["ok"]
    assert SqlJsEngine(node=node).run(None, SELECT_ONE).results[0]["ok"]  # another engine, the same process
    assert pids(node) == first


def test_threads_never_share_a_process(node: str) -> None:
    """Runs from several threads at once: each answer is its own job's, and no more processes than threads."""
    engine = SqlJsEngine(node=node)

    def select(n: int) -> list[list[object]]:
        return engine.run(None, [{"op": "query", "sql": f"SELECT {n}"}]).results[0]["rows"]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(select, range(40)))
    assert answers == [[[{"int": str(n)}]] for n in range(40)]
    assert 1 <= len(pids(node)) <= 4


def test_a_killed_node_process_is_replaced_by_the_next_run(node: str) -> None:
    engine = SqlJsEngine(node=node)
    engine.run(None, SELECT_ONE)
    [pid] = pids(node)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert dead(pid) and pids(node) == [None]
    assert engine.run(None, SELECT_ONE).results[0]["rows"] == [[{"int": "1"}]]
    [new] = pids(node)
    assert new not in (None, pid)


def test_a_job_that_kills_node_fails_alone(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node dies of its heap limit during a job: that job's EngineError names the exit status and Node's last
    words; the next job runs in a new process."""
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=32")
    engine = SqlJsEngine(node=node)
    engine.run(None, SELECT_ONE)
    [pid] = pids(node)
    too_big = f"{ENDLESS.replace('count(*)', 'x, randomblob(100)')} LIMIT 100000000"
    with pytest.raises(EngineError, match=r"the sql\.js runner failed \(exit status -?\d+\): FATAL ERROR: .* heap"):
        engine.run(None, [{"op": "query", "sql": too_big}])
    assert pids(node) == [None]
    assert engine.run(None, SELECT_ONE).results[0]["ok"]
    assert pids(node)[0] not in (None, pid)


def test_a_timeout_stops_the_process_and_the_next_run_starts_one(node: str) -> None:
    SqlJsEngine(node=node).run(None, SELECT_ONE)
    [pid] = pids(node)
    with pytest.raises(EngineError, match="did not finish within 1 s"):
        SqlJsEngine(node=node, timeout=1).run(None, [{"op": "query", "sql": ENDLESS}])
    assert pids(node) == [None]
    assert SqlJsEngine(node=node).run(None, SELECT_ONE).results[0]["ok"]
    assert pids(node)[0] not in (None, pid)


def test_a_session_answers_as_the_one_shot_runner(node: str, native_db: Path, tmp_path: Path) -> None:
    """The same job, digests and a failing action, run once by `node runner.js` and twice in a session: the same
    document but for peak_rss."""
    target = tmp_path / "target.sqlite"
    api.export(native_db, target)
    engine = SqlJsEngine(node=node)
    specs = [s.to_json() for s in digest_specs_of(target)]
    actions = [{"op": "digest", "tables": specs}, {"op": "query", "sql": "SELECT nope"}]
    job = engine.job(target, actions) | {"modules": {k: str(v) for k, v in engine.modules().items()}}
    proc = subprocess.run([node, str(RUNNER)], input=json.dumps(job), capture_output=True, text=True, check=True)
    one_shot = json.loads(proc.stdout)
    session = RunnerSession([node, "--expose-gc", str(RUNNER)])
    try:
        answers = [session.run(job), session.run(job)]
    finally:
        session.close()
    assert one_shot["ok"] and len(one_shot["results"][0]["tables"]) == len(specs)
    assert one_shot["raw"] is True  # the pinned sql.js: digests read values in its memory (not a silent fallback)
    assert one_shot["results"][1] == {"ok": False, "error": "no such column: nope"}
    for doc in (one_shot, *answers):
        assert doc.pop("peak_rss") > 0
    assert answers == [one_shot, one_shot]


def test_peak_rss_is_each_jobs_own(node: str, tmp_path: Path) -> None:
    """A small job after a big one reports a smaller peak: the high-water mark is reset before each job (else it
    only grows)."""
    big = tmp_path / "big.sqlite"
    conn = apsw.Connection(str(big))
    with conn:
        conn.execute("CREATE TABLE t(b)")
        conn.executemany("INSERT INTO t VALUES (randomblob(10000))", [()] * 4000)
    conn.close()
    engine = SqlJsEngine(node=node)
    large = engine.run(big, [{"op": "query", "sql": "SELECT count(*) FROM t"}])
    small = engine.run(None, SELECT_ONE)
    assert large.peak_rss_bytes and small.peak_rss_bytes
    assert small.peak_rss_bytes < large.peak_rss_bytes
    assert len(pids(node)) == 1


def test_writes_that_grow_the_file_within_and_past_its_room_read_back(node: str, tmp_path: Path) -> None:
    """The runner gives sql.js the file with room to grow in place (an eighth of the file: ~128 KB here); writes
    that grow it within that room and past it (sql.js then moves the file to a bigger array) both read back whole,
    and the file on disk is untouched."""
    rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {}) "
    db = tmp_path / "small.sqlite"
    conn = apsw.Connection(str(db))
    with conn:
        conn.execute("CREATE TABLE t(b); " + rows.format(100) + "INSERT INTO t SELECT randomblob(10000) FROM c")
    conn.close()
    before = db.read_bytes()
    grow = [
        {"op": "exec", "sql": rows.format(5) + "INSERT INTO t SELECT randomblob(10000) FROM c"},  # ~50 KB: in room
        {"op": "query", "sql": "SELECT count(*), sum(length(b)) FROM t"},
        {"op": "exec", "sql": rows.format(3000) + "INSERT INTO t SELECT randomblob(10000) FROM c"},  # ~30 MB: past it
        {"op": "query", "sql": "SELECT count(*), sum(length(b)) FROM t"},
        {"op": "query", "sql": "PRAGMA integrity_check"},
    ]
    run = SqlJsEngine(node=node).run(db, grow)
    assert all(r["ok"] for r in run.results), run.results
    counts = [r["rows"][0] for r in (run.results[1], run.results[3])]
    assert counts == [[{"int": "105"}, {"int": "1050000"}], [{"int": "3105"}, {"int": "31050000"}]]
    assert run.results[4]["rows"] == [["ok"]]
    assert run.peak_rss_bytes and run.peak_rss_bytes > 30 << 20
    assert db.read_bytes() == before


def test_digests_shared_with_a_helper_thread_answer_as_one_thread(node: str, native_db: Path, tmp_path: Path) -> None:
    """A big file's digests are shared with a helper thread reading the same bytes (forced here with share_from=0):
    every result is the one a single thread gives, a missing table fails alone, and the actions after the
    digests (a write, then a read of it) still run on the file as loaded."""
    target = tmp_path / "target.sqlite"
    api.export(native_db, target)
    engine = SqlJsEngine(node=node)
    digests = [{"op": "digest", "tables": [s.to_json()]} for s in digest_specs_of(target)]
    digests.insert(1, {"op": "digest", "tables": [{"table": "nope", "columns": ["a"], "rowid": True}]})
    after = [
        {"op": "exec", "sql": "DELETE FROM note WHERE id = (SELECT min(id) FROM note)"},
        {"op": "query", "sql": "SELECT count(*) FROM note"},
    ]
    job = engine.job(target, [*digests, *after]) | {"modules": {k: str(v) for k, v in engine.modules().items()}}
    command = [node, "--expose-gc", str(RUNNER)]
    alone, shared = (session.run_job(command, job | {"share_from": n}) for n in (2**53, 0))
    assert shared["ok"] and shared["results"] == alone["results"]
    assert shared["shared"] >= 1 and "shared" not in alone  # the helper ran some of them
    assert len(digests) > 3 and [r["ok"] for r in shared["results"][: len(digests)]].count(False) == 1
    assert shared["results"][1]["error"] == "no such table: main.nope"


def test_files_a_job_leaves_in_memory_are_not_the_next_jobs(node: str) -> None:
    """A job that ATTACHes a new file and writes one with VACUUM INTO (both in sql.js's in-memory file system):
    the next job in the same process finds neither."""
    engine = SqlJsEngine(node=node)
    reads = ["ATTACH 'other.db' AS o", "SELECT x FROM o.t", "ATTACH 'copy.db' AS c", "SELECT x FROM c.t"]
    looks = [{"op": "query", "sql": sql} for sql in reads]
    leaves = [
        {"op": "exec", "sql": "ATTACH 'other.db' AS o; CREATE TABLE o.t(x); INSERT INTO o.t VALUES (42); DETACH o"},
        {"op": "exec", "sql": "CREATE TABLE t(x); INSERT INTO t VALUES (7); VACUUM INTO 'copy.db'"},
        *looks[2:],
    ]
    first = engine.run(None, leaves).results
    assert all(r["ok"] for r in first) and first[3]["rows"] == [[{"int": "7"}]]
    [pid] = pids(node)
    second = engine.run(None, looks).results
    assert [r.get("error") for r in second] == [None, "no such table: o.t", None, "no such table: c.t"]
    assert pids(node) == [pid]


def test_a_forked_child_starts_its_own_process(node: str) -> None:
    """After a fork the child runs jobs in a Node process of its own; the parent's keeps serving the parent."""
    engine = SqlJsEngine(node=node)
    engine.run(None, SELECT_ONE)
    [parent] = pids(node)
    child = os.fork()
    if child == 0:  # the child: exit status 0 only if it ran the job in a new process
        code = 1
        try:
            fresh = pids(node) == [] and engine.run(None, SELECT_ONE).results[0]["ok"]
            code = 0 if fresh and pids(node)[0] not in (None, parent) else 1
            close_sessions()
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0
    assert engine.run(None, SELECT_ONE).results[0]["ok"] and pids(node) == [parent]


def test_close_sessions_stops_every_process(node: str) -> None:
    engine = SqlJsEngine(node=node)
    engine.run(None, SELECT_ONE)
    [pid] = pids(node)
    close_sessions()
    assert pids(node) == [None]
    assert engine.run(None, SELECT_ONE).results[0]["ok"] and pids(node)[0] not in (None, pid)


def test_close_sessions_while_a_job_runs_ends_the_job_not_its_pipes(node: str) -> None:
    """A worker leaving or the interpreter exiting stops sessions whose jobs still run in other threads: each job
    ends with an EngineError (its process died), never with an OSError from a pipe closed under its read (the old
    close failed so in about 8 of 20 tries), and the next run starts a new process."""
    engine = SqlJsEngine(node=node)
    with ThreadPoolExecutor(1) as pool:
        for _ in range(10):
            endless = pool.submit(engine.run, None, [{"op": "query", "sql": ENDLESS}])
            while not pids(node) or pids(node)[0] is None:
                time.sleep(0.001)
            close_sessions()
            assert pids(node) == [None]
            with pytest.raises(EngineError, match="exit status -9"):
                endless.result()
    assert engine.run(None, SELECT_ONE).results[0]["ok"]


def test_warm_starts_the_process_the_next_run_uses(node: str) -> None:
    engine = SqlJsEngine(node=node)
    engine.warm()
    [pid] = pids(node)
    assert pid is not None
    assert engine.run(None, SELECT_ONE).results[0]["ok"] and pids(node) == [pid]
    engine.warm()  # one is ready: nothing started, nothing run
    assert pids(node) == [pid]
    close_sessions()  # the session's process stopped: warm starts it again
    engine.warm()
    [again] = pids(node)
    assert again not in (None, pid)


def started(node: str) -> list[int | None]:
    """:func:`pids` once a session for ``node`` exists (another thread is starting it)."""
    while not pids(node):
        time.sleep(0.001)
    return pids(node)


def test_a_run_while_warming_waits_for_the_warmed_process(node: str) -> None:
    """A run asking while warm() still starts Node takes that session when it is ready: one Node, not two."""
    engine = SqlJsEngine(node=node)
    warming = threading.Thread(target=engine.warm)
    warming.start()
    try:
        assert len(started(node)) == 1
        assert engine.run(None, SELECT_ONE).results[0]["rows"] == [[{"int": "1"}]]
    finally:
        warming.join()
    [pid] = pids(node)
    assert pid is not None


def test_warm_while_a_run_holds_the_process_starts_nothing(node: str) -> None:
    """warm() from another thread while a run holds this process's only session (a fleet tenant's own warm-up
    running late) starts no second Node."""
    engine = SqlJsEngine(node=node)
    with ThreadPoolExecutor(1) as pool:
        endless = pool.submit(engine.run, None, [{"op": "query", "sql": ENDLESS}])
        assert len(started(node)) == 1
        try:
            engine.warm()
            assert len(pids(node)) == 1
        finally:
            while (running := pids(node)[0]) is None:
                time.sleep(0.001)
            os.kill(running, signal.SIGKILL)  # the endless job's end
        with pytest.raises(EngineError, match="exit status"):
            endless.result()
    assert len(pids(node)) == 1


def test_a_process_whose_job_peaked_above_the_limit_is_not_kept(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its grown WebAssembly memory would stay with the process: it is stopped, the next run starts another."""
    engine = SqlJsEngine(node=node)
    engine.run(None, SELECT_ONE)
    [first] = pids(node)
    assert first is not None
    monkeypatch.setattr(session, "KEEP_RSS", 1)  # every job is "big"
    assert engine.run(None, SELECT_ONE).results[0]["ok"]
    assert pids(node) == [None]  # stopped (and reaped) once its answer was read
    monkeypatch.undo()
    assert engine.run(None, SELECT_ONE).results[0]["ok"]
    [second] = pids(node)
    assert second not in (None, first)
