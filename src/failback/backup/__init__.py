"""Backup sets: ``sets`` (create, list, verify, restore), ``store`` (where a layer keeps them: the ``Store``
interface and ``LocalStore``), ``manifest``, ``retention`` (the policy, pure), ``keep`` (what runs still need)
and ``prune``."""

from .manifest import read_manifest
from .prune import PruneResult, protected_backups, prune_backups
from .sets import (
    BackupResult,
    FolderCheck,
    LayerResult,
    RestoreResult,
    backup_source,
    check_folder,
    create_backup,
    describe_database,
    find_backup,
    list_backups,
    restore_backup,
    verify_folder,
)
from .store import LocalStore, Store, StoredSet, config_stores

__all__ = [
    "BackupResult",
    "FolderCheck",
    "LayerResult",
    "LocalStore",
    "PruneResult",
    "RestoreResult",
    "Store",
    "StoredSet",
    "backup_source",
    "check_folder",
    "config_stores",
    "create_backup",
    "describe_database",
    "find_backup",
    "list_backups",
    "protected_backups",
    "prune_backups",
    "read_manifest",
    "restore_backup",
    "verify_folder",
]
