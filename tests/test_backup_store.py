"""Backup stores: the ``Store`` interface carries no paths — a store that keeps its sets in memory (as an object
store keeps them in a bucket) takes a backup beside a local folder, is listed, checked and restored from."""

from __future__ import annotations

import errno
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from failback.backup.manifest import DATA
from failback.backup.sets import check_folder, create_backup, list_backups, restore_backup
from failback.backup.store import MANIFEST, LocalStore, StoredSet
from failback.guard import BUILDING, table_contents
from failback.snapshot import take_snapshot


class MemoryStaged:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @contextmanager
    def write(self, name: str) -> Iterator[io.BytesIO]:
        buf = io.BytesIO()
        yield buf
        self.objects[name] = buf.getvalue()

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.objects[name]).hexdigest()


class MemoryStore:
    """A store without a file system: each set is a dict of named objects, published when ``put`` ends."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, bytes]] = {}

    def describe(self, backup_id: str = "", name: str = "") -> str:
        return "/".join(["mem:", *(p for p in (backup_id, name) if p)])

    def check_room(self, nbytes: int) -> None:
        pass

    @contextmanager
    def put(self, backup_id: str) -> Iterator[MemoryStaged]:
        staged = MemoryStaged()
        yield staged
        self.sets[backup_id] = staged.objects

    def ids(self) -> list[str]:
        return sorted(self.sets)

    @contextmanager
    def open(self, backup_id: str, name: str) -> Iterator[io.BytesIO]:
        try:
            yield io.BytesIO(self.sets[backup_id][name])
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "missing", self.describe(backup_id, name)) from None

    def sha256(self, backup_id: str, name: str) -> str:
        return hashlib.sha256(self.sets[backup_id][name]).hexdigest()

    def delete(self, backup_id: str) -> None:
        del self.sets[backup_id]

    def clean(self) -> list[str]:
        return []


def test_a_store_without_paths_holds_a_layer(native_db: Path, tmp_path: Path) -> None:
    snap = take_snapshot(native_db, tmp_path / "snap.sqlite")
    snap.guard.close()
    local, memory = LocalStore(tmp_path / "primary"), MemoryStore()
    result = create_backup(snap.path, [local, memory], label="x", source=native_db)
    assert [layer.ok for layer in result.layers] == [True, True]
    assert result.layers[1].folder == "mem:"
    (entry,) = list_backups([local, memory])
    assert [str(c) for c in entry["folders"]] == [str(tmp_path / "primary" / result.id), f"mem:/{result.id}"]
    assert check_folder(StoredSet(memory, result.id), deep=True, work=tmp_path).problems == []

    (tmp_path / "primary" / result.id / DATA).write_bytes(b"damaged")  # the local copy goes bad
    restored = restore_backup([local, memory], result.id, tmp_path / "restored.sqlite")
    assert restored.copy == f"mem:/{result.id}"
    assert restored.skipped[0][0] == str(tmp_path / "primary" / result.id)
    assert table_contents(tmp_path / "restored.sqlite") == table_contents(snap.path)


def test_a_local_set_holds_its_objects_under_their_names_and_a_failed_put_leaves_nothing(tmp_path: Path) -> None:
    """Objects are written under their own names inside the hidden building folder (no temp names left), and
    the set appears only when ``put`` ends; a failed write removes its object, a failed put its folder."""
    layer = tmp_path / "layer"
    store = LocalStore(layer)
    with store.put("20200101T000000-x-000001") as staged:
        with staged.write(DATA) as out:
            out.write(b"data")
        with staged.write(MANIFEST) as out:
            out.write(b"{}")
        (building,) = layer.iterdir()
        assert building.name.startswith(BUILDING) and store.ids() == []
        assert sorted(p.name for p in building.iterdir()) == sorted([MANIFEST, DATA])
    assert store.ids() == ["20200101T000000-x-000001"]
    assert sorted(p.name for p in (layer / store.ids()[0]).iterdir()) == sorted([MANIFEST, DATA])
    assert store.sha256(store.ids()[0], DATA) == hashlib.sha256(b"data").hexdigest()

    with pytest.raises(OSError, match="write failed"), store.put("20200101T000000-x-000002") as staged:
        try:
            with staged.write(DATA) as out:
                out.write(b"half")
                raise OSError(errno.EIO, "write failed")
        finally:
            (building,) = (p for p in layer.iterdir() if p.name.startswith(BUILDING))
            assert list(building.iterdir()) == []  # the failed object is gone
    assert [p.name for p in layer.iterdir()] == ["20200101T000000-x-000001"]  # and the failed set's folder
