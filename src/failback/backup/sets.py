"""Backup sets: create, list, verify and restore.

* ``create_backup``: zstd-compress a snapshot into every layer (primary + mirrors; each a ``Store``, see
  :mod:`failback.backup.store`) while its content digests are computed on another thread: each layer's set is
  staged (data read back from the store and hash-checked, the manifest written last), then published whole:
  a backup appears whole or not at all, and the next backup or prune removes what a crash left.
* ``list_backups``, ``verify_folder``, ``restore_backup``.

A layer is a ``Store`` or a folder path (a ``LocalStore``); a stored copy is a ``StoredSet`` or its folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import apsw
import zstandard

from ..db.connect import SIDE_FILES, connect, database_error, open_source
from ..db.digest import TableDigest, database_digests
from ..db.integrity import check_integrity, known_fts_damage
from ..db.schema import digest_specs, read_schema
from ..errors import BackupError, EnvironmentFailure, FailbackError, InputError, from_os_error
from ..files import FILE_MODE, ensure_dir, remove_quietly
from ..guard import Protected, check_replaceable, publish_over
from ..snapshot import Progress, _noop, _require_space, take_snapshot
from .manifest import DATA, ID_PATTERN, _manifest, created_at, manifest_bytes, read_manifest
from .store import MANIFEST, LocalStore, Store, StoredSet, as_store, config_stores, stored_set

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "BackupResult",
    "FolderCheck",
    "LayerResult",
    "RestoreResult",
    "backup_source",
    "check_folder",
    "create_backup",
    "describe_database",
    "find_backup",
    "list_backups",
    "restore_backup",
    "verify_folder",
]

READ_CHUNK = 4 << 20
SAMPLES, SAMPLE_BYTES = 16, 1 << 20  # what the compressed size is estimated from
# A file up to this size is compressed on the calling thread: it fits in one zstd job, so a zstd worker thread
# (started, with its buffers, per compressor) would only add its start and hand-over.
SMALL = 4 << 20


# -- backup sets ----------------------------------------------------------------------------------
@dataclass
class LayerResult:
    folder: str
    ok: bool
    error: str = ""


@dataclass
class BackupResult:
    """A backup: its id and manifest, each backup folder's copy (verified or why not), the content digests
    taken, the seconds it took and the snapshot it was made from."""

    id: str
    manifest: dict[str, Any]
    layers: list[LayerResult] = field(default_factory=list)
    digests: dict[str, TableDigest] = field(default_factory=dict)
    seconds: float = 0.0
    snapshot: dict[str, Any] = field(default_factory=dict)

    @property
    def verified_layers(self) -> int:
        """How many backup folders hold a copy that was re-read and verified."""
        return sum(layer.ok for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "layers": [asdict(x) for x in self.layers],
            "verified_layers": self.verified_layers,
            "sha256": self.manifest.get("sha256"),
            "bytes": self.manifest.get("bytes"),
            "seconds": round(self.seconds, 3),
            **({"snapshot": self.snapshot} if self.snapshot else {}),
        }


def backup_id(label: str) -> str:
    """A sortable, unique backup id: UTC time, label, random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "-" for ch in label)[:40] or "backup"
    return f"{stamp}-{safe}-{os.urandom(3).hex()}"


def describe_database(
    path: Path, with_digests: bool = True, workers: int = 0
) -> tuple[dict[str, Any], dict[str, TableDigest]]:
    """Manifest facts about a database file: header pragmas, per-table row counts and digests (taken by up to
    ``workers`` processes, 0 = one per CPU)."""
    conn = open_source(path)
    try:
        schema = read_schema(conn)
        digests = database_digests(path, digest_specs(schema), workers) if with_digests else {}
        facts = {
            "page_size": schema.page_size,
            "page_count": schema.page_count,
            "user_version": schema.user_version,
            "application_id": schema.application_id,
            "encoding": schema.encoding,
            "sqlite_version": apsw.sqlite_lib_version(),
            "tables": {t: {"rows": d.rows, "digest": d.digest} for t, d in digests.items()},
        }
    except (apsw.Error, UnicodeDecodeError) as err:
        raise database_error(path, err) from err
    finally:
        conn.close()
    return facts, digests


