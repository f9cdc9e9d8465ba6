"""Durable file writes: temp name in the same folder → write → fsync → rename → fsync the folder.

Every file failback writes goes through here, so a crash or a full disk never leaves a partial file under
a real name, and files are created readable by their owner only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError, from_os_error

FILE_MODE = 0o600
DIR_MODE = 0o700
CHUNK = 1 << 20


def tmp_name(path: Path, tag: str = "tmp") -> Path:
    """A hidden temp name beside ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.failback-{tag}-{os.getpid()}")


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fsync_path(folder)


def ensure_dir(folder: Path) -> Path:
    """Create ``folder`` (and missing parents, each owner-only: ``mkdir(parents=True)`` would give the parents
    default permissions); an OSError becomes a clean error. Existing folders are left as they are."""
    try:
        if not folder.is_dir():
            if folder.parent != folder and not folder.parent.is_dir():
                ensure_dir(folder.parent)
            folder.mkdir(mode=DIR_MODE, exist_ok=True)
    except OSError as err:
        raise from_os_error(err, f"cannot create folder {folder}") from err
    return folder


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = FILE_MODE, *, replace: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it is fsynced and renamed to ``path``; on failure nothing remains.
    With ``replace=False`` an existing ``path`` is never replaced, even one created while writing: the file is
    linked to its name (which fails when the name is taken) instead of renamed over it."""
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            tmp.unlink()
        fsync_dir(path.parent)
    except FileExistsError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"{path}: already exists; not overwritten", "move it away, or write to another name") from None
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise from_os_error(err, f"cannot write {path}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)


def write_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically and durably."""
    write_bytes(path, text.encode("utf-8"), mode)


def write_new_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically and durably; InputError (exit 2) when ``path`` exists."""
    with atomic_writer(path, mode, replace=False) as fh:
        fh.write(text.encode("utf-8"))


def publish(tmp: Path, path: Path) -> None:
    """fsync a finished temp file, rename it to ``path`` and fsync the folder."""
    try:
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        raise from_os_error(err, f"cannot publish {path}") from err


def remove_quietly(*paths: Path) -> None:
    """Delete files that may not exist (temp files on the way out). A path that does not exist is never an
    error, whatever the OS says about it (Linux answers EROFS for a missing file on a read-only mount, and
    that error would hide the one that matters); a file that exists and cannot be deleted still raises."""
    for p in paths:
        try:
            p.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
        except OSError:
            if os.path.lexists(p):
                raise


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_xxh3(path: Path) -> str:
    """Hex XXH3-128 of a file: a fast identity check (not a security checksum; see sha256_file)."""
    import xxhash

    h = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK * 8):
            h.update(chunk)
    return h.hexdigest()


def copy_file(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically (temp, fsync, rename), owner-only."""
    with atomic_writer(dest) as out, src.open("rb") as inp:
        shutil.copyfileobj(inp, out, CHUNK)


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system holding ``folder`` (its nearest existing parent)."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free
