"""``failback drill``: a full rehearsal of a rollback on copies, to practise without performing one.

The drill copies the app's provider config and its sql.js file into a scratch folder, points a copy of the config
at them (backups and the run's state in the scratch folder too), and runs every step — snapshot of the live source
(only read, as a rollback reads it), backup, assess, convert, verify, the old app's statements, the switch (of
the copies) and the post-check. The gate is passed on the drill's behalf, and what it would have asked is
recorded. No file of the app changes: their sha256 are compared before and after. The drill report (time per
step against the estimate, what would have blocked, what the on-call person would have had to decide) is written
in the scratch folder, and a ``drill`` event in the app's audit log.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audit import AuditLog
from ..config import Config
from ..errors import VerificationFailed
from ..files import copy_file, ensure_dir, sha256_file, write_text
from ..journal import RunDir, StepState
from .driver import Outcome, Rollback
from .steps import Options, Progress
from .switch import current_provider

BLOCKED = 3  # the exit code of a drill whose rollback would have been blocked (as `failback check` uses it)
DRILL_REASON = "drill: a rehearsal on copies"
SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass
class DrillResult:
    """What a drill found: its folder, the rehearsal's outcome, each step's time against its estimate, what would
    have blocked a real rollback, what a person would have had to decide, and whether the app's files held."""

    drill_id: str
    folder: Path
    outcome: Outcome
    steps: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    app_files: dict[str, str | None] = field(default_factory=dict)  # path -> sha256 (None: absent), before = after
    app_unchanged: bool = True

    @property
    def exit_code(self) -> int:
        """0: a rollback now would go through; 3: it would have been blocked; else the drill's own failure."""
        if not self.app_unchanged:
            return 70
        err = self.outcome.error
        if err is not None and err.exit_code not in (1, BLOCKED, 5):
            return err.exit_code
        return BLOCKED if self.blocked else 0

    @property
    def report_path(self) -> Path:
        return self.folder / "drill-report.md"

    def to_json(self) -> dict[str, Any]:
        return {
            "drill": self.drill_id,
            "folder": str(self.folder),
            "exit_code": self.exit_code,
            "status": self.outcome.status,
            "run": self.outcome.run_id,
            "steps": self.steps,
            "blocked": self.blocked,
            "decisions": self.decisions,
            "app_files": self.app_files,
            "app_unchanged": self.app_unchanged,
        }


def app_files(cfg: Config) -> list[Path]:
    """Every file of the app a drill must leave as it is: the source and its sidecars, the target, the config."""
    source = cfg.source_path
    return [Path(f"{source}{s}") for s in SIDE_SUFFIXES] + [cfg.target_path, cfg.app_config_path]


def _hashes(paths: list[Path]) -> dict[str, str | None]:
    return {str(p): sha256_file(p) if p.exists() else None for p in paths}


def drill_config(cfg: Config, folder: Path) -> Config:
    """``cfg`` pointed at copies in ``folder``: the app config and target copied there (the target at the place
    the copied config names, when it names one inside its folder), backups and run state there too."""
    app = ensure_dir(folder / "app")
    config_copy = app / cfg.app_config_path.name
    copy_file(cfg.app_config_path, config_copy)
    path_key = cfg.app.path_key
    named = current_provider(cfg.app_config_path, path_key) if path_key else None
    inside = named is not None and not Path(named).is_absolute() and ".." not in Path(named).parts
    target = app / (named if inside and named else cfg.target_path.name)
    ensure_dir(target.parent)
    if cfg.target_path.exists():
        copy_file(cfg.target_path, target)
    layers = [folder / "backups" / f"layer{i}" for i in range(len(cfg.backup_layers))]
    drilled = cfg.model_copy(
        update={
            "target": cfg.target.model_copy(update={"path": target}),
            "app": cfg.app.model_copy(update={"config": config_copy, "path_key": path_key if inside else None}),
            "backup": cfg.backup.model_copy(update={"dir": layers[0], "mirrors": layers[1:]}),
            "state_dir": folder / "state",
        }
    )
    drilled.base = cfg.base
    return drilled


