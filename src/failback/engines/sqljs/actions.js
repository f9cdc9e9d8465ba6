// failback engine actions: the action protocol run inside real sql.js, by Node (runner.js) and by a browser
// page (browser.html, web/failback.js) alike. A UMD module: require()d in Node; in a page a <script> or an
// imported module, which defines globalThis.failbackActions.
// runJob({SQL, hasher, memory, bytes, job, sample, share}) opens `bytes` (a Uint8Array, or null: an empty database)
// with the job's stand-ins and returns {"ok": true, "version", "results": [...], "raw"} or {"ok": false, "kind":
// "database", "error"} ("raw": whether the digests read values in place, RawColumns); `sample` (optional) is
// called after each action (the page samples its memory there); `share` (optional, Node): a helper thread that
// runs some of the digests (see runJob below).
// job: {"database": its name in messages, "actions": [...], "legacy_functions": bool, "stand_ins": [...]};
// SQL: what initSqlJs resolved to (see loadOptions); hasher: hash-wasm's createXXHash128() (or one called the same:
// init(), update(bytes), digest("binary"), whose bytes are read before the next hash); memory (optional, Node):
// SQL's WebAssembly.Memory, from which the digests read values directly (RawColumns).
// "legacy_functions": true loads sql.js 1.x's default deprecated extension functions (46 more functions;
// they also replace some native ones: log(x) becomes ln(x)); false (default): SQLite's native functions.
// "stand_ins": app functions registered as the app registers them (db.create_function: non-deterministic;
// arity -1: any number of arguments), each returning NULL: enough to prepare (EXPLAIN) what calls them.
// The file is read whole into memory (as the browser app does); writes stay in memory, never reach the file.
// Actions (one result each, {"ok": false, "error"} on failure, later actions still run):
//   {"op": "exec", "sql"}                              -> {"ok": true}
//   {"op": "query", "sql", "params"?, "limit"?, "keep"?} -> {"ok", "columns", "rows", "count", "digest"}
//     rows: the first `limit` rows (all by default); count and digest cover every row. "keep": {"column": index,
//     "prefix": text}: only the rows whose value in that column is TEXT starting with `prefix` are read, returned,
//     counted and digested; the others are skipped unread (e.g. an EXPLAIN's trigger programs: p4, column 5,
//     "-- TRIGGER ", out of a program of hundreds of instructions).
//   {"op": "digest", "tables": [spec, ...]}              -> {"ok", "tables": [{"table", "rows", "digest"}]}
//   {"op": "row_hashes", "table": spec, "order_by"?}     -> {"ok", "rows": [[key, hash hex], ...]}
//   {"op": "time", "sql", "runs"}                      -> {"ok", "ms": [per-run wall milliseconds], "rows"}
//   spec = {"table", "columns": [...], "rowid": bool}
// Typed values: NULL null · INTEGER {"int": "decimal"} · REAL {"real": "text"} · TEXT "string" ·
// BLOB {"blob": "hex"}. Digests follow fbd1 (src/failback/db/digest.py): per row XXH3-128 of
// tag+payload values (big-endian), summed mod 2**128.
// sql.js binds params through its own API: INTEGER outside int32 binds as REAL (as TEXT past 2**53), and
// integral REALs bind as INTEGER — exactly what the app's own bound values experience.
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.failbackActions = factory();
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
"use strict";