class _HashingWriter:
    """A file wrapper that hashes what is written through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)


def _estimate_compressed(raw: Path, level: int) -> int:
    """Bytes a compressed copy of ``raw`` will take: the ratio of evenly spread samples plus a quarter.
    Small files are not sampled: their raw size is the estimate."""
    size = raw.stat().st_size
    if size <= SAMPLES * SAMPLE_BYTES:
        return size
    cctx = zstandard.ZstdCompressor(level=level)
    taken = packed = 0
    with raw.open("rb") as fh:
        for i in range(SAMPLES):
            fh.seek(i * (size - SAMPLE_BYTES) // (SAMPLES - 1))
            chunk = fh.read(SAMPLE_BYTES)
            taken, packed = taken + len(chunk), packed + len(cctx.compress(chunk))
    return min(size, size * packed * 5 // (taken * 4))


def _compress(raw: Path, out: IO[bytes], level: int, threads: int, progress: Progress) -> tuple[str, str, int]:
    """Compress ``raw`` into ``out`` (on ``threads`` zstd threads, none for a small file); return (sha256 raw,
    sha256 compressed, compressed size)."""
    total = raw.stat().st_size
    raw_sha = hashlib.sha256()
    cctx = zstandard.ZstdCompressor(level=level, threads=threads if total > SMALL else 0, write_content_size=True)
    with raw.open("rb") as inp:
        hw = _HashingWriter(out)
        with cctx.stream_writer(cast(IO[bytes], hw), size=total, closefd=False) as zw:  # only .write is used
            done = 0
            while chunk := inp.read(READ_CHUNK):
                raw_sha.update(chunk)
                zw.write(chunk)
                done += len(chunk)
                progress("compress", done, total)
    return raw_sha.hexdigest(), hw.sha.hexdigest(), hw.size


def create_backup(
    snapshot: Path,
    layers: Sequence[Store | Path],
    *,
    label: str,
    source: Path,
    level: int = 3,
    threads: int = 2,
    progress: Progress = _noop,
    digests: bool = True,
    quick_check: Callable[[], Sequence[str] | None] = _noop,
) -> BackupResult:
    """Store a compressed, checksummed copy of ``snapshot`` in every layer; the manifest is written last.
    ``digests=False`` (emergency rollbacks) records checksums but no content digests: they are computed when
    the verification debt is paid, from this very copy. ``quick_check`` gives the snapshot's quick_check
    findings when they are known (it may wait for them), recorded so that a restore can tell the damage the
    source had from damage to the copy.

    The first layer that works gets the compressed stream (while another thread computes the content
    digests); the others get a copy of that verified data. A layer that fails is reported in the result and
    leaves nothing behind; the others go on."""
    t0 = time.perf_counter()
    bid = backup_id(label)
    result = BackupResult(bid, {})
    first: StoredSet | None = None  # the first verified copy: what mirrors copy
    stored = b""  # the manifest as stored, the same in every layer
    with ThreadPoolExecutor(max_workers=1) as pool:
        described = pool.submit(describe_database, snapshot, digests, max(threads, 1))
        for store in map(as_store, layers):
            try:
                store.check_room(
                    result.manifest["bytes"]["compressed"] if first else _estimate_compressed(snapshot, level)
                )
                with store.put(bid) as staged:
                    with staged.write(DATA) as out:
                        if first is None:
                            raw_sha, zsha, zsize = _compress(snapshot, out, level, threads, progress)
                        else:
                            with first.open(DATA) as inp:
                                shutil.copyfileobj(inp, out, READ_CHUNK)
                    if first is None:
                        facts, _ = described.result()
                        result.manifest = _manifest(bid, label, source, raw_sha, zsha, snapshot.stat().st_size, zsize)
                        result.manifest.update(facts, zstd_level=level)
                        if (found := quick_check()) is not None:
                            result.manifest["quick_check"] = list(found)
                        stored = manifest_bytes(result.manifest)
                    if staged.sha256(DATA) != result.manifest["sha256"]["compressed"]:
                        raise BackupError(
                            f"{store.describe()}: the copy of {bid} read back from disk does not match its checksum"
                        )
                    with staged.write(MANIFEST) as out:
                        out.write(stored)
                first = first or StoredSet(store, bid)
                result.layers.append(LayerResult(store.describe(), True))
            except (OSError, EnvironmentFailure, BackupError) as err:
                reason = from_os_error(err, f"backup layer {store.describe()}") if isinstance(err, OSError) else err
                result.layers.append(LayerResult(store.describe(), False, str(reason)))
        _, result.digests = described.result()  # raises for a snapshot that cannot be read
    result.seconds = time.perf_counter() - t0
    return result


def backup_source(cfg: Config, label: str, progress: Progress = _noop) -> BackupResult:
    """``failback backup create``: snapshot the configured source, store it in every layer."""
    work = ensure_dir(cfg.state.tmp)
    snap = take_snapshot(cfg.source_path, work / f"snapshot-{os.getpid()}.sqlite", progress)
    snap.guard.close()
    try:
        result = create_backup(
            snap.path,
            config_stores(cfg),
            label=label,
            source=cfg.source_path,
            level=cfg.backup.zstd_level,
            threads=cfg.backup.threads,
            progress=progress,
        )
    finally:
        remove_quietly(snap.path)
    result.snapshot = snap.to_json()
    return result


def list_backups(layers: Sequence[Store | Path]) -> list[dict[str, Any]]:
    """Every backup with a valid manifest, newest first: ``{"manifest": …, "folders": [StoredSet, …]}`` (one
    stored copy per layer holding it; ``str()`` of one says where it is)."""
    found: dict[str, dict[str, Any]] = {}
    for store in map(as_store, layers):
        for bid in store.ids():
            if not ID_PATTERN.fullmatch(bid):
                continue
            try:
                m = read_manifest(StoredSet(store, bid))
            except BackupError:
                continue
            found.setdefault(m["id"], {"manifest": m, "folders": []})["folders"].append(StoredSet(store, bid))
    return sorted(found.values(), key=lambda e: (created_at(e["manifest"]), e["manifest"]["id"]), reverse=True)


def find_backup(layers: Sequence[Store | Path], backup: str) -> list[StoredSet]:
    """The stored copies of backup ``backup`` (an id or a unique prefix of one), primary first."""
    matches = [e for e in list_backups(layers) if backup and e["manifest"]["id"].startswith(backup)]
    if not matches:
        raise InputError(f"no backup {backup!r}", "list them with `failback backup list`")
    if len(matches) > 1:
        raise InputError(f"backup {backup!r} is ambiguous: {', '.join(e['manifest']['id'] for e in matches)}")
    return list(matches[0]["folders"])


@dataclass
class FolderCheck:
    """What checking one stored copy found: problems (none = verified) and notes on how it was checked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify_folder(copy: StoredSet | Path, deep: bool = False, work: Path | None = None) -> list[str]:
    """Problems with one stored copy (empty list = verified); see ``check_folder``."""
    return check_folder(copy, deep, work).problems


