// failback sql.js runner: runs one job inside real sql.js (SQLite compiled to WebAssembly) under Node >= 18.
//
// Protocol: stdin holds ONE JSON job {"database": path | null, "actions": [...], "legacy_functions": bool,
// "stand_ins": ["name/arity", ...], "modules": {"sql.js": path of sql-wasm.js (sql-wasm.wasm beside it),
// "hash-wasm": path of xxhash128.umd.min.js}} (the caller finds them: src/failback/engines/sqljs/__init__.py) —
// or, instead of "sql.js", "sqlite-wasm": path of @sqlite.org/sqlite-wasm's dist/node.mjs, run through the
// adapter sqlite-wasm.js (sqlitewasm.py);
// stdout gets ONE JSON document {"ok": true, "version", "results": [...], "peak_rss": bytes} (exit 0), or
// {"ok": false, "kind": "database" | "job", "error"} (exit 1). Nothing else is printed to stdout.
// The actions, their results and the job's other fields: actions.js (shared with the browser page).
"use strict";
const fs = require("fs");
const { loadOptions, runJob } = require("./actions.js");

// sql.js and emscripten print with console.log/warn: keep stdout for the one JSON document, and print each
// distinct message once (sql.js warns on every call of a legacy function).
const printed = new Set();
const stderr = console.error;
console.log = console.info = console.warn = console.error = (...args) => {
  const text = args.join(" ");
  if (printed.has(text)) return;
  printed.add(text);
  stderr(text);
};

// Peak RSS of this process. Linux: VmHWM, which starts afresh at exec; maxRSS would also count the memory
// of the (possibly large) parent process that forked us.
function peakRss() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}

// exit once the result is written: a build's leftover handles (seen with sql.js-fts5: a futex wait after the
// result) must not keep the process, and the caller waiting on it, alive
function finish(doc, code) {
  process.stdout.write(JSON.stringify(doc) + "\n", () => process.exit(code));
}

// sql.js's SQL object; its .wasm read here, not fetched by sql.js: older builds' loaders call fetch() on a path
// under Node >= 18
function sqlJs(job) {
  const initSqlJs = require(job.modules["sql.js"]);
  const wasmBinary = fs.readFileSync(job.modules["sql.js"].replace(/\.js$/, ".wasm"));
  return initSqlJs({ ...loadOptions(job), wasmBinary });
}

async function main() {
  let job;
  try {
    job = JSON.parse(fs.readFileSync(0, "utf8"));
  } catch (e) {
    return finish({ ok: false, kind: "job", error: "cannot read the job from stdin: " + e.message }, 1);
  }
  const node = Number(process.versions.node.split(".")[0]);
  if (node < 18) {
    return finish({ ok: false, kind: "job", error: `Node.js ${process.version} is too old: sql.js needs Node.js >= 18` }, 1);
  }
  const { createXXHash128 } = require(job.modules["hash-wasm"]);
  const SQL = job.modules["sqlite-wasm"] ? await require("./sqlite-wasm.js").load(job.modules["sqlite-wasm"]) : await sqlJs(job);
  const hasher = await createXXHash128();
  const bytes = job.database == null ? null : fs.readFileSync(job.database);
  const doc = runJob({ SQL, hasher, bytes, job });
  finish(doc.ok ? { ...doc, peak_rss: peakRss() } : doc, doc.ok ? 0 : 1);
}

main().catch((e) => finish({ ok: false, kind: "job", error: String((e && e.stack) || e) }, 1));
