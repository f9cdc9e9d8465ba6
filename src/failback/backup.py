"""Snapshots and backup sets.

* ``take_snapshot``: a consistent copy through the online backup API, stepped (progress), while the app may
  be writing. A WAL source is copied inside one read transaction (writers are never blocked and the copy
  never restarts); a rollback-journal source is copied in steps, restarting when a writer commits, and after
  ``MAX_RESTARTS`` it finishes in one step. The connection stays open so that ``SnapshotGuard.changed``
  can later tell whether anything was committed after the snapshot.
* ``create_backup``: zstd-compress a snapshot into every layer (primary + mirrors): temp name, fsync,
  rename, re-read and hash check; the manifest is written last — a backup without a valid manifest does not
  exist.
* ``verify_backup``, ``restore_backup``, ``list_backups``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import zstandard

from . import __version__
from .digest import TableDigest, table_digest
from .errors import BackupError, EnvironmentFailure, InputError, from_os_error
from .files import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    ensure_dir,
    free_bytes,
    fsync_dir,
    publish,
    remove_quietly,
    sha256_file,
)
from .schema import digest_specs, read_schema
from .sqlite import SIDE_FILES, connect, database_error, open_source, pragma, run_script

MANIFEST = "manifest.json"
DATA = "snapshot.sqlite.zst"
MAX_RESTARTS = 3
STEP_PAGES = 4096
Progress = Callable[[str, int, int], None]


def _noop(*_: object) -> None:
    return None


# -- snapshot -------------------------------------------------------------------------------------
def fingerprint(path: Path) -> dict[str, list[int]]:
    """(size, mtime_ns, inode) of the database and its -wal: cheap evidence of a write."""
    out = {}
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        try:
            st = p.stat()
            out[suffix or "db"] = [st.st_size, st.st_mtime_ns, st.st_ino]
        except FileNotFoundError:
            out[suffix or "db"] = []
    return out


@dataclass
class SnapshotGuard:
    """Evidence taken at snapshot time, to detect writes made after it."""

    source: Path
    data_version: int
    fingerprint: dict[str, list[int]]
    conn: apsw.Connection | None = None

    def changed(self) -> str | None:
        """Why the source is known to have changed since the snapshot, or None."""
        if self.conn is not None:
            try:
                if pragma(self.conn, "data_version") != self.data_version:
                    return "a transaction was committed to the source after the snapshot"
            except apsw.Error as err:
                return f"the source can no longer be read ({err})"
        if not self.source.exists():
            return "the source file is gone"
        now = fingerprint(self.source)
        if now["db"] != self.fingerprint["db"] or (now["-wal"] and now["-wal"] != self.fingerprint["-wal"]):
            return "the source file or its -wal changed after the snapshot"
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "data_version": self.data_version,
            "fingerprint": self.fingerprint,
        }


@dataclass
class Snapshot:
    path: Path
    guard: SnapshotGuard
    pages: int
    page_size: int
    restarts: int
    seconds: float


def take_snapshot(source: Path, dest: Path, progress: Progress = _noop) -> Snapshot:
    """Copy ``source`` to ``dest`` (temp name, then rename) with the online backup API."""
    src = open_source(source)
    tmp = dest.with_name(dest.name + ".part")
    remove_quietly(tmp)
    t0 = time.perf_counter()
    try:
        wal = str(pragma(src, "journal_mode")).lower() == "wal"
        if wal:  # one read transaction: a fixed snapshot, writers go on in the WAL
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").get  # noqa: B018 - starts the read
        data_version = pragma(src, "data_version")
        guard = SnapshotGuard(source, data_version, fingerprint(source), src)
        restarts = _copy_pages(src, tmp, progress, stepped=True, allow_restart=not wal)
        if wal:
            src.execute("COMMIT")
    except apsw.FullError as err:
        src.close()
        remove_quietly(tmp)
        raise EnvironmentFailure(f"cannot write snapshot {dest}: disk full") from err
    except (apsw.Error, UnicodeDecodeError) as err:
        src.close()
        remove_quietly(tmp)
        raise database_error(source, err) from err
    except BaseException:
        src.close()
        remove_quietly(tmp)
        raise
    if not wal:  # the snapshot is whatever the final, complete copy saw
        guard.data_version = pragma(src, "data_version")
        guard.fingerprint = fingerprint(source)
    dst = connect(tmp)
    run_script(dst, "PRAGMA journal_mode = DELETE")
    page_size, pages = pragma(dst, "page_size"), pragma(dst, "page_count")
    dst.close()
    publish(tmp, dest)
    return Snapshot(dest, guard, pages, page_size, restarts, time.perf_counter() - t0)


def _copy_pages(src: apsw.Connection, dest: Path, progress: Progress, *, stepped: bool, allow_restart: bool) -> int:
    dst = connect(dest, create=True)
    restarts = 0
    try:
        run_script(dst, "PRAGMA synchronous = OFF")
        with dst.backup("main", src, "main") as b:
            last_remaining = None
            step = STEP_PAGES if stepped else -1
            while not b.done:
                b.step(step)
                if last_remaining is not None and b.remaining > last_remaining:
                    restarts += 1
                    if allow_restart and restarts >= MAX_RESTARTS:
                        step = -1  # finish in one step: holds the read lock only for the copy
                last_remaining = b.remaining
                progress("snapshot", b.page_count - b.remaining, b.page_count)
    finally:
        dst.close()
    return restarts


# -- backup sets ----------------------------------------------------------------------------------
@dataclass
class LayerResult:
    folder: str
    ok: bool
    error: str = ""


@dataclass
class BackupResult:
    id: str
    manifest: dict[str, Any]
    layers: list[LayerResult] = field(default_factory=list)
    digests: dict[str, TableDigest] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def verified_layers(self) -> int:
        return sum(layer.ok for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "layers": [asdict(x) for x in self.layers],
            "sha256": self.manifest["sha256"],
            "bytes": self.manifest["bytes"],
            "seconds": round(self.seconds, 3),
        }


def backup_id(label: str) -> str:
    """A sortable, unique backup id: UTC time, label, random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in label)[:40] or "backup"
    return f"{stamp}-{safe}-{os.urandom(3).hex()}"