const quote = (name) => '"' + String(name).replace(/"/g, '""') + '"';
const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lossy = new TextDecoder("utf-8");
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const hex = (bytes) => {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
};
const fromHex = (text) => {
  const out = new Uint8Array(text.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
};

const BIGINTS = { useBigInt: true }; // get()'s option: INTEGER as bigint

// Read a row: get() types values by storage class (bigint INTEGER, number REAL, string TEXT, Uint8Array
// BLOB, null). get()'s strings are decoded lossily, so TEXT is re-read as bytes with getBlob(), which gives
// exactly sqlite3_column_text's UTF-8 (converted from UTF-16 by SQLite in a UTF-16 database).
function readRow(stmt) {
  if (!bigints) return readPairs(stmt);
  const row = stmt.get(null, BIGINTS);
  for (let i = 0; i < row.length; i++) {
    if (typeof row[i] === "string") row[i] = { text: stmt.getBlob(i) };
  }
  return row;
}

// sql.js before 1.8 (e.g. npm's sql.js-fts5 1.4.0) has no useBigInt: get() gives INTEGER and REAL alike as
// numbers. There each value is selected as a pair (typed(): its typeof and, for an INTEGER, its decimal text)
// and readPairs() rebuilds it; a statement that cannot be wrapped so (EXPLAIN, PRAGMA) is read by guessedRow(),
// taking an integral number for an INTEGER (what those statements return).
let bigints = true;

function typed(parts) {
  return parts.flatMap((p) => [`typeof(${p})`, `CASE typeof(${p}) WHEN 'integer' THEN CAST(${p} AS TEXT) ELSE ${p} END`]);
}

function readPairs(stmt) {
  const row = stmt.get();
  const out = [];
  for (let i = 0; i < row.length; i += 2) {
    const kind = row[i];
    const v = row[i + 1];
    out.push(kind === "integer" ? BigInt(v) : kind === "text" ? { text: stmt.getBlob(i + 1) } : v);
  }
  return out;
}

function guessedRow(stmt) {
  return stmt.get().map((v, i) =>
    typeof v === "string" ? { text: stmt.getBlob(i) } : Number.isInteger(v) ? BigInt(v) : v,
  );
}

// The wrapped form of a one-statement query whose `n` result columns are read in pairs, or null when the
// statement cannot be wrapped (it is not a SELECT).
function typedQuery(db, sql, n) {
  const names = Array.from({ length: n }, (_, i) => `fb_c${i}`);
  try {
    return db.prepare(`WITH fb_q(${names.join(", ")}) AS (${sql.trim().replace(/;$/, "")}) SELECT ${typed(names).join(", ")} FROM fb_q`);
  } catch {
    return null;
  }
}

// REAL as text in Python's repr() format (shortest round-trip digits, as JS's), so both engines agree.
function realText(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, e] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(e);
  const sign = x < 0 ? "-" : "";
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return sign + "0." + "0".repeat(-exp - 1) + digits;
  return sign + digits.slice(0, exp + 1).padEnd(exp + 1, "0") + "." + (digits.slice(exp + 1) || "0");
}

function encodeTyped(v, strict) {
  if (v === null) return null;
  if (typeof v === "bigint") return { int: v.toString() };
  if (typeof v === "number") return { real: realText(v) };
  if (v instanceof Uint8Array) return { blob: hex(v) };
  if (!strict) return utf8Lossy.decode(v.text);
  try {
    return utf8.decode(v.text);
  } catch {
    throw new Error("a TEXT value is not valid UTF-8");
  }
}

function decodeTyped(j) {
  if (j === null || typeof j === "string") return j;
  if (typeof j === "object" && "int" in j) {
    const b = BigInt(j.int);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  if (typeof j === "object" && "real" in j) return Number(j.real);
  if (typeof j === "object" && "blob" in j) return fromHex(j.blob);
  throw new Error("not a typed value: " + JSON.stringify(j));
}

// The fbd1 row encoding, hashed with XXH3-128, summed in four 32-bit limbs. Every Digester of a thread encodes
// into one growing buffer (a row is hashed as soon as it is encoded): no buffer to allocate per query or table.
let rowBytes = new Uint8Array(1 << 16);
let rowView = new DataView(rowBytes.buffer);

// rowBytes grown to hold `n` more bytes after the first `used`.
function roomFor(used, n) {
  if (used + n <= rowBytes.length) return;
  const grown = new Uint8Array(Math.max(rowBytes.length * 2, used + n));
  grown.set(rowBytes.subarray(0, used));
  rowBytes = grown;
  rowView = new DataView(grown.buffer);
}

class Digester {
  constructor(hasher) {
    this.hasher = hasher;
    this.limbs = [0, 0, 0, 0]; // most significant first; each < 2**53 between normalisations
    this.count = 0;
  }
  // The hash of a row read by readRow.
  hashRow(row) {
    let pos = 0;
    for (const v of row) {
      if (v === null) {
        roomFor(pos, 1);
        rowBytes[pos++] = 0;
      } else if (typeof v === "bigint" || typeof v === "number") {
        roomFor(pos, 9);
        rowBytes[pos] = typeof v === "bigint" ? 1 : 2;
        if (typeof v === "bigint") rowView.setBigInt64(pos + 1, v);
        else rowView.setFloat64(pos + 1, v);
        pos += 9;
      } else {
        const bytes = v instanceof Uint8Array ? v : v.text;
        roomFor(pos, 5 + bytes.length);
        rowBytes[pos] = v instanceof Uint8Array ? 4 : 3;
        rowView.setUint32(pos + 1, bytes.length);
        rowBytes.set(bytes, pos + 5);
        pos += 5 + bytes.length;
      }
    }
    return this.hashBytes(pos);
  }
  // The hash of the current row of `stmts` (their columns joined), read by `raw` (a RawColumns).
  hashRaw(raw, stmts) {
    let pos = 0;
    for (const stmt of stmts) pos = raw.encode(stmt, pos);
    return this.hashBytes(pos);
  }
  // The hash of the first `used` bytes of rowBytes.
  hashBytes(used) {
    this.hasher.init();
    this.hasher.update(rowBytes.subarray(0, used));
    return this.hasher.digest("binary"); // canonical big-endian, as Python's xxh3_128_digest
  }
  add(row) {
    this.addHash(this.hashRow(row));
  }
  addHash(d) {
    for (let i = 0; i < 4; i++) this.limbs[i] += ((d[4 * i] << 24) | (d[4 * i + 1] << 16) | (d[4 * i + 2] << 8) | d[4 * i + 3]) >>> 0;
    if (++this.count % 0x100000 === 0) this.normalise();
  }
  normalise() {
    for (let i = 3; i > 0; i--) {
      const carry = Math.floor(this.limbs[i] / 0x100000000);
      this.limbs[i] -= carry * 0x100000000;
      this.limbs[i - 1] += carry;
    }
    this.limbs[0] %= 0x100000000;
  }
  hex() {
    this.normalise();
    return this.limbs.map((x) => x.toString(16).padStart(8, "0")).join("");
  }
}

// A statement's current row encoded for the digest straight from the SQL module's WebAssembly memory (`memory`:
// runner.js instantiates the module, so it knows it), by SQLite's C API: no JS string, array or bytes per value
// (get() decodes every TEXT into a string, which the digest does not need, getBlob() copies bytes one by one).
// The same bytes as hashRow(readRow()): the storage class from sqlite3_column_type (before any conversion); an
// INTEGER from sqlite3_column_double where that is exact (|x| < 2**53), else from its decimal text; TEXT as
// sqlite3_column_text's UTF-8 (converted by SQLite in a UTF-16 database, as getBlob's). rawColumns() gives one, or
// null where the module does not give what it needs (a page's sql.js, another build): rows are then read by readRow.
const RAW_EXPORTS = ["_sqlite3_data_count", "_sqlite3_sql"].concat(
  ["type", "double", "text", "blob", "bytes"].map((f) => `_sqlite3_column_${f}`),
);
const stmtPointers = new WeakMap(); // SQL module -> the name of its Statement's property holding sqlite3_stmt*

class RawColumns {
  constructor(SQL, memory, pointer) {
    this.SQL = SQL;
    this.memory = memory;
    this.pointer = pointer;
    this.heap = new Uint8Array(memory.buffer);
  }
  // rowBytes from `pos` on filled with the row's values; returns the position after them.
  encode(stmt, pos) {
    const S = this.SQL;
    const p = stmt[this.pointer];
    const n = S._sqlite3_data_count(p);
    for (let i = 0; i < n; i++) {
      const type = S._sqlite3_column_type(p, i); // 1 INTEGER, 2 REAL, 3 TEXT, 4 BLOB, 5 NULL
      if (type === 5) {
        roomFor(pos, 1);
        rowBytes[pos++] = 0;
      } else if (type < 3) {
        roomFor(pos, 9);
        rowBytes[pos] = type;
        const x = S._sqlite3_column_double(p, i);
        if (type === 2) rowView.setFloat64(pos + 1, x);
        else if (Number.isSafeInteger(x)) {
          const high = Math.floor(x / 0x100000000);
          rowView.setInt32(pos + 1, high);
          rowView.setUint32(pos + 5, x - high * 0x100000000);
        } else rowView.setBigInt64(pos + 1, BigInt(S.UTF8ToString(S._sqlite3_column_text(p, i))));
        pos += 9;
      } else {
        const at = type === 3 ? S._sqlite3_column_text(p, i) : S._sqlite3_column_blob(p, i);
        const length = S._sqlite3_column_bytes(p, i);
        roomFor(pos, 5 + length);
        rowBytes[pos] = type;
        rowView.setUint32(pos + 1, length);
        if (length) rowBytes.set(this.bytes(at, length), pos + 5);
        pos += 5 + length;
      }
    }
    return pos;
  }
  // getBlob(i)'s bytes (read as it reads them: sqlite3_column_bytes, then _blob), in place: valid until the next read.
  columnBytes(stmt, i) {
    const p = stmt[this.pointer];
    const length = this.SQL._sqlite3_column_bytes(p, i);
    const at = this.SQL._sqlite3_column_blob(p, i);
    return length ? this.bytes(at, length) : new Uint8Array(0);
  }
  // A view of `length` (> 0) bytes of the memory at `at`.
  bytes(at, length) {
    if (at + length > this.heap.length) this.heap = new Uint8Array(this.memory.buffer); // grown (or detached)
    return this.heap.subarray(at, at + length);
  }
}

function rawColumns(SQL, memory, db) {
  if (!memory || !bigints || !RAW_EXPORTS.every((f) => typeof SQL[f] === "function")) return null;
  if (!stmtPointers.has(SQL)) {
    // the Statement's property whose value is a statement SQLite knows as this one (names are minified)
    const sql = "SELECT 'failback raw columns'";
    const stmt = db.prepare(sql);
    try {
      stmtPointers.set(SQL, Object.keys(stmt).find((k) => {
        try {
          return Number.isInteger(stmt[k]) && stmt[k] > 1 && SQL.UTF8ToString(SQL._sqlite3_sql(stmt[k])) === sql;
        } catch {
          return false;
        }
      }));
    } finally {
      stmt.free();
    }
  }
  const pointer = stmtPointers.get(SQL);
  return pointer === undefined ? null : new RawColumns(SQL, memory, pointer);
}

const MAX_COLUMNS = 2000; // SQLITE_MAX_COLUMN: the most columns a table has and a SELECT returns
const ROWID_NAMES = ["_rowid_", "rowid", "oid"];

// The name that reads the rowid: the first of _rowid_, rowid, oid no column takes (as digest.py's rowid_name).
function rowidName(columns) {
  const taken = new Set(columns.filter((c) => /^[\x00-\x7f]*$/.test(c)).map((c) => c.toLowerCase()));
  return ROWID_NAMES.find((n) => !taken.has(n)) || ROWID_NAMES[0];
}

// Rows of `parts` (SQL expressions) of a spec's table; a table too wide for one SELECT is read by one per
// group of columns, in the same row order (`order`, else by rowid, else a scan of the table's own b-tree),
// and each row joined (as digest.py's DigestSpec.read): fn(stmts) for each row, on it (readRows reads it).
function scanTable(db, parts, spec, order, fn) {
  if (!bigints) parts = typed(parts); // pairs: MAX_COLUMNS is even, a pair is never cut
  const groups = [];
  for (let i = 0; i < parts.length; i += MAX_COLUMNS) groups.push(parts.slice(i, i + MAX_COLUMNS));
  let source = `"main".${quote(spec.table)}`;
  if (groups.length > 1 && !order) {
    if (spec.rowid) order = ` ORDER BY ${rowidName(spec.columns)}`;
    else source += " NOT INDEXED";
  }
  const stmts = groups.map((g) => db.prepare(`SELECT ${g.join(", ")} FROM ${source}${order}`));
  try {
    for (;;) {
      const more = stmts[0].step();
      for (let g = 1; g < stmts.length; g++) {
        if (stmts[g].step() !== more) throw new Error(`column groups of ${spec.table} differ in rows`);
      }
      if (!more) break;
      fn(stmts);
    }
  } finally {
    for (const stmt of stmts) stmt.free();
  }
}

const readRows = (stmts) => (stmts.length === 1 ? readRow(stmts[0]) : stmts.flatMap(readRow));

function specParts(spec) {
  const parts = spec.columns.map(quote);
  if (spec.rowid) parts.unshift(rowidName(spec.columns));
  return parts.length ? parts : ["NULL"];
}

// The row filter of a query's "keep" option ({column, prefix}) on a statement giving `width` columns per column (2:
// read in pairs, the value second). skips(stmt) tells from the column's bytes alone (getBlob gives every storage
// class's; `raw`, a RawColumns or null, reads them in place) a row that cannot be kept, unread; kept(row) whether a
// row read (readRow's form) is: that value TEXT starting with the prefix.
function rowFilter(keep, width, raw) {
  const at = width * keep.column + width - 1;
  const prefix = new TextEncoder().encode(keep.prefix);
  const starts = (bytes) => bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
  return {
    skips: (stmt) => !starts(raw ? raw.columnBytes(stmt, at) : stmt.getBlob(at)),
    kept: (row) => row[keep.column] !== null && row[keep.column].text !== undefined && starts(row[keep.column].text),
  };
}

const ACTIONS = {
  exec(db, action) {
    db.run(action.sql);
    return {};
  },
  query(db, action, { hasher, raw }) {
    const it = db.iterateStatements(action.sql);
    const first = it.next();
    const out = { columns: [], rows: [], count: 0, digest: "0".repeat(32) };
    if (first.done) return out;
    let stmt = first.value;
    const d = new Digester(hasher);
    const limit = action.limit == null ? Infinity : action.limit;
    let read = readRow;
    try {
      out.columns = stmt.getColumnNames();
      if (!bigints) {
        stmt = typedQuery(db, action.sql, out.columns.length) || stmt;
        if (stmt === first.value) read = guessedRow;
      }
      const keep = action.keep && rowFilter(action.keep, stmt === first.value ? 1 : 2, raw);
      if (action.params && action.params.length) stmt.bind(action.params.map(decodeTyped));
      const stmts = [stmt];
      while (stmt.step()) {
        if (raw && !keep && out.rows.length >= limit) {
          d.addHash(d.hashRaw(raw, stmts)); // a row only digested: not read into JS values
          continue;
        }
        if (keep && keep.skips(stmt)) continue;
        const row = read(stmt);
        if (keep && !keep.kept(row)) continue;
        if (out.rows.length < limit) out.rows.push(row.map((v) => encodeTyped(v, true)));
        d.add(row);
      }
      if (!it.next().done) throw new Error("query takes a single SQL statement; use exec for scripts");
    } finally {
      if (stmt !== first.value) stmt.free();
      if (typeof it.return === "function") it.return();
      else first.value.free(); // sql.js < 1.8's iterator has no return()
    }
    return { ...out, count: d.count, digest: d.hex() };
  },
  digest(db, action, { hasher, raw }) {
    const tables = action.tables.map((spec) => {
      const d = new Digester(hasher);
      const hash = raw ? (stmts) => d.hashRaw(raw, stmts) : (stmts) => d.hashRow(readRows(stmts));
      scanTable(db, specParts(spec), spec, "", (stmts) => d.addHash(hash(stmts)));
      return { table: spec.table, rows: d.count, digest: d.hex() };
    });
    return { tables };
  },
  time(db, action) {
    const stmt = db.prepare(action.sql);
    const ms = [];
    let rows = 0;
    try {
      for (let i = 0; i < (action.runs || 1); i++) {
        const t0 = performance.now();
        rows = 0;
        while (stmt.step()) rows++;
        stmt.reset();
        ms.push(performance.now() - t0);
      }
    } finally {
      stmt.free();
    }
    return { ms, rows };
  },
  row_hashes(db, action, { hasher }) {
    const spec = action.table;
    const keys = spec.rowid ? [rowidName(spec.columns)] : (action.order_by || []).map(quote);
    if (!keys.length) throw new Error("row_hashes needs a rowid table or order_by columns");
    const parts = spec.rowid ? specParts(spec) : keys.concat(specParts(spec));
    const d = new Digester(hasher);
    const rows = [];
    scanTable(db, parts, spec, ` ORDER BY ${keys.join(", ")}`, (stmts) => {
      const row = readRows(stmts);
      const values = spec.rowid ? row : row.slice(keys.length);
      const key = spec.rowid ? encodeTyped(row[0]) : row.slice(0, keys.length).map((v) => encodeTyped(v));
      rows.push([key, hex(d.hashRow(values))]);
    });
    return { rows };
  },
};

// initSqlJs's options for a job (locateFile: where the page serves sql-wasm.wasm; Node: beside sql-wasm.js).
function loadOptions(job, locateFile) {
  // false: SQLite's native functions only (sql.js's next major default); true: sql.js 1.x's default.
  const options = { useOldExtensionFunctions: job.legacy_functions === true };
  if (locateFile) options.locateFile = locateFile;
  return options;
}

// `bytes` opened as the job's database, its stand-ins registered; throws when it is not a database.
function openDatabase(SQL, bytes, job) {
  let db;
  try {
    db = new SQL.Database(bytes);
    // registered before the first read (any prepare parses the schema), as the app does: the schema is parsed
    // knowing them
    for (const entry of job.stand_ins || []) {
      const cut = entry.lastIndexOf("/");
      const standIn = () => null;
      Object.defineProperty(standIn, "length", { value: Number(entry.slice(cut + 1)) }); // sql.js's nArg
      db.create_function(entry.slice(0, cut), standIn);
    }
    db.exec("SELECT count(*) FROM sqlite_schema"); // the first read: fails here if not a database
    const one = db.prepare("SELECT 1");
    one.step();
    bigints = typeof one.get(null, BIGINTS)[0] === "bigint";
    one.free();
    return db;
  } catch (e) {
    if (db) db.close(); // a runner's session goes on with its next job: free this one's memory
    throw e;
  }
}

// What the actions on `db` (opened by openDatabase) run with: the hasher and, given the SQL module's `memory`, its
// RawColumns (or null).
const actionTools = (SQL, hasher, memory, db) => ({ hasher, raw: rawColumns(SQL, memory, db) });

// One action's result: {"ok": true, ...} or {"ok": false, "error"}; `tools`: actionTools().
function runAction(db, action, tools) {
  try {
    if (!Object.hasOwn(ACTIONS, action.op)) throw new Error(`unknown op: ${action.op}`);
    return { ok: true, ...ACTIONS[action.op](db, action, tools) };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

// `share` (optional; runner.js): a helper reading the same bytes in another thread. Each run of consecutive digest
// actions (reads only) is shared with it: share.start(from, end) lets it claim actions of that run, share.claim()
// gives this thread its next one (-1: none left), share.finish() waits for the helper and gives {index: result} of
// those it ran; an action it did not answer is run here.
function runJob({ SQL, hasher, memory, bytes, job, sample, share }) {
  let db;
  try {
    db = openDatabase(SQL, bytes, job);
  } catch (e) {
    return { ok: false, kind: "database", error: `${job.database}: ${e.message}` };
  }
  const tools = actionTools(SQL, hasher, memory, db);
  const actions = job.actions;
  const results = [];
  for (let i = 0; i < actions.length; i++) {
    let end = i;
    while (share && end < actions.length && actions[end].op === "digest") end++;
    if (end - i > 1) {
      share.start(i, end);
      for (let k = share.claim(); k >= 0; k = share.claim()) results[k] = runAction(db, actions[k], tools);
      Object.assign(results, share.finish());
      for (let k = i; k < end; k++) results[k] = results[k] || runAction(db, actions[k], tools);
      i = end - 1;
    } else {
      results[i] = runAction(db, actions[i], tools);
    }
    if (sample) sample();
  }
  const version = db.exec("SELECT sqlite_version()")[0].values[0][0];
  db.close();
  return { ok: true, version, results, raw: tools.raw !== null };
}

return { actionTools, loadOptions, openDatabase, runAction, runJob };
});
