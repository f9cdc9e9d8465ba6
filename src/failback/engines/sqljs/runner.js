// failback sql.js runner: runs jobs inside real sql.js (SQLite compiled to WebAssembly) under Node >= 18.
//
// A job is the JSON {"database": path | null, "actions": [...], "legacy_functions": bool, "stand_ins":
// ["name/arity", ...], "modules": {"sql.js": path of sql-wasm.js (sql-wasm.wasm beside it), "hash-wasm": path of
// xxhash128.umd.min.js}} (the caller finds them: src/failback/engines/sqljs/__init__.py) — or, instead of
// "sql.js", "sqlite-wasm": path of @sqlite.org/sqlite-wasm's dist/node.mjs, run through the adapter
// sqlite-wasm.js (sqlitewasm.py). Its result document is {"ok": true, "version", "results": [...], "peak_rss":
// bytes}, or {"ok": false, "kind": "database" | "job", "error"}. Nothing else is printed to stdout.
// The actions, their results and the job's other fields: actions.js (shared with the browser page). Optional
// "share_from": the file size (bytes) from which the job's digests are shared with a helper thread (DigestHelper).
//
// One-shot (`node runner.js`): stdin holds ONE job, stdout gets its ONE document (exit 0, or 1 when not ok).
// Session (`node --expose-gc --single-threaded-gc runner.js --serve`, session.py): stdin holds newline-delimited jobs, stdout gets one
// line per job, in order; the process exits at the end of stdin. The loaded SQL module (per distinct "modules" and
// "legacy_functions") and the hasher are kept across jobs (the module not after a job that can leave a file in its
// in-memory file system: LEAVES_FILES), each job's database is closed after it. "peak_rss" is
// the job's own peak: on Linux the high-water mark is reset (garbage collected first, with --expose-gc, after a
// job that peaked over GC_SLACK above the last collection) before each job; where it cannot be reset it is the
// process's peak so far.
"use strict";
const fs = require("fs");
const readline = require("readline");
const { isMainThread, MessageChannel, receiveMessageOnPort, Worker, workerData } = require("worker_threads");
const { actionTools, loadOptions, openDatabase, runAction, runJob } = require("./actions.js");

// sql.js and emscripten print with console.log/warn: keep stdout for the result documents, and print each
// distinct message once (sql.js warns on every call of a legacy function).
const printed = new Set();
const stderr = console.error;
console.log = console.info = console.warn = console.error = (...args) => {
  const text = args.join(" ");
  if (printed.has(text)) return;
  printed.add(text);
  stderr(text);
};

// Peak RSS of this process since start or the last resetPeak(). Linux: VmHWM, which starts afresh at exec;
// maxRSS would also count the memory of the (possibly large) parent process that forked us.
function peakRss() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}

// The previous job's garbage freed when it peaked over GC_SLACK above the memory left after the last collection
// (a full collection costs ~5 ms: small jobs, a fleet tenant's, skip it; their peak then includes the little
// garbage they left), then VmHWM set to the current RSS ("5": Linux >= 4.0); elsewhere a no-op.
const GC_SLACK = 16 << 20;
let collected = 0; // RSS after the last collection
function resetPeak(lastPeak) {
  if (global.gc && lastPeak > collected + GC_SLACK) {
    global.gc();
    collected = process.memoryUsage.rss();
  }
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
  } catch {}
}