def describe_database(path: Path, with_digests: bool = True) -> tuple[dict[str, Any], dict[str, TableDigest]]:
    """Manifest facts about a database file: header pragmas, per-table row counts and digests."""
    conn = open_source(path)
    try:
        schema = read_schema(conn)
        digests = {spec.table: table_digest(conn, spec) for spec in digest_specs(schema)} if with_digests else {}
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

    def __init__(self, fh: Any) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return int(self.fh.write(data))


def _compress(raw: Path, out: Path, level: int, threads: int, progress: Progress) -> tuple[str, str, int]:
    """Compress ``raw`` into ``out`` (temp name → rename); return (sha256 raw, sha256 compressed, size)."""
    tmp = out.with_name(out.name + ".part")
    total = raw.stat().st_size
    raw_sha = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as fh, raw.open("rb") as inp:
            hw = _HashingWriter(fh)
            cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_content_size=True)
            with cctx.stream_writer(hw, size=total, closefd=False) as zw:  # type: ignore[arg-type]
                done = 0
                while chunk := inp.read(CHUNK * 4):
                    raw_sha.update(chunk)
                    zw.write(chunk)
                    done += len(chunk)
                    progress("compress", done, total)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, out)
    except OSError as err:
        remove_quietly(tmp)
        raise from_os_error(err, f"cannot write backup {out}") from err
    except BaseException:
        remove_quietly(tmp)
        raise
    return raw_sha.hexdigest(), hw.sha.hexdigest(), hw.size