def check_folder(copy: StoredSet | Path, deep: bool = False, work: Path | None = None) -> FolderCheck:
    """Check one stored copy: its manifest, the compressed data's SHA-256 and, by decompressing it as a stream
    (nothing written), the raw data's size and SHA-256. ``deep`` also writes the database out (in a private
    folder inside ``work``, default the system's temp folder), checks its integrity (``check_integrity``: its
    notes say how indexes on app collations were checked) and compares the content digests with the manifest."""
    stored = stored_set(copy)
    try:
        m = _stored_manifest(stored)
        if not deep:
            _decompress(stored, m, None, _noop)
            return FolderCheck()
        try:
            with tempfile.TemporaryDirectory(dir=work, prefix=".failback-verify-") as tmp:
                return FolderCheck([], _check_copy(stored, m, Path(tmp) / "check.sqlite", _noop))
        except OSError as err:
            return FolderCheck([str(from_os_error(err, f"{stored.where(DATA)}: cannot be checked deeply"))])
    except OSError as err:
        return FolderCheck([_read_problem(err, stored)])
    except FailbackError as err:
        return FolderCheck([err.message])


def _stored_manifest(stored: StoredSet) -> dict[str, Any]:
    """The manifest of one stored copy, once its compressed data matches the manifest's SHA-256."""
    m = read_manifest(stored)
    try:
        sha = stored.sha256(DATA)
    except OSError as err:
        raise BackupError(_read_problem(err, stored)) from None
    if sha != m["sha256"]["compressed"]:
        raise BackupError(f"{stored.where(DATA)}: checksum mismatch (the stored copy is damaged)")
    return m


def _read_problem(err: OSError, stored: StoredSet) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{err.filename or stored.where(DATA)}: missing"
    return f"{err.filename or stored}: unreadable ({err.strerror or err})"


def _decompress(stored: StoredSet, m: dict[str, Any], out: IO[bytes] | None, progress: Progress) -> None:
    """Decompress a backup's data into ``out`` (or nowhere) and check its size and SHA-256 against the manifest;
    decompression stops at the size the manifest records."""
    data, limit, sha, size = stored.where(DATA), m["bytes"]["raw"], hashlib.sha256(), 0
    try:
        with stored.open(DATA) as inp:
            reader = zstandard.ZstdDecompressor().stream_reader(inp, read_size=READ_CHUNK)
            while chunk := reader.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BackupError(f"{data}: decompresses to more than the {limit} bytes its manifest records")
                sha.update(chunk)
                if out is not None:
                    out.write(chunk)
                progress("restore", size, limit)
    except zstandard.ZstdError as err:
        raise BackupError(f"{data}: cannot be decompressed ({err})") from None
    if sha.hexdigest() != m["sha256"]["raw"]:
        raise BackupError(f"{data}: the decompressed data does not match its checksum")