// {SQL: sql.js's SQL object, memory: its WebAssembly.Memory}. Its .wasm is read and instantiated here (so its
// memory is known: actions.js's RawColumns), not fetched by sql.js: older builds' loaders call fetch() on a path
// under Node >= 18; synchronously, so that a failure rejects initSqlJs (a loader waits for the instance's callback).
// Required afresh: a sql.js module resolves every initSqlJs() to its first one's SQL object.
async function sqlJs(job) {
  const file = job.modules["sql.js"];
  delete require.cache[require.resolve(file)];
  const initSqlJs = require(file);
  const wasmBinary = fs.readFileSync(file.replace(/\.js$/, ".wasm"));
  let memory;
  const instantiateWasm = (imports, ready) => {
    const module = new WebAssembly.Module(wasmBinary);
    const instance = new WebAssembly.Instance(module, imports);
    const values = Object.values(instance.exports).concat(...Object.values(imports).map(Object.values));
    memory = values.find((v) => v instanceof WebAssembly.Memory);
    return ready(instance, module);
  };
  const SQL = await initSqlJs({ ...loadOptions(job), wasmBinary, instantiateWasm });
  return { SQL, memory };
}

// What a loader resolves to for `key`, loaded once (a failed load is tried again by the next job).
const loaded = new Map();
function once(key, load) {
  if (!loaded.has(key)) {
    const promise = load();
    promise.catch(() => loaded.delete(key));
    loaded.set(key, promise);
  }
  return loaded.get(key);
}

// sql.js keeps the file's bytes in its in-memory file system (MEMFS) as one array, whose length is the file's
// room: a write past it (an FTS write's new pages, a statement's spilled pages) allocates an array 1.125x the file
// (2x below 1 MiB) and copies the file into it, so the process briefly holds the file twice. MEMFS takes
// `data.slice(0, length)` of the bytes sql.js opens as the file's array: RoomyBytes answers that with a view of its
// whole buffer (the file, then ROOM zeros), so MEMFS writes up to the buffer's end in place. The room is an eighth
// of the file: a big file's room costs address space only (a 1 GB file's 128 MiB are mapped, their zeros never
// touched, so never resident); a small file's is small too, as there zeros are not free: an allocation below
// glibc's mmap threshold (up to 32 MiB once one was freed) is taken from the heap and zeroed, and V8 counts it as
// external memory, collecting early (a 0.5 MB file with 16 MiB of room cost a kept process ~4 ms of CPU per fleet
// tenant, two jobs); a small file outgrowing its room costs a copy of a small file.
const ROOM = (size) => Math.ceil(size / 8);

class RoomyBytes extends Uint8Array {
  slice(start, end) {
    if (start === 0 && end === this.length) return new Uint8Array(this.buffer, this.byteOffset);
    return super.slice(start, end);
  }
}

// The bytes of the file at `path` (read once, no second copy), with room to grow in place; `shared`: in memory
// other threads can read too (a SharedArrayBuffer).
function readWithRoom(path, shared) {
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const buffer = new (shared ? SharedArrayBuffer : ArrayBuffer)(size + ROOM(size));
    const bytes = new RoomyBytes(buffer, 0, size);
    let got = 0;
    for (let n = 1; got < size && n > 0; got += n) n = fs.readSync(fd, bytes, got, size - got, got);
    return got < size ? bytes.subarray(0, got) : bytes; // the file shrank meanwhile: what was there
  } finally {
    fs.closeSync(fd);
  }
}

// A job's digests (its longest work) shared with a helper thread (a worker_threads Worker running this file) that
// opens the same bytes, without a copy (a SharedArrayBuffer, which each thread's sql.js file system views): both
// claim the next digest of a run from a shared counter, so both cores work and neither waits for a long table the
// other has; the helper claims first (start() returns once it has), so it always takes part. It reads only while
// this thread runs that run's digests (reads too): it starts reading after start() and has stopped when finish()
// returns. Used for a file of at least job.share_from bytes (default SHARE_FROM; below it a thread's start costs
// more than it saves) and sql.js (not the sqlite-wasm adapter); the result document then says how many actions
// the helper ran ("shared").
const SHARE_FROM = 64 << 20;
const NEXT = 0; // control words: the next action to claim, the end of the run, started, claimed first, done
const END = 1;
const STARTED = 2;
const FIRST = 3;
const DONE = 4;

