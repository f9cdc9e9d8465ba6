// failback's adapter from the official SQLite WASM build (npm @sqlite.org/sqlite-wasm, its oo1 API) to the part
// of sql.js's API actions.js uses, so the same actions run in it: load(path of the package's Node entry,
// dist/node.mjs) resolves to {Database}, as initSqlJs resolves to sql.js's SQL object.
//   new Database(bytes | null)  the bytes deserialized into an in-memory database (nothing reaches a file)
//   db.prepare(sql) -> Statement · db.iterateStatements(sql) · db.run(script) · db.exec(sql) -> [{columns,
//   values}] (the first statement giving rows) · db.create_function(name, fn) (fn.length: its arity, -1 any)
//   · db.close()
//   Statement: step() · get(null, {useBigInt}) · getBlob(i) · getColumnNames() · bind([values]) · reset() · free()
// Bound values follow oo1's rules, not sql.js's: an integral number binds as INTEGER, a bigint as INTEGER,
// a fractional number as REAL (sql.js binds integers outside int32 as REAL).
"use strict";

// The bytes as a plain Uint8Array (not Node's Buffer, which wasm.allocFromTypedArray refuses). A database whose
// header says WAL (bytes 18 and 19 = 2) cannot be read from memory: its copy says rollback journal, as the
// pages are the same (the file itself is never written).
function rollbackHeader(bytes) {
  const image = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  if (bytes.length < 20 || (bytes[18] !== 2 && bytes[19] !== 2)) return image;
  const copy = Uint8Array.from(image);
  copy[18] = copy[19] = 1;
  return copy;
}

function adapter(sqlite3) {
  const { capi, wasm, oo1 } = sqlite3;

  class Statement {
    constructor(stmt) {
      this.stmt = stmt;
    }
    step() {
      return this.stmt.step();
    }
    get(params, options) {
      const p = this.stmt.pointer;
      const bigints = Boolean(options && options.useBigInt);
      const row = [];
      for (let i = 0; i < this.stmt.columnCount; i++) {
        const type = capi.sqlite3_column_type(p, i);
        if (type === capi.SQLITE_INTEGER) {
          const v = BigInt(capi.sqlite3_column_int64(p, i));
          row.push(bigints ? v : Number(v));
        } else if (type === capi.SQLITE_FLOAT) row.push(capi.sqlite3_column_double(p, i));
        else if (type === capi.SQLITE_NULL) row.push(null);
        else row.push(this.stmt.get(i, type));
      }
      return row;
    }
    getBlob(i) {
      return this.stmt.get(i, capi.SQLITE_BLOB); // a TEXT value's UTF-8 bytes, as sql.js's getBlob
    }
    getColumnNames() {
      return this.stmt.getColumnNames();
    }
    bind(values) {
      this.stmt.bind(values);
      return true;
    }
    reset() {
      this.stmt.reset(true);
    }
    free() {
      this.stmt.finalize();
    }
  }

  // The text of each statement in `sql`, in order (comments and whitespace between them give none).
  function* statementTexts(db, sql) {
    const utf8 = new TextEncoder().encode(sql);
    let offset = 0;
    while (offset < utf8.length) {
      const stack = wasm.pstack.pointer;
      try {
        const ppStmt = wasm.pstack.alloc(2 * wasm.ptr.size);
        const pzTail = wasm.ptr.add(ppStmt, wasm.ptr.size);
        const pSql = wasm.pstack.alloc(utf8.length - offset + 1);
        wasm.heap8u().set(utf8.subarray(offset), Number(pSql));
        wasm.poke8(wasm.ptr.add(pSql, utf8.length - offset), 0);
        oo1.DB.checkRc(db, capi.sqlite3_prepare_v2(db.pointer, pSql, utf8.length - offset, ppStmt, pzTail));
        const pStmt = wasm.peekPtr(ppStmt);
        offset += Number(wasm.peekPtr(pzTail)) - Number(pSql);
        if (!pStmt) continue;
        const text = capi.sqlite3_sql(pStmt);
        capi.sqlite3_finalize(pStmt);
        yield text;
      } finally {
        wasm.pstack.restore(stack);
      }
    }
  }

  class Database {
    constructor(bytes) {
      this.db = new oo1.DB(":memory:", "c");
      if (bytes && bytes.length) {
        const image = rollbackHeader(bytes);
        const p = wasm.allocFromTypedArray(image);
        const flags = capi.SQLITE_DESERIALIZE_FREEONCLOSE | capi.SQLITE_DESERIALIZE_RESIZEABLE;
        const rc = capi.sqlite3_deserialize(this.db.pointer, "main", p, image.length, image.length, flags);
        this.db.checkRc(rc);
      }
    }
    prepare(sql) {
      return new Statement(this.db.prepare(sql));
    }
    *iterateStatements(sql) {
      for (const text of statementTexts(this.db, sql)) yield this.prepare(text);
    }
    run(sql) {
      this.db.exec(sql);
    }
    exec(sql) {
      const columns = [];
      const values = this.db.exec({ sql, rowMode: "array", returnValue: "resultRows", columnNames: columns });
      return values.length ? [{ columns, values }] : [];
    }
    create_function(name, fn) {
      this.db.createFunction(name, (_ctx, ...args) => fn(...args), { arity: fn.length });
    }
    close() {
      this.db.close();
    }
  }

  return { Database };
}

async function load(entry) {
  const { pathToFileURL } = require("url");
  const { default: sqlite3InitModule } = await import(pathToFileURL(entry).href);
  return adapter(await sqlite3InitModule());
}

module.exports = { load };
