// failback-web: take a database failback rolled back into a sql.js web app — checked, persisted, switched to.
//
//   const result = await installDatabase({ database, manifest, SQL, hasher });
//
// `database` and `manifest` are URLs (string or URL) or Files/Blobs: the target failback wrote and the
// `<target>.manifest.json` beside it (`manifest` may also be the parsed object). `SQL` is the app's initialised
// sql.js (`await initSqlJs(...)`), `hasher` hash-wasm's `await createXXHash128()` (fbd1 digests use XXH3-128).
// In order: the size and the SHA-256 (WebCrypto) must be the manifest's; the file must open in the app's sql.js
// and every table's fbd1 digest must be the manifest's (actions.js's digest, the code failback's own engines
// run); then it is stored in IndexedDB as "incoming", read back and hashed again, and only then, in ONE
// transaction, the current copy becomes "previous", the new one "current", and the provider switch is set.
// An interruption before that transaction leaves the current copy and the provider as they were; a failed
// check throws a FailbackWebError (`check`: manifest | fetch | size | sha256 | open | digest) and changes
// nothing. The app reads `currentProvider()` at start-up and loads `loadCurrent().bytes` into sql.js.
// Where the browser has OPFS (`navigator.storage.getDirectory`) the file is also kept there, with the same
// discipline: written as incoming.sqlite, read back and hashed, then, just before that transaction, the current
// file becomes previous.sqlite and incoming.sqlite current.sqlite. IndexedDB stays the record: `loadCurrent()`
// takes OPFS's current.sqlite only when its SHA-256 is the one IndexedDB's current copy was switched to.
import "./actions.js"; // defines globalThis.failbackActions (the same file failback's engines run)

const FORMAT = "failback-target/1";
const FILES = "files"; // object store: "current", "previous", "incoming" -> {bytes, manifest, sha256, saved}
const STATE = "state"; // object store: "provider" -> {provider, sha256, file, switched}
const OPFS = { incoming: "incoming.sqlite", current: "current.sqlite", previous: "previous.sqlite" };

export class FailbackWebError extends Error {
  constructor(check, message) {
    super(message);
    this.name = "FailbackWebError";
    this.check = check;
  }
}

async function fetched(source, what) {
  if (typeof Blob !== "undefined" && source instanceof Blob) return source;
  let response;
  try {
    response = await fetch(source, { cache: "no-store" });
  } catch (e) {
    throw new FailbackWebError("fetch", `cannot fetch the ${what} ${source}: ${e.message}`);
  }
  if (!response.ok) throw new FailbackWebError("fetch", `cannot fetch the ${what} ${source}: HTTP ${response.status}`);
  return response;
}