def _unpack(stored: StoredSet, m: dict[str, Any], out: Path, progress: Progress) -> list[str]:
    """Decompress a backup's data into the new file ``out`` (0600) and check it: size and SHA-256 against the
    manifest, then its integrity (``check_integrity``, whose notes are returned). Damage is refused, except FTS
    index damage the manifest records the source had when the backup was made (``known_fts_damage``): the copy
    is faithful, and a note says so."""
    data = stored.where(DATA)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        _decompress(stored, m, fh, progress)
    try:
        conn = connect(out, readonly=True)
        try:
            checked = check_integrity(conn)
        finally:
            conn.close()
    except apsw.Error as err:
        raise BackupError(f"{data}: the decompressed database cannot be read ({err})") from None
    if checked.ok:
        return checked.notes
    known = known_fts_damage(checked.problems, m.get("quick_check", []))
    if not known:
        raise BackupError(f"{data}: the decompressed database fails integrity_check: {'; '.join(checked.problems)}")
    return [
        *checked.notes,
        f"FTS index of {', '.join(known)} malformed, as the source's quick_check found when the backup was made: "
        "a faithful copy (its SHA-256 matches)",
    ]


def _check_copy(stored: StoredSet, m: dict[str, Any], out: Path, progress: Progress) -> list[str]:
    """Unpack one stored copy to ``out`` and check all of it: sizes, both SHA-256s, integrity and, where the
    manifest records them (not for an emergency backup), the content digests of every table. Returns the
    integrity check's notes."""
    notes = _unpack(stored, m, out, progress)
    recorded = m["tables"]
    if not recorded:
        return notes
    facts, _ = describe_database(out)
    differ = sorted(t for t in {*facts["tables"], *recorded} if facts["tables"].get(t) != recorded.get(t))
    if differ:
        raise BackupError(f"{stored.where(DATA)}: content digests differ from the manifest: {', '.join(differ)}")
    return notes


@dataclass
class RestoreResult:
    """A restored backup: where it went, the stored copy it came from, each copy skipped with why, and how its
    integrity was checked (notes)."""

    path: Path
    copy: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder, problem)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "copy": self.copy,
            "skipped": [{"folder": f, "problem": p} for f, p in self.skipped],
            "notes": self.notes,
        }


def _first_good_copy(backup: str, copies: list[StoredSet], out: Path, progress: Progress) -> RestoreResult:
    """Unpack the stored copies into ``out`` one after another (primary first) until one passes every check
    (``_check_copy``): that copy, the ones skipped (each with its problem) and the integrity notes. None
    passes: BackupError naming each copy's problem. A full disk or an unwritable ``out`` is not a copy's
    fault: it ends the search."""
    skipped: list[tuple[str, str]] = []
    for stored in copies:
        try:
            m = _stored_manifest(stored)
            _require_space(out.parent, m["bytes"]["raw"], f"restore to {out.parent}")
            notes = _check_copy(stored, m, out, progress)
            return RestoreResult(out, str(stored), skipped, notes)
        except BackupError as err:
            skipped.append((str(stored), err.message))
        remove_quietly(out)
    problems = "; ".join(problem for _, problem in skipped)
    raise BackupError(
        f"backup {backup}: no stored copy passes every check: {problems}",
        "run `failback backup verify --deep` on it; restore another backup (`failback backup list`)",
    )


def restore_backup(
    layers: Sequence[Store | Path], backup: str, dest: Path, force: bool = False, progress: Progress = _noop
) -> RestoreResult:
    """Restore a backup to ``dest``: refuse to overwrite (a database or a leftover -wal/-shm/-journal) unless
    ``force``; decompress the first stored copy that passes every check to a temp name beside it, remove stale
    side files, rename."""
    if dest.is_dir():
        raise InputError(f"{dest} is a folder", "name the database file to restore to")
    existing = [p for p in (dest, *(Path(str(dest) + s) for s in SIDE_FILES)) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise InputError(f"{existing[0]} exists; refusing to overwrite", "pass --force, or restore to a new path")
    stores = [as_store(layer) for layer in layers]
    local = [s.folder for s in stores if isinstance(s, LocalStore)]
    check_replaceable(dest, Protected(folders=tuple(("a backup folder", p) for p in local)))
    copies = find_backup(stores, backup)
    ensure_dir(dest.parent)
    tmp = dest.with_name(f".{dest.name}.failback-restore-{os.getpid()}")
    try:
        result = _first_good_copy(backup, copies, tmp, progress)
        publish_over(tmp, dest)  # a stale -wal would be replayed into the new file: it goes with the old one
    except OSError as err:
        raise from_os_error(err, f"cannot restore to {dest}") from err
    finally:
        remove_quietly(tmp)
    result.path = dest
    return result