class DigestHelper {
  constructor(job, bytes) {
    this.control = new Int32Array(new SharedArrayBuffer(20));
    this.shared = 0;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const data = { job, bytes, control: this.control, port: port2 };
    this.worker = new Worker(__filename, { workerData: data, transferList: [port2], stdout: true });
    this.worker.on("error", () => {}); // what it did not answer is run by the main thread
  }
  start(from, end) {
    Atomics.store(this.control, NEXT, from);
    Atomics.store(this.control, END, end);
    Atomics.store(this.control, STARTED, 1);
    Atomics.notify(this.control, STARTED);
    Atomics.wait(this.control, FIRST, 0);
  }
  claim() {
    return claim(this.control);
  }
  finish() {
    Atomics.wait(this.control, DONE, 0); // this thread claimed until none was left: the helper is finishing
    const results = {};
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) results[m.message[0]] = m.message[1];
    this.shared += Object.keys(results).length;
    return results;
  }
  close() {
    this.port.close();
    return this.worker.terminate();
  }
}

function signal(control, word) {
  Atomics.store(control, word, 1);
  Atomics.notify(control, word);
}

function claim(control) {
  const k = Atomics.add(control, NEXT, 1);
  return k < Atomics.load(control, END) ? k : -1;
}

// The helper thread: waits for start(), runs the digests it claims, posts each [index, result], then says done.
async function helper({ job, bytes, control, port }) {
  try {
    const { SQL, memory, hasher } = await modules(job);
    Atomics.wait(control, STARTED, 0);
    const db = openDatabase(SQL, new RoomyBytes(bytes.buffer, bytes.byteOffset, bytes.length), job);
    try {
      const tools = actionTools(SQL, hasher, memory, db);
      for (let k = claim(control); k >= 0; k = claim(control)) {
        signal(control, FIRST);
        port.postMessage([k, runAction(db, job.actions[k], tools)]);
      }
    } finally {
      db.close();
    }
  } finally {
    signal(control, FIRST);
    signal(control, DONE);
  }
}

// hash-wasm's XXH3-128 (what its createXXHash128() gives) without its wrapper's checks, copies and calls: a row's
// hash costs ~0.3 µs less (a fleet tenant hashes ~1,000 rows). The wasm is the one the bundle `file` embeds (base64),
// called as the wrapper calls it: the seed (0) written at its buffer's start, then Hash_Init; the data through the
// buffer, HASH_CHUNK bytes at a time (Hash_Update); Hash_Final leaves the digest at the buffer's start, where digest()
// gives a view of it (read before the next hash). Null when the bundle is not one this knows: the wrapper is used.
const HASH_CHUNK = 16384; // the wrapper's, the buffer's size
const HASH_WASM = /name:"xxhash128",data:"([A-Za-z0-9+/=]+)"/;

function directXxh128(file) {
  const embedded = HASH_WASM.exec(fs.readFileSync(file, "latin1"));
  let exports;
  try {
    exports = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(embedded[1], "base64"))).exports;
  } catch {
    return null; // no wasm embedded, or not one that instantiates alone
  }
  const { memory, Hash_GetBuffer, Hash_Init, Hash_Update, Hash_Final } = exports;
  const calls = [Hash_GetBuffer, Hash_Init, Hash_Update, Hash_Final];
  if (!(memory instanceof WebAssembly.Memory) || !calls.every((f) => typeof f === "function")) return null;
  let buffer = new Uint8Array(0);
  const view = () => (buffer.length ? buffer : (buffer = new Uint8Array(memory.buffer, Hash_GetBuffer(), HASH_CHUNK)));
  const hasher = {
    init() {
      view().fill(0, 0, 8);
      Hash_Init();
      return hasher;
    },
    update(bytes) {
      for (let at = 0; at < bytes.length; at += HASH_CHUNK) {
        const chunk = bytes.subarray(at, at + HASH_CHUNK);
        view().set(chunk);
        Hash_Update(chunk.length);
      }
      return hasher;
    },
    digest() {
      Hash_Final();
      return view().subarray(0, 16);
    },
  };
  return hasher;
}

