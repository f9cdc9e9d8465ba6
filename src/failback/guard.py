"""Every destructive act passes here: replacing a target, rewriting the app config, putting a replaced file
back, deleting a backup, removing temp files and the temp folders a crash left behind.

Each act re-checks, at the moment of acting and on every path (first run, resume, abort), the invariants
that keep data safe:

1. the source holds nothing the snapshot does not (cheap evidence first; content digests when it says
   "touched");
2. the file being replaced is not the source, the app config, a backup, nor inside the state or a backup
   folder — compared by resolved path and by (st_dev, st_ino): hard links, symlinks, ``./x`` vs ``x``;
3. the file published is the one the app config names for the rollback provider (``[app] path_key``);
4. a replaced file's ``-wal``/``-shm``/``-journal`` move aside with it (and come back with it);
5. this process holds the run lock.

A refusal raises a one-line FailbackError before anything is changed; inside a run it is audited first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from .audit import AuditLog
from .db.connect import SIDE_FILES, connect, open_source
from .db.digest import database_digests
from .db.schema import digest_specs, read_schema
from .errors import ConfigError, FailbackError, InputError, LockedError, SourceChanged, from_os_error
from .files import copy_file, fsync_dir, publish, remove_quietly, write_bytes
from .journal import RunLock
from .pipeline.switch import current_provider, switch_provider

if TYPE_CHECKING:
    from .config import Config
    from .snapshot import SnapshotGuard

JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # the first bytes of a rollback journal that holds a transaction
# failback's own temp folders (hidden: nothing lists them), the only ones remove_stale_folders deletes
BUILDING = ".failback-building-"  # a backup folder being built in a layer, renamed to its id once complete
CALIBRATING = ".calibrate-"  # the calibration's sample, in the state folder
PAYING = ".failback-debt-"  # a verification debt's restored snapshot, in the state folder
FTS_SIDE = ".failback-fts-"  # a side process's FTS build, beside the target being built
TEMP_FOLDERS = (BUILDING, CALIBRATING, PAYING, FTS_SIDE)


# -- identity -------------------------------------------------------------------------------------
def sidecars(path: Path) -> list[Path]:
    """The files SQLite keeps beside a database: -wal, -shm, -journal."""
    return [Path(f"{path}{s}") for s in SIDE_FILES]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _realpath(path: Path, folders: dict[str, str]) -> str:
    """``os.path.realpath(path)`` (no error on a symlink loop), its folder resolved once per check (``folders``:
    folder -> resolved, shared by the check's names): the name itself is then one lstat, and resolved in full
    only when it is a symlink."""
    head, tail = os.path.split(path)
    if not head or tail in ("", ".", ".."):
        return os.path.realpath(path)
    if head not in folders:
        folders[head] = os.path.realpath(head)
    joined = os.path.join(folders[head], tail)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


class _Resolved:
    """A path as one check sees it: resolved once (``folders``: the check's resolved folders); its (device,
    inode), and its ancestors', read once when asked."""

    def __init__(self, path: Path, folders: dict[str, str]) -> None:
        self.path = path
        self.real = _realpath(path, folders)

    @functools.cached_property
    def ident(self) -> tuple[int, int] | None:
        return _identity(self.path)

    @functools.cached_property
    def ancestors(self) -> set[tuple[int, int] | None]:
        return {_identity(p) for p in Path(self.real).parents}

    def same(self, other: _Resolved) -> bool:
        """Whether both names reach one file: the same resolved path, or the same (device, inode)."""
        return self.real == other.real or (self.ident is not None and self.ident == other.ident)

    def inside(self, folder: _Resolved) -> bool:
        """Whether this is ``folder`` or lies inside it: by resolved path, or through an ancestor with the
        folder's (device, inode) (another name for the folder, a bind mount)."""
        if Path(self.real).is_relative_to(folder.real):
            return True
        return folder.ident is not None and folder.ident in self.ancestors


def same_file(a: Path, b: Path) -> bool:
    """Whether two names reach one file: the same resolved path, or the same (device, inode)."""
    folders: dict[str, str] = {}
    return _Resolved(a, folders).same(_Resolved(b, folders))


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it: by resolved path, or through an ancestor with the
    folder's (device, inode) (another name for the folder, a bind mount)."""
    folders: dict[str, str] = {}
    return _Resolved(path, folders).inside(_Resolved(folder, folders))


@dataclass(frozen=True)
class Protected:
    """What no destructive act may touch: files (with their sidecars) and whole folders, each with a label."""

    files: tuple[tuple[str, Path], ...] = ()
    folders: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def of(cls, cfg: Config | None, source: Path | None = None) -> Protected:
        """The source (``source``, or the config's), the app config, the state folder and every backup layer."""
        files = [("the source database", source)] if source is not None else []
        if cfg is None:
            return cls(tuple(files))
        files += [("the source database", cfg.source_path), ("the app config", cfg.app_config_path)]
        folders = [("the state folder", cfg.state_path), *(("a backup folder", p) for p in cfg.backup_layers)]
        return cls(tuple(files), tuple(folders))

    def conflict(self, path: Path) -> str | None:
        """Why ``path`` must not be replaced or removed, or None."""
        folders: dict[str, str] = {}  # every name's folder, resolved once for the whole check
        me = _Resolved(path, folders)
        for label, f in self.files:
            for name in (f, *sidecars(f)):
                if me.same(_Resolved(name, folders)):
                    return f"it is {label} {name}" if name == f else f"it is a side file of {label} {f}"
        for label, folder in self.folders:
            if me.inside(_Resolved(folder, folders)):
                return f"it lies inside {label} {folder}"
        return None


def check_replaceable(path: Path, protected: Protected) -> None:
    """Refuse (exit 2) to replace a file that is, or lies among, what must never be replaced."""
    why = protected.conflict(path)
    if why is not None:
        raise InputError(
            f"refusing to replace {path}: {why}",
            "name the file the app loads: not the source, the app config, a backup, nor one in the state or "
            "backup folders",
        )


def check_no_hot_journal(target: Path) -> None:
    """Refuse a target beside which a writer left a hot -journal: SQLite would roll it back into whatever
    file takes the target's place."""
    journal = Path(f"{target}-journal")
    try:
        with journal.open("rb") as fh:
            head = fh.read(len(JOURNAL_MAGIC))
    except FileNotFoundError:
        return
    except OSError as err:
        raise from_os_error(err, f"cannot read {journal}") from err
    if head == JOURNAL_MAGIC:
        raise InputError(
            f"{target}: a writer stopped mid-transaction and left a hot {journal.name}; replacing the file now "
            "would have SQLite roll that journal into the new one",
            "open it once (`sqlite3 FILE 'PRAGMA quick_check'`) so SQLite rolls the journal back, then run again",
        )


def configured_target(cfg: Config) -> Path | None:
    """The file the app config names for the rollback provider (``[app] path_key``; relative to the app
    config's folder), or None when failback.toml names no such key."""
    key = cfg.app.path_key
    if key is None:
        return None
    value = current_provider(cfg.app_config_path, key)
    if not value:
        raise ConfigError(
            f"{cfg.app_config_path} sets no {key}: cannot tell which file the app loads under {cfg.app.rollback_value}",
            f"set {key} in the app config, or remove [app] path_key from failback.toml",
        )
    return cfg.app_config_path.parent / value


def check_published(cfg: Config) -> None:
    """Refuse (exit 2) when the app config names another file than the one the rollback publishes."""
    named = configured_target(cfg)
    if named is not None and not same_file(named, cfg.target_path):
        raise ConfigError(
            f"the app config names {named} ({cfg.app.path_key}) but [target] path is {cfg.target_path}: the app "
            "would load another file than the one rolled back",
            f"make [target] path in failback.toml and {cfg.app.path_key} name the same file",
        )


# -- the source -----------------------------------------------------------------------------------
def schema_fingerprint(path: Path) -> str:
    """SHA-256 of a database's schema SQL and header values (what content digests do not cover)."""
    conn = connect(path, readonly=True)
    try:
        rows = sorted(conn.execute("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema"))
        head = [conn.execute(f"PRAGMA {p}").get for p in ("user_version", "application_id")]
    finally:
        conn.close()
    return hashlib.sha256(json.dumps([rows, head]).encode()).hexdigest()


def table_contents(path: Path) -> dict[str, dict[str, Any]]:
    """Row count and content digest of every table, in the form a backup manifest records them."""
    conn = open_source(path)
    try:
        specs = digest_specs(read_schema(conn))
    finally:
        conn.close()
    return {t: {"rows": d.rows, "digest": d.digest} for t, d in database_digests(path, specs).items()}


@dataclass
class SourceEvidence:
    """What the snapshot saw: its guard (data_version, file fingerprints) and, when recorded, the content."""

    guard: SnapshotGuard
    tables: dict[str, Any] | None  # the backup manifest's per-table rows and digests (None: not taken)
    schema_sha256: str | None

    def content_same(self) -> bool:
        """Whether the live source holds exactly the recorded content (False when nothing was recorded)."""
        if self.tables is None or self.schema_sha256 is None or not self.guard.source.exists():
            return False
        try:
            source = self.guard.source
            return table_contents(source) == self.tables and schema_fingerprint(source) == self.schema_sha256
        except (FailbackError, apsw.Error, UnicodeDecodeError, OSError):
            return False


# -- moving files ---------------------------------------------------------------------------------
def _move(src: Path, dest: Path) -> None:
    """Rename, or copy and delete across file systems."""
    try:
        os.replace(src, dest)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        copy_file(src, dest)
        src.unlink()


def move_sidecars(frm: Path, to: Path, overwrite: bool = True) -> list[Path]:
    """Move ``frm``'s -wal/-shm/-journal to the same suffixes of ``to``; returns where they went. With
    ``overwrite`` False a side file already at the destination stays (and its counterpart is not moved)."""
    moved = []
    for src, dest in zip(sidecars(frm), sidecars(to), strict=True):
        if not (src.exists() or src.is_symlink()) or (not overwrite and os.path.lexists(dest)):
            continue
        _move(src, dest)
        moved.append(dest)
    if moved:
        fsync_dir(frm.parent)
        fsync_dir(to.parent)
    return moved


def publish_over(tmp: Path, target: Path) -> None:
    """Publish ``tmp`` as ``target`` (``export --force``, ``backup restore --force``). The old file's side
    files are moved aside first (a stale -wal would be replayed into the new file) and deleted once the new
    file is durable; if the publish fails they are put back."""
    aside = target.with_name(f".{target.name}.failback-replaced-{os.getpid()}")
    try:
        moved = move_sidecars(target, aside)
    except OSError as err:
        raise from_os_error(err, f"cannot move the side files of {target} aside") from err
    try:
        publish(tmp, target)
    except BaseException:
        move_sidecars(aside, target, overwrite=False)
        raise
    remove_quietly(*moved)


# -- one run's acts -------------------------------------------------------------------------------
class Guard:
    """The destructive acts of one run (or its abort): each checks the invariants just before acting and
    audits a refusal."""

    def __init__(self, cfg: Config, audit: AuditLog, run_id: str, lock: RunLock) -> None:
        self.cfg, self.audit, self.run_id, self.lock = cfg, audit, run_id, lock
        self.protected = Protected.of(cfg)

    @contextlib.contextmanager
    def _check(self, check: str, *, act: bool = True) -> Iterator[None]:
        """Run the checks in the block; a refusal is audited and re-raised. Before an ``act`` (it comes after the
        block, so its own failures, a full disk, are not taken for refusals) the run's audit records are made
        durable (``AuditLog.sync``)."""
        try:
            if not self.lock.held:
                raise LockedError(
                    f"run {self.run_id} does not hold the lock {self.lock.path}; nothing was changed",
                    "report this: a destructive act was attempted outside a locked run",
                )
            yield
        except FailbackError as err:
            self.audit.append("guard.refused", {"check": check, "error": err.message}, self.run_id)
            raise
        if act:
            self.audit.sync()  # the run's records so far are on disk before the act

    def check_target(self) -> None:
        """The target may be replaced: not protected, not beside a hot journal, the file the app config names."""
        with self._check("target", act=False):
            check_replaceable(self.cfg.target_path, self.protected)
            check_no_hot_journal(self.cfg.target_path)
            check_published(self.cfg)

    def check_source(self, evidence: SourceEvidence) -> None:
        """Refuse (exit 5) when the source holds anything the snapshot does not. Cheap evidence first
        (data_version, file fingerprints); when it says "touched", the content itself decides."""
        with self._check("source", act=False):
            why = evidence.guard.changed()
            if why is None:
                return
            if not evidence.content_same():
                raise SourceChanged(f"source changed after the snapshot ({why}); nothing was switched")
        self.audit.append("switch.source-touched", {"evidence": why, "content": "unchanged"}, self.run_id)

    def keep_previous(self, kept: Path) -> None:
        """Keep the current target (hard link, else a copy) and move its side files to ``kept``'s suffixes."""
        target = self.cfg.target_path
        with self._check("keep"):
            check_replaceable(target, self.protected)
        try:
            if target.exists() and not kept.exists():
                try:
                    os.link(target, kept)
                except OSError:
                    copy_file(target, kept)
            move_sidecars(target, kept)
        except OSError as err:
            raise from_os_error(err, f"cannot keep {target} in {kept.parent}") from err

    def put_in_place(self, new: Path) -> None:
        """Rename the verified ``new`` file over the target (whose previous state was kept)."""
        with self._check("target"):
            check_replaceable(self.cfg.target_path, self.protected)
            check_published(self.cfg)
        publish(new, self.cfg.target_path)

    def rewrite_app_config(self, before: Path) -> tuple[str | None, str]:
        """Switch the app's provider key (the previous bytes saved to ``before``); returns (old, new)."""
        app = self.cfg.app
        with self._check("app-config"):
            check_published(self.cfg)
        return switch_provider(self.cfg.app_config_path, app.key, app.rollback_value, before)

    def restore_app_config(self, before: Path) -> None:
        """Put the app config's saved bytes back."""
        path = self.cfg.app_config_path
        with self._check("app-config"):
            if not before.is_file() or not inside(before, self.cfg.state_path):
                raise InputError(f"no saved app config at {before}; {path} left as it is", "see `failback status`")
        try:
            write_bytes(path, before.read_bytes(), path.stat().st_mode & 0o777)
        except OSError as err:
            raise from_os_error(err, f"cannot restore {path}") from err

    def put_back(self, kept: Path, ours: bool) -> str:
        """Undo ``keep_previous`` and ``put_in_place``: when the target is this run's file (``ours``), the kept
        file returns (or, when there was none, the target goes); the kept side files return where the target
        has none. Returns what was done."""
        target = self.cfg.target_path
        with self._check("put-back"):
            check_replaceable(target, self.protected)
        done = []
        try:
            if ours and kept.exists():
                os.replace(kept, target)
                done.append(f"{target.name} restored")
            elif ours:
                target.unlink()
                done.append(f"{target.name} removed")
            moved = move_sidecars(kept, target, overwrite=False)
            fsync_dir(target.parent)
        except OSError as err:
            raise from_os_error(err, f"cannot put {target} back") from err
        if moved:
            done.append(f"{len(moved)} side file(s) of {target.name} restored")
        return ", ".join(done)

    def remove_temp(self, run_dir: Path, *paths: Path) -> None:
        """Delete this run's temp files: each must lie in ``run_dir`` or carry failback's temp name beside the
        target, and be neither the target, a protected file nor inside a backup folder. A path that does not
        exist is no act: it is not checked."""
        paths = tuple(p for p in paths if os.path.lexists(p))
        target = self.cfg.target_path
        layers = tuple(f for f in self.protected.folders if f[1] != self.cfg.state_path)
        never = Protected((*self.protected.files, ("the target", target)), layers)
        with self._check("temp"):
            for p in paths:
                beside = p.name.startswith(f".{target.name}.failback-") and same_file(p.parent, target.parent)
                why = never.conflict(p) or (None if beside or inside(p, run_dir) else "not a temp file of this run")
                if why is not None:
                    raise InputError(
                        f"refusing to remove {p}: {why}", "report this: the run's temp files name one it must keep"
                    )
        remove_quietly(*paths)


def delete_backup(folder: Path, layer: Path, precious: Sequence[Path], first: str) -> None:
    """Delete one backup folder: it must be a real folder directly inside the backup layer ``layer`` and hold
    none of ``precious`` (the source, the app config, the target). ``first`` (the manifest) goes first, so an
    interrupted delete leaves an invalid, invisible folder."""
    holds = [p for p in precious if inside(p, folder)]
    if folder.is_symlink() or not folder.is_dir() or not same_file(folder.parent, layer) or holds:
        why = f"it holds {holds[0]}" if holds else "not a backup folder directly inside a backup layer"
        raise InputError(f"refusing to delete {folder}: {why}", "check [backup] dir and mirrors in failback.toml")
    (folder / first).unlink()
    fsync_dir(folder)
    shutil.rmtree(folder)
    fsync_dir(folder.parent)


# -- temp folders ---------------------------------------------------------------------------------
def _own_temp(prefix: str) -> None:
    if prefix not in TEMP_FOLDERS:
        raise ValueError(f"{prefix!r} is not one of failback's temp folder names")


def _remove_if_same(path: Path, fd: int) -> bool:
    """Remove the folder ``path`` if it still is the folder open as ``fd`` (not renamed away meanwhile)."""
    st = os.fstat(fd)
    if _identity(path) != (st.st_dev, st.st_ino):
        return False
    shutil.rmtree(path)
    return True


@contextlib.contextmanager
def temp_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new owner-only folder ``<parent>/<prefix><random>``, flock-ed while its creator works in it: the kernel
    drops the lock when the creator dies, which is how ``remove_stale_folders`` tells a crash's leftover from a
    live run's work (whatever run lock, if any, the creator holds). Removed on the way out unless it was renamed
    away (a finished backup folder)."""
    _own_temp(prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: its leftovers are never removed
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield folder
    finally:
        try:
            _remove_if_same(folder, fd)
        finally:
            os.close(fd)


def remove_stale_folders(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders ``<parent>/<prefix>…`` (one of ``TEMP_FOLDERS``) whose creator is gone: their lock can
    be taken. One whose creator is alive, or whose lock cannot be taken on its file system, or that cannot be
    removed, stays: nothing is deleted on a guess. Returns what was removed."""
    _own_temp(prefix)
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(prefix))
    except OSError:
        return []
    removed = []
    for name in names:
        path = parent / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, a symlink, or not a folder
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _remove_if_same(path, fd):
                removed.append(path)
        except OSError:
            continue  # its creator holds the lock, or the file system cannot say: kept
        finally:
            os.close(fd)
    if removed:
        fsync_dir(parent)
    return removed


def publish_folder(folder: Path, dest: Path) -> None:
    """Rename a finished temp folder (its files already durable) to ``dest``, which must not exist, and make the
    rename durable: the folder appears whole or not at all."""
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "already exists", str(dest))
    os.rename(folder, dest)
    fsync_dir(dest.parent)