def run_drill(
    cfg: Config, config_path: Path, *, folder: Path | None = None, progress: Progress | None = None
) -> DrillResult:
    """Rehearse a rollback of ``cfg``'s app on copies in ``folder`` (default: a new folder under the state
    folder's ``drills/``); nothing of the app is switched or changed."""
    drill_id = time.strftime("%Y%m%dT%H%M%S")
    folder = ensure_dir(folder or cfg.state_path / "drills" / drill_id)
    watched = app_files(cfg)
    before = _hashes(watched)
    options = Options(yes=True, force=True, reason=DRILL_REASON)
    outcome = Rollback(drill_config(cfg, folder), config_path, options, progress).run()
    after = _hashes(watched)
    result = DrillResult(drill_id, folder, outcome, app_files=before, app_unchanged=before == after)
    _findings(result, RunDir(folder / "state", outcome.run_id).load().steps)
    write_text(folder / "drill.json", json.dumps(result.to_json(), indent=2) + "\n")
    write_text(result.report_path, drill_markdown(result))
    AuditLog(cfg.state.audit_log).append(
        "drill",
        {
            "folder": str(folder),
            "run": outcome.run_id,
            "status": outcome.status,
            "exit_code": result.exit_code,
            "blocked": result.blocked,
            "app_unchanged": result.app_unchanged,
        },
        drill_id,
    )
    return result


def _findings(r: DrillResult, steps: list[StepState]) -> None:
    """Steps against estimates, what would have blocked, and the decisions a person would have made."""
    assess, err = r.outcome.results.get("assess", {}), r.outcome.error
    estimates = assess.get("facts", {}).get("estimates", {})
    r.steps = [  # the backup runs in the background: its own duration, not the wait for it
        {
            "step": s.name,
            "status": s.status,
            "estimate": estimates.get(s.name),
            "seconds": s.result.get("background_seconds", s.seconds),
        }
        for s in steps
    ]
    level = assess.get("level")
    if level == "critical":
        r.blocked.append("the risk gate: risk critical, refused unless --force --reason")
    elif level == "high":
        r.blocked.append("the risk gate: risk high, needs a person's confirmation (or --yes)")
    if err is not None:
        what = "verification" if isinstance(err, VerificationFailed) else "the run"
        r.blocked.append(f"{what}: {err}")
    for f in assess.get("findings", []):
        if f["severity"] in ("high", "critical"):
            r.decisions.append(f"{f['message']}" + (f" — {f['fix']}" if f.get("fix") else ""))
    if not r.app_unchanged:
        r.blocked.append("a file of the app changed during the drill")


def drill_markdown(r: DrillResult) -> str:
    """The drill report in Markdown."""
    lines = [
        f"# Drill {r.drill_id}",
        "",
        f"A rehearsal on copies in `{r.folder}` (run {r.outcome.run_id}: {r.outcome.status}); nothing of the app "
        "was switched. "
        + ("Every file of the app is byte-identical after the drill." if r.app_unchanged else "**A file changed.**"),
        "",
        "## Time per step",
        "",
        "| step | status | estimate (s) | took (s) |",
        "|---|---|---|---|",
    ]
    for s in r.steps:
        est = "" if s["estimate"] is None else f"{s['estimate']:.2f}"
        took = "" if s["seconds"] is None else f"{s['seconds']:.2f}"
        lines.append(f"| {s['step']} | {s['status']} | {est} | {took} |")
    statements = r.outcome.results.get("verify", {}).get("statements", [])
    lines += ["", "## The old app's statements on the result", ""]
    lines += [f"- {'ok' if c['ok'] else 'FAILS: ' + c['error']}: `{c['sql']}`" for c in statements] or [
        "- none listed in [app] statements"
    ]
    lines += ["", "## What would have blocked a rollback", ""]
    lines += [f"- {b}" for b in r.blocked] or ["- nothing: a rollback now would go through"]
    lines += ["", "## What the on-call person would have had to decide", ""]
    lines += [f"- {d}" for d in r.decisions] or ["- nothing"]
    lines += ["", "## Files of the app (sha256, unchanged)" if r.app_unchanged else "## Files of the app", ""]
    lines += [f"- `{p}`: {h or 'absent'}" for p, h in r.app_files.items()]
    return "\n".join(lines) + "\n"