def create_backup(
    snapshot: Path,
    layers: list[Path],
    *,
    label: str,
    source: Path,
    level: int = 3,
    threads: int = 2,
    progress: Progress = _noop,
) -> BackupResult:
    """Store a compressed, checksummed copy of ``snapshot`` in every layer; manifest written last."""
    t0 = time.perf_counter()
    facts, digests = describe_database(snapshot)
    bid = backup_id(label)
    raw_size = snapshot.stat().st_size
    result = BackupResult(bid, {}, digests=digests)
    primary: Path | None = None
    for layer in layers:
        folder = layer / bid
        try:
            needed = raw_size if primary is None else primary.stat().st_size
            if free_bytes(layer) < needed + (1 << 20):
                raise EnvironmentFailure(
                    f"backup layer {layer}: not enough free space ({free_bytes(layer) >> 20} MB free, "
                    f"~{needed >> 20} MB needed)"
                )
            ensure_dir(folder)
            data = folder / DATA
            if primary is None:
                raw_sha, zsha, zsize = _compress(snapshot, data, level, threads, progress)
                result.manifest = {
                    "format": 1,
                    "id": bid,
                    "label": label,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "host": socket.gethostname(),
                    "platform": platform.platform(),
                    "tool": f"failback {__version__}",
                    "source": str(source),
                    "file": DATA,
                    "sha256": {"raw": raw_sha, "compressed": zsha},
                    "bytes": {"raw": raw_size, "compressed": zsize},
                    "zstd_level": level,
                    **facts,
                }
                primary = data
            else:
                _copy_verified(primary, data)
            if sha256_file(data) != result.manifest["sha256"]["compressed"]:
                raise BackupError(f"backup layer {layer}: the copy read back does not match its checksum")
            _write_manifest(folder / MANIFEST, result.manifest)
            result.layers.append(LayerResult(str(layer), True))
        except (OSError, BackupError, EnvironmentFailure) as err:
            remove_quietly(folder / (DATA + ".part"), folder / DATA, folder / MANIFEST)
            _rmdir_quietly(folder)
            result.layers.append(LayerResult(str(layer), False, str(err)))
    result.seconds = time.perf_counter() - t0
    return result


