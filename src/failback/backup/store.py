"""Backup stores: where the layers keep backup sets. One small interface, ``Store``, and ``LocalStore``, a folder.

A store holds complete backup sets, each under its id and made of named objects (the manifest and the data).
Every name crossing the interface is a plain string, never a path, so an object store (a bucket and a
prefix) can implement it: a set is put whole or not at all (``put``), listed (``ids``), read (``open``,
``sha256``) and deleted (``delete``). ``config_stores`` is the one place a config's layers become stores.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from ..errors import BackupError
from ..files import FILE_MODE, ensure_dir, fsync_dir
from ..guard import BUILDING, delete_backup, publish_folder, remove_stale_folders, temp_folder
from ..snapshot import _require_space

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["LocalStore", "StagedSet", "Store", "StoredSet", "as_store", "config_stores", "stored_set"]

MANIFEST = "manifest.json"  # written last into a set, deleted first: a set without it does not exist


class StagedSet(Protocol):
    """A backup set being put: its objects are written one by one, then published together."""

    def write(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A new object ``name`` of the set; it is durable once the set is published, absent if the block fails."""
        ...

    def sha256(self, name: str) -> str:
        """SHA-256 of a written object as the store now holds it (read back, not remembered)."""
        ...


class Store(Protocol):
    """One backup layer: complete backup sets by id, each a few named objects (see the module docstring)."""

    def describe(self, backup_id: str = "", name: str = "") -> str:
        """Where the store, a set of it, or one object of that set is, for people (a path, a URL)."""
        ...

    def check_room(self, nbytes: int) -> None:
        """Raise EnvironmentFailure, before anything is written, when a new set of ``nbytes`` cannot fit."""
        ...

    def put(self, backup_id: str) -> AbstractContextManager[StagedSet]:
        """Stage the new set ``backup_id``: it is listed only once the block ends without error, and leaves
        nothing a listing sees when the block fails or the process dies in it (``clean`` removes the rest)."""
        ...

    def ids(self) -> list[str]:
        """The ids of the sets the store holds, sorted (an unreadable store holds none)."""
        ...

    def open(self, backup_id: str, name: str) -> AbstractContextManager[IO[bytes]]:
        """Read object ``name`` of set ``backup_id``: FileNotFoundError when it is missing, BackupError when it
        is not a plain stored object."""
        ...

    def sha256(self, backup_id: str, name: str) -> str:
        """SHA-256 of an object as the store holds it (read from the medium, not from a cache, where it can)."""
        ...

    def delete(self, backup_id: str) -> None:
        """Delete a set, its manifest first (an interrupted delete leaves an invisible set), or refuse with
        InputError when it is not a set of this store or holds a file it must never remove."""
        ...

    def clean(self) -> list[str]:
        """Remove what puts killed midway left; return where each was."""
        ...


@dataclass(frozen=True)
class StoredSet:
    """One stored copy of a backup set: a store and the set's id; ``str()`` says where it is."""

    store: Store
    id: str

    def __str__(self) -> str:
        return self.store.describe(self.id)

    def where(self, name: str) -> str:
        return self.store.describe(self.id, name)

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        return self.store.open(self.id, name)

    def sha256(self, name: str) -> str:
        return self.store.sha256(self.id, name)


@contextmanager
def _open_plain(path: Path) -> Iterator[BufferedReader]:
    """Open a stored file for reading: never through a symlink, never a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BackupError(f"{path}: not a regular file")
        yield fh


def _disk_sha256(path: Path) -> str:
    """SHA-256 of a file as the disk holds it: its cached pages are dropped first (where the OS allows)."""
    with _open_plain(path) as fh:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextmanager
def _new_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file written under its own name and fsynced; removed when the block fails. Only for a folder no
    reader sees (a set being built): that folder's rename is the atomic step, and its fsync makes the name
    durable (``LocalStore.put``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _LocalStaged:
    folder: Path

    def write(self, name: str) -> AbstractContextManager[IO[bytes]]:
        return _new_file(self.folder / name)

    def sha256(self, name: str) -> str:
        return _disk_sha256(self.folder / name)


@dataclass(frozen=True)
class LocalStore:
    """A layer that is a folder: one real sub-folder per set, named by its id, built under a hidden temp name
    (``.failback-building-*``; each file fsynced, then the folder once) and renamed whole. Deletes pass through
    :func:`failback.guard.delete_backup`, which refuses a set that holds one of ``precious`` (the source, the
    app config, the target)."""

    folder: Path
    precious: tuple[Path, ...] = field(default=())

    def _set(self, backup_id: str) -> Path:
        if not backup_id or backup_id.startswith(".") or "/" in backup_id or "\0" in backup_id:
            raise ValueError(f"not a backup id: {backup_id!r}")
        return self.folder / backup_id

    def describe(self, backup_id: str = "", name: str = "") -> str:
        where = self._set(backup_id) if backup_id else self.folder
        return str(where / name if name else where)

    def check_room(self, nbytes: int) -> None:
        _require_space(self.folder, nbytes, f"backup layer {self.folder}")

    @contextmanager
    def put(self, backup_id: str) -> Iterator[StagedSet]:
        dest = self._set(backup_id)
        ensure_dir(self.folder)
        remove_stale_folders(self.folder, BUILDING)
        with temp_folder(self.folder, BUILDING) as building:  # a crash leaves no folder a listing sees
            yield _LocalStaged(building)
            fsync_dir(building)  # one fsync makes every name in it durable: its files are fsynced already
            publish_folder(building, dest)

    def ids(self) -> list[str]:
        try:
            children = sorted(self.folder.iterdir())
        except OSError:
            return []
        return [p.name for p in children if not p.name.startswith(".") and not p.is_symlink() and p.is_dir()]

    def open(self, backup_id: str, name: str) -> AbstractContextManager[IO[bytes]]:
        return _open_plain(self._set(backup_id) / name)

    def sha256(self, backup_id: str, name: str) -> str:
        return _disk_sha256(self._set(backup_id) / name)

    def delete(self, backup_id: str) -> None:
        delete_backup(self._set(backup_id), self.folder, self.precious, first=MANIFEST)

    def clean(self) -> list[str]:
        return [str(p) for p in remove_stale_folders(self.folder, BUILDING)]


def as_store(layer: Store | str | os.PathLike[str]) -> Store:
    """A layer as a store: a folder path is a LocalStore."""
    return LocalStore(Path(layer)) if isinstance(layer, str | os.PathLike) else layer


def stored_set(copy: StoredSet | str | os.PathLike[str]) -> StoredSet:
    """A stored copy: a set's folder path is that set of a LocalStore on its parent folder."""
    if isinstance(copy, StoredSet):
        return copy
    folder = Path(copy)
    return StoredSet(LocalStore(folder.parent), folder.name)


def config_stores(cfg: Config) -> list[Store]:
    """The stores of a config's backup layers (``[backup] dir``, then the mirrors), each refusing to delete a
    set that holds the source, the app config or the target."""
    precious = (cfg.source_path, cfg.app_config_path, cfg.target_path)
    return [LocalStore(layer, precious) for layer in cfg.backup_layers]