async function readManifest(manifest) {
  let doc = manifest;
  if (typeof manifest === "string" || manifest instanceof URL || (typeof Blob !== "undefined" && manifest instanceof Blob)) {
    const text = await (await fetched(manifest, "manifest")).text();
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new FailbackWebError("manifest", `the manifest is not JSON: ${e.message}`);
    }
  }
  if (!doc || doc.format !== FORMAT || !Array.isArray(doc.tables) || typeof doc.sha256 !== "string") {
    throw new FailbackWebError("manifest", `not a failback manifest (format ${FORMAT} expected)`);
  }
  return doc;
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Open `bytes` in the app's sql.js and compare every table's rows and fbd1 digest with the manifest's.
function checkContent(SQL, hasher, bytes, manifest) {
  const tables = manifest.tables.map(({ table, columns, rowid }) => ({ table, columns, rowid }));
  const job = { database: manifest.file, actions: tables.map((spec) => ({ op: "digest", tables: [spec] })) };
  const doc = globalThis.failbackActions.runJob({ SQL, hasher, bytes, job });
  if (!doc.ok) throw new FailbackWebError("open", `sql.js cannot open ${doc.error}`);
  manifest.tables.forEach((want, i) => {
    const result = doc.results[i];
    if (!result.ok) throw new FailbackWebError("digest", `table ${want.table}: ${result.error}`);
    const got = result.tables[0];
    if (got.rows !== want.rows || got.digest !== want.digest) {
      throw new FailbackWebError(
        "digest",
        `table ${want.table}: ${got.rows} rows, digest ${got.digest}; the manifest says ${want.rows}, ${want.digest}`,
      );
    }
  });
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openStore(name) {
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => {
    req.result.createObjectStore(FILES);
    req.result.createObjectStore(STATE);
  };
  return request(req);
}

function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

// The OPFS folder of `store` (created), or null where the browser has no OPFS.
async function opfsFolder(store) {
  if (typeof navigator === "undefined" || !navigator.storage?.getDirectory) return null;
  return (await navigator.storage.getDirectory()).getDirectoryHandle(store, { create: true });
}

async function opfsHandle(folder, name) {
  try {
    return await folder.getFileHandle(name);
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

async function opfsBytes(folder, name) {
  const handle = await opfsHandle(folder, name);
  return handle && new Uint8Array(await (await handle.getFile()).arrayBuffer());
}

async function opfsWrite(folder, name, bytes) {
  const writable = await (await folder.getFileHandle(name, { create: true })).createWritable();
  await writable.write(bytes);
  await writable.close(); // the new content replaces the file only now
}

async function opfsRemove(folder, name) {
  await folder.removeEntry(name).catch((e) => {
    if (e.name !== "NotFoundError") throw e;
  });
}

// Rename `from` to `to` (replaced): FileSystemHandle.move where supported, else copy then remove, so that a
// stop at any point leaves `from` or a complete `to`.
async function opfsRename(folder, from, to) {
  const handle = await folder.getFileHandle(from);
  if (typeof handle.move === "function") {
    await opfsRemove(folder, to);
    await handle.move(to);
    return;
  }
  await opfsWrite(folder, to, new Uint8Array(await (await handle.getFile()).arrayBuffer()));
  await folder.removeEntry(from);
}

// In `tx` (FILES and STATE, readwrite): `record` becomes current, the current copy previous, and the provider
// switch follows `record`.
async function promote(tx, record) {
  const files = tx.objectStore(FILES);
  const current = await request(files.get("current"));
  if (current) files.put(current, "previous");
  files.put(record, "current");
  const { provider, file } = record.manifest;
  tx.objectStore(STATE).put({ provider, sha256: record.sha256, file, switched: new Date().toISOString() }, "provider");
}

// Check `database` against `manifest`, persist it, then switch to it (see the top of this file). `store`: the
// IndexedDB database's name; `onStage(stage)`: awaited after "checked", "stored", "reread", "switched".
export async function installDatabase({ database, manifest, SQL, hasher, store = "failback", onStage = () => {} }) {
  const man = await readManifest(manifest);
  const bytes = new Uint8Array(await (await fetched(database, "database")).arrayBuffer());
  if (bytes.byteLength !== man.size) {
    throw new FailbackWebError("size", `${man.file}: ${bytes.byteLength} bytes, the manifest says ${man.size}`);
  }
  const sum = await sha256(bytes);
  if (sum !== man.sha256) throw new FailbackWebError("sha256", `${man.file}: SHA-256 ${sum}, the manifest says ${man.sha256}`);
  checkContent(SQL, hasher, bytes, man);
  await onStage("checked");
  const folder = await opfsFolder(store);
  const db = await openStore(store);
  try {
    let tx = db.transaction(FILES, "readwrite", { durability: "strict" });
    tx.objectStore(FILES).put({ bytes, manifest: man, sha256: sum, saved: new Date().toISOString() }, "incoming");
    await committed(tx);
    if (folder) await opfsWrite(folder, OPFS.incoming, bytes);
    await onStage("stored");
    const incoming = await request(db.transaction(FILES).objectStore(FILES).get("incoming"));
    if (!incoming || (await sha256(incoming.bytes)) !== man.sha256) {
      throw new FailbackWebError("sha256", `${man.file}: the copy read back from IndexedDB is not the one checked`);
    }
    const reread = folder && (await opfsBytes(folder, OPFS.incoming));
    if (folder && (!reread || (await sha256(reread)) !== man.sha256)) {
      throw new FailbackWebError("sha256", `${man.file}: the copy read back from OPFS is not the one checked`);
    }
    await onStage("reread");
    if (folder) {
      // previous.sqlite is dropped only while current.sqlite and the verified incoming.sqlite both exist
      if (await opfsHandle(folder, OPFS.current)) await opfsRename(folder, OPFS.current, OPFS.previous);
      await opfsRename(folder, OPFS.incoming, OPFS.current);
    }
    tx = db.transaction([FILES, STATE], "readwrite", { durability: "strict" });
    await promote(tx, incoming);
    tx.objectStore(FILES).delete("incoming");
    await committed(tx);
  } finally {
    db.close();
  }
  await onStage("switched");
  return { bytes, manifest: man, provider: man.provider };
}

async function read(storeName, key, store) {
  const db = await openStore(store);
  try {
    return (await request(db.transaction(storeName).objectStore(storeName).get(key))) || null;
  } finally {
    db.close();
  }
}

// The copy the app runs on: {bytes, manifest, sha256, saved, from}, or null before the first install. `from`:
// "opfs" when OPFS's current.sqlite has the SHA-256 of IndexedDB's current copy, else "indexeddb".
export async function loadCurrent({ store = "failback" } = {}) {
  const current = await read(FILES, "current", store);
  if (!current) return null;
  const folder = await opfsFolder(store);
  const bytes = folder && (await opfsBytes(folder, OPFS.current));
  if (bytes && (await sha256(bytes)) === current.sha256) return { ...current, bytes, from: "opfs" };
  return { ...current, from: "indexeddb" };
}
// The copy before it (kept until the next install is verified), or null.
export const loadPrevious = ({ store = "failback" } = {}) => read(FILES, "previous", store);
// The provider switch: the provider the app must use ("sqljs" after a rollback), or null when never set.
export const currentProvider = async ({ store = "failback" } = {}) =>
  (await read(STATE, "provider", store))?.provider ?? null;

// Go back to the previous copy: in one IndexedDB transaction it becomes current, the current copy previous, and
// the provider switch follows it; then OPFS's two files are swapped (until that ends, OPFS's current.sqlite is not
// the restored SHA-256, so loadCurrent() reads IndexedDB). The restored copy, or null when there is none.
export async function restorePrevious({ store = "failback" } = {}) {
  const db = await openStore(store);
  let previous;
  try {
    const tx = db.transaction([FILES, STATE], "readwrite", { durability: "strict" });
    previous = await request(tx.objectStore(FILES).get("previous"));
    if (previous) await promote(tx, previous);
    await committed(tx);
  } finally {
    db.close();
  }
  const folder = previous && (await opfsFolder(store));
  if (folder && (await opfsHandle(folder, OPFS.previous))) {
    await opfsRename(folder, OPFS.previous, OPFS.incoming);
    if (await opfsHandle(folder, OPFS.current)) await opfsRename(folder, OPFS.current, OPFS.previous);
    await opfsRename(folder, OPFS.incoming, OPFS.current);
  }
  return previous || null;
}
