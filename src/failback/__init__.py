"""failback: roll an application's SQLite data back from a native provider to sql.js, safely and verifiably.

The public API (``__all__``; docs/python-api.md) and ``__version__`` are loaded on first use (PEP 562), so
``import failback`` loads neither apsw, pydantic nor rich, nor importlib.metadata (the errors, which import
nothing, are imported at once). Four API functions share their name with a subpackage (``verify``, ``plan``,
``assess``, ``report``): ``failback.verify`` is the function, and importing the subpackage does not rebind
it; reach the subpackages with ``from failback.plan import model``, not ``import failback.plan.model as model``.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module

from .errors import (
    BackupError,
    ConfigError,
    EngineError,
    EnvironmentFailure,
    FailbackError,
    InputError,
    Interrupted,
    LockedError,
    NodeNotFound,
    NotADatabaseError,
    RiskRefused,
    SourceChanged,
    SourceDamaged,
    UnsupportedSchemaError,
    VerificationFailed,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (8 ms)
if TYPE_CHECKING:
    from typing import Any

    __version__: str
    from .api import (
        Aborted,
        Assessment,
        BackupCheck,
        BackupResult,
        Baseline,
        ChainCheck,
        CheckResult,
        Config,
        DebtPayment,
        DrillResult,
        Evaluation,
        ExportResult,
        Finding,
        FleetPlan,
        FleetState,
        Hold,
        NativeSurvey,
        Plan,
        Profile,
        ProtectedBackup,
        PruneResult,
        RestoreResult,
        RunResult,
        Status,
        StoredBackup,
        Verification,
        WatchResult,
        abort,
        assess,
        backup_warnings,
        check,
        create_backup,
        create_demo,
        create_demo_fleet,
        data_findings,
        drill,
        export,
        fleet_approve,
        fleet_plan,
        fleet_report,
        fleet_resume,
        fleet_run,
        fleet_status,
        fleet_summary,
        hold,
        init,
        list_backups,
        load_config,
        pay_debt,
        plan,
        probe,
        prune_backups,
        record_baseline,
        release,
        report,
        restore_backup,
        resume,
        rollback,
        status,
        step_summary,
        verify,
        verify_audit,
        verify_backup,
        watch,
    )

__all__ = [
    "Aborted",
    "Assessment",
    "BackupCheck",
    "BackupError",
    "BackupResult",
    "Baseline",
    "ChainCheck",
    "CheckResult",
    "Config",
    "ConfigError",
    "DebtPayment",
    "DrillResult",
    "EngineError",
    "EnvironmentFailure",
    "Evaluation",
    "ExportResult",
    "FailbackError",
    "Finding",
    "FleetPlan",
    "FleetState",
    "Hold",
    "InputError",
    "Interrupted",
    "LockedError",
    "NativeSurvey",
    "NodeNotFound",
    "NotADatabaseError",
    "Plan",
    "Profile",
    "ProtectedBackup",
    "PruneResult",
    "RestoreResult",
    "RiskRefused",
    "RunResult",
    "SourceChanged",
    "SourceDamaged",
    "Status",
    "StoredBackup",
    "UnsupportedSchemaError",
    "Verification",
    "VerificationFailed",
    "WatchResult",
    "__version__",
    "abort",
    "assess",
    "backup_warnings",
    "check",
    "create_backup",
    "create_demo",
    "create_demo_fleet",
    "data_findings",
    "drill",
    "export",
    "fleet_approve",
    "fleet_plan",
    "fleet_report",
    "fleet_resume",
    "fleet_run",
    "fleet_status",
    "fleet_summary",
    "hold",
    "init",
    "list_backups",
    "load_config",
    "pay_debt",
    "plan",
    "probe",
    "prune_backups",
    "record_baseline",
    "release",
    "report",
    "restore_backup",
    "resume",
    "rollback",
    "status",
    "step_summary",
    "verify",
    "verify_audit",
    "verify_backup",
    "watch",
]


def __getattr__(name: str) -> Any:
    """Import the public API when one of its names is first used; read the installed version when first asked."""
    if name == "__version__":
        value: Any = _installed_version()
    elif name in __all__:
        value = getattr(import_module(".api", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("failback")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0"


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package, whose public API names a submodule import does not rebind (``failback.verify`` stays the
    function after ``failback.verify``, the module, is imported)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return  # the import system binding a subpackage (plan, verify, assess): it stays in sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