// The hasher and the SQL module (and its memory, for sql.js) a job runs with, each loaded once per thread.
async function modules(job) {
  const m = job.modules;
  const file = m["hash-wasm"];
  const hasher = await once(JSON.stringify(["hash-wasm", file]), async () => {
    return directXxh128(file) || require(file).createXXHash128();
  });
  const { SQL, memory } = await once(sqlKey(job), async () =>
    m["sqlite-wasm"] ? { SQL: await require("./sqlite-wasm.js").load(m["sqlite-wasm"]) } : sqlJs(job),
  );
  return { SQL, memory, hasher };
}

const sqlKey = (job) => JSON.stringify([job.modules["sqlite-wasm"], job.modules["sql.js"], job.legacy_functions === true]);

// SQL that can leave a file in the SQL module's in-memory file system after the job (ATTACH creates the file it
// names, VACUUM INTO writes one; DETACH and the job's end leave them there), where the next job of a kept process
// would find it: after such a job the module is dropped, the next job loads a fresh one (a word in a string or a
// name, e.g. a table "vacuum", costs that load too, nothing else).
const LEAVES_FILES = /\b(ATTACH|VACUUM)\b/i;
const leavesFiles = (job) => job.actions.some((a) => typeof a.sql === "string" && LEAVES_FILES.test(a.sql));

// The result document of one job.
async function answer(job) {
  const node = Number(process.versions.node.split(".")[0]);
  if (node < 18) {
    return { ok: false, kind: "job", error: `Node.js ${process.version} is too old: sql.js needs Node.js >= 18` };
  }
  const { SQL, memory, hasher } = await modules(job);
  if (job.database == null) return done(runJob({ SQL, hasher, memory, bytes: null, job }));
  const digests = job.actions.filter((a) => a.op === "digest").length;
  const big = fs.statSync(job.database).size >= (job.share_from ?? SHARE_FROM);
  const shared = big && digests > 1 && !job.modules["sqlite-wasm"];
  const bytes = readWithRoom(job.database, shared);
  const share = shared ? new DigestHelper(job, bytes) : undefined;
  try {
    const doc = done(runJob({ SQL, hasher, memory, bytes, job, share }));
    return share && doc.ok ? { ...doc, shared: share.shared } : doc;
  } finally {
    if (share) await share.close();
  }
}

const done = (doc) => (doc.ok ? { ...doc, peak_rss: peakRss() } : doc);

const failed = (e) => ({ ok: false, kind: "job", error: String((e && e.stack) || e) });

// exit once the result is written: a build's leftover handles (seen with sql.js-fts5: a futex wait after the
// result) must not keep the process, and the caller waiting on it, alive
function finish(doc) {
  process.stdout.write(JSON.stringify(doc) + "\n", () => process.exit(doc.ok ? 0 : 1));
}

async function oneShot() {
  let job;
  try {
    job = JSON.parse(fs.readFileSync(0, "utf8"));
  } catch (e) {
    return finish({ ok: false, kind: "job", error: "cannot read the job from stdin: " + e.message });
  }
  finish(await answer(job));
}

async function serve() {
  let lastPeak = Infinity; // the first job starts from a collection
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    let doc, job;
    try {
      resetPeak(lastPeak);
      job = JSON.parse(line);
      doc = await answer(job);
    } catch (e) {
      doc = failed(e);
    }
    if (job && job.actions && job.modules && leavesFiles(job)) loaded.delete(sqlKey(job));
    lastPeak = doc.peak_rss ?? peakRss();
    process.stdout.write(JSON.stringify(doc) + "\n");
  }
  process.exit(0);
}

if (!isMainThread) helper(workerData);
else (process.argv.includes("--serve") ? serve() : oneShot()).catch((e) => finish(failed(e)));