def _copy_verified(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            while chunk := inp.read(CHUNK * 4):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        publish(tmp, dest)
    except OSError as err:
        remove_quietly(tmp)
        raise from_os_error(err, f"cannot write backup {dest}") from err


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    from .files import write_text

    write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _rmdir_quietly(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


# -- reading backups back -----------------------------------------------------------------------
def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of one backup folder; a missing or invalid one means the backup does not exist."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{folder}: no manifest: not a complete backup") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BackupError(f"{folder}: unreadable manifest ({err})") from None
    if not isinstance(data, dict) or data.get("file") != DATA or not isinstance(data.get("sha256"), dict):
        raise BackupError(f"{folder}: invalid manifest")
    return data


def list_backups(layers: list[Path]) -> list[dict[str, Any]]:
    """Every backup with a valid manifest, newest first, with the layers that hold it."""
    found: dict[str, dict[str, Any]] = {}
    for layer in layers:
        if not layer.is_dir():
            continue
        for folder in sorted(layer.iterdir()):
            if not folder.is_dir():
                continue
            try:
                m = read_manifest(folder)
            except BackupError:
                continue
            entry = found.setdefault(m["id"], {"manifest": m, "folders": []})
            entry["folders"].append(str(folder))
    return sorted(found.values(), key=lambda e: e["manifest"]["id"], reverse=True)


def find_backup(layers: list[Path], backup: str) -> list[Path]:
    """Folders holding backup ``backup`` (an id or a unique prefix of one)."""
    matches = [e for e in list_backups(layers) if e["manifest"]["id"].startswith(backup)]
    ids = {e["manifest"]["id"] for e in matches}
    if not matches:
        raise InputError(f"no backup {backup!r}", "list them with `failback backup list`")
    if len(ids) > 1:
        raise InputError(f"backup {backup!r} is ambiguous: {', '.join(sorted(ids))}")
    return [Path(f) for f in matches[0]["folders"]]


def verify_folder(folder: Path, deep: bool = False) -> list[str]:
    """Problems with one stored copy (empty list = verified). ``deep`` restores it to a temp file and
    compares integrity and content digests with the manifest."""
    try:
        m = read_manifest(folder)
    except BackupError as err:
        return [str(err)]
    data = folder / DATA
    if not data.exists():
        return [f"{data}: missing"]
    if sha256_file(data) != m["sha256"]["compressed"]:
        return [f"{data}: checksum mismatch (the stored copy is damaged)"]
    if not deep:
        return []
    tmp = folder / ".verify.sqlite"
    try:
        raw_sha = _decompress(data, tmp)
        if raw_sha != m["sha256"]["raw"]:
            return [f"{data}: decompressed data does not match its checksum"]
        conn = connect(tmp, readonly=True)
        try:
            integrity = conn.execute("PRAGMA integrity_check").get
        finally:
            conn.close()
        if integrity != "ok":
            return [f"{data}: integrity_check: {integrity}"]
        facts, _ = describe_database(tmp)
        if facts["tables"] != m.get("tables"):
            return [f"{data}: content digests differ from the manifest"]
        return []
    finally:
        remove_quietly(tmp, Path(str(tmp) + "-journal"))


def _decompress(data: Path, out: Path) -> str:
    sha = hashlib.sha256()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh, data.open("rb") as inp:
        reader = zstandard.ZstdDecompressor().stream_reader(inp)
        while chunk := reader.read(CHUNK * 4):
            sha.update(chunk)
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return sha.hexdigest()


def restore_backup(layers: list[Path], backup: str, dest: Path, force: bool = False) -> Path:
    """Restore a backup to ``dest``: refuse to overwrite unless ``force``; temp name, check, rename."""
    existing = [p for p in [dest, *(Path(str(dest) + s) for s in SIDE_FILES)] if p.exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} exists; refusing to overwrite", "pass --force, or restore to a new path")
    folders = find_backup(layers, backup)
    good = next((f for f in folders if not verify_folder(f)), None)
    if good is None:
        raise BackupError(f"backup {backup}: no stored copy passes its checksum")
    m = read_manifest(good)
    ensure_dir(dest.parent)
    tmp = dest.with_name(f".{dest.name}.failback-restore")
    try:
        if _decompress(good / DATA, tmp) != m["sha256"]["raw"]:
            raise BackupError(f"backup {m['id']}: decompressed data does not match its checksum")
        conn = connect(tmp, readonly=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").get
        finally:
            conn.close()
        if ok != "ok":
            raise BackupError(f"backup {m['id']}: restored copy fails integrity_check: {ok}")
        for side in existing[1:] if force else []:
            side.unlink()
        publish(tmp, dest)
    except OSError as err:
        remove_quietly(tmp)
        raise from_os_error(err, f"cannot restore to {dest}") from err
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(dest.parent)
    return dest


__all__ = [
    "DIR_MODE",
    "BackupResult",
    "Snapshot",
    "SnapshotGuard",
    "create_backup",
    "describe_database",
    "find_backup",
    "list_backups",
    "restore_backup",
    "take_snapshot",
    "verify_folder",
]


def backup_source(cfg: Any, label: str, progress: Progress = _noop) -> BackupResult:
    """``failback backup create``: snapshot the configured source, store it in every layer."""
    from .files import ensure_dir as _ensure

    work = _ensure(cfg.state_path / "tmp")
    snap = take_snapshot(cfg.source_path, work / f"snapshot-{os.getpid()}.sqlite", progress)
    snap.guard.close()
    try:
        return create_backup(
            snap.path,
            cfg.backup_layers,
            label=label,
            source=cfg.source_path,
            level=cfg.backup.zstd_level,
            threads=cfg.backup.threads,
            progress=progress,
        )
    finally:
        remove_quietly(snap.path)
