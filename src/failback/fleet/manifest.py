"""The fleet manifest: which tenants a fleet holds and the failback.toml of each, and the checks `fleet plan` runs
before anything does.

Three forms, chosen by the file's suffix (relative paths are relative to the manifest's folder):

* ``.csv``: a header naming ``tenant`` and ``config``, then one row per tenant;
* ``.jsonl``: one object per line, ``{"tenant": "...", "config": "..."}``;
* ``.toml``: ``config = "tenants/{tenant}/failback.toml"`` (a path template) with ``tenants = [...]``, or without
  it every existing path the template matches with ``{tenant}`` read as a wildcard; or ``config =
  "failback.template.toml"``, one config for every tenant whose values hold ``{tenant}`` placeholders, with
  ``tenants = [...]`` or ``match = "data/{tenant}/app.sqlite"`` (every existing path it matches).

Every tenant's config is loaded with ``load_config(config, tenant=id)``: a ``{tenant}`` in it is that tenant's id.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TENANT_PLACEHOLDER, Config, load_config
from ..errors import ConfigError, FailbackError

TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


@dataclass(frozen=True)
class Tenant:
    """One tenant of the fleet: its id and the path of its failback.toml."""

    id: str
    config: Path


MANIFEST_HINT = "fix the fleet manifest (see docs/fleet.md) and run the command again"


def _bad(message: str) -> ConfigError:
    return ConfigError(message, MANIFEST_HINT)


def load_manifest(path: Path) -> list[Tenant]:
    """The tenants of the manifest at ``path`` in its order; ConfigError (one line, naming the row) when it is
    unreadable, malformed or names a tenant twice."""
    try:
        return _read_manifest(path)
    except ConfigError as err:
        raise _bad(f"{path}: {err.message}") from None


def _read_manifest(path: Path) -> list[Tenant]:
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".toml": _toml_rows}
    if path.suffix not in readers:
        raise _bad(f"a fleet manifest is .csv, .jsonl or .toml, not {path.suffix or 'no suffix'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _bad(f"cannot read the fleet manifest ({getattr(err, 'strerror', None) or err})") from None
    base = path.resolve().parent
    tenants: list[Tenant] = []
    seen: dict[str, str] = {}
    for where, tenant, config in readers[path.suffix](text, base):
        if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
            raise _bad(f"{where}: tenant {tenant!r} is not an id (letters, digits, _ . @ -)")
        if not isinstance(config, str) or not config:
            raise _bad(f"{where}: tenant {tenant}: config must be a path")
        if tenant in seen:
            raise _bad(f"{where}: tenant {tenant} is already named at {seen[tenant]}")
        seen[tenant] = where
        tenants.append(Tenant(tenant, base / config))
    if not tenants:
        raise _bad("the fleet manifest names no tenants")
    return tenants


Row = tuple[str, Any, Any]


def _csv_rows(text: str, base: Path) -> Iterator[Row]:
    reader = csv.DictReader(text.splitlines())
    if not {"tenant", "config"} <= set(reader.fieldnames or ()):
        raise _bad("the CSV header must name the columns tenant and config")
    for row in reader:
        yield f"line {reader.line_num}", row.get("tenant"), row.get("config")


def _jsonl_rows(text: str, base: Path) -> Iterator[Row]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise _bad(f"line {n}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise _bad(f"line {n}: not a JSON object with tenant and config")
        yield f"line {n}", row.get("tenant"), row.get("config")


def _toml_rows(text: str, base: Path) -> Iterator[Row]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _bad(f"not valid TOML ({err})") from None
    config, match = data.get("config"), data.get("match")
    shape = (
        f'the TOML manifest holds config = "<path with one {TENANT_PLACEHOLDER}>", or config = "<template config>" '
        f'with tenants = [...] or match = "<path with one {TENANT_PLACEHOLDER}>"'
    )
    per_tenant = isinstance(config, str) and config.count(TENANT_PLACEHOLDER) == 1
    if (
        not isinstance(config, str)
        or set(data) - {"config", "tenants", "match"}
        or config.count(TENANT_PLACEHOLDER) > 1
        or (per_tenant and "match" in data)
        or (not per_tenant and "tenants" not in data and not isinstance(match, str))
        or (isinstance(match, str) and match.count(TENANT_PLACEHOLDER) != 1)
    ):
        raise _bad(shape)
    ids = data["tenants"] if "tenants" in data else _matching_ids(config if per_tenant else str(match), base)
    if not isinstance(ids, list):
        raise _bad("tenants must be a list of tenant ids")
    for n, tenant in enumerate(ids, 1):
        yield f"tenants[{n}]", tenant, config.replace(TENANT_PLACEHOLDER, str(tenant))


def _matching_ids(template: str, base: Path) -> list[str]:
    """The tenant ids for which ``template`` names an existing file, sorted."""
    head, tail = template.split(TENANT_PLACEHOLDER)
    head = os.path.join(base, head)
    return sorted(p[len(head) : len(p) - len(tail)] for p in glob.glob(glob.escape(head) + "*" + glob.escape(tail)))


# -- fleet plan -------------------------------------------------------------------------------------
@dataclass
class TenantCheck:
    """What `fleet plan` found for one tenant: the problems that keep it from running (none: ready)."""

    tenant: str
    config: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class FleetPlan:
    """Every tenant's check; the fleet may run only when all are ready."""

    checks: tuple[TenantCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[TenantCheck]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tenants": len(self.checks),
            "problems": [{"tenant": c.tenant, "config": c.config, "problems": c.problems} for c in self.problems],
        }


def plan_fleet(tenants: Iterable[Tenant]) -> FleetPlan:
    """Check every tenant before anything runs: its config loads, its source and app config exist, and no file or
    folder of one tenant is another's (the same path, or a file inside another tenant's state or backup folder)."""
    checks: list[TenantCheck] = []
    configs: list[tuple[TenantCheck, Config]] = []
    for t in tenants:
        check = TenantCheck(t.id, str(t.config))
        checks.append(check)
        try:
            cfg = load_config(t.config, t.id)
        except FailbackError as err:
            check.problems.append(err.message)
            continue
        for what, p in (("source", cfg.source_path), ("app config", cfg.app_config_path)):
            if not p.is_file():
                check.problems.append(f"{what} {p} does not exist")
        configs.append((check, cfg))
    _check_disjoint(configs)
    return FleetPlan(tuple(checks))


def claimed_paths(cfg: Config) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """The files and the folders a tenant's run reads or writes, each with what it is, resolved."""
    files = [("source", cfg.source_path), ("target", cfg.target_path), ("app config", cfg.app_config_path)]
    folders = [("state folder", cfg.state_path)] + [("backup folder", p) for p in cfg.backup_layers]
    return [(w, p.resolve()) for w, p in files], [(w, p.resolve()) for w, p in folders]


def _check_disjoint(configs: list[tuple[TenantCheck, Config]]) -> None:
    """Add a problem to every tenant with a path another tenant also claims (or that lies in another's folder)."""
    owner: dict[Path, tuple[TenantCheck, str]] = {}
    folder_owner: dict[Path, tuple[TenantCheck, str]] = {}
    claims: list[tuple[TenantCheck, str, Path]] = []
    for check, cfg in configs:
        files, folders = claimed_paths(cfg)
        for what, p in files + folders:
            claims.append((check, what, p))
            if p in owner and owner[p][0] is not check:
                other, other_what = owner[p]
                check.problems.append(f"{what} {p} is also the {other_what} of tenant {other.tenant}")
                other.problems.append(f"{other_what} {p} is also the {what} of tenant {check.tenant}")
            owner.setdefault(p, (check, what))
        for what, p in folders:
            folder_owner.setdefault(p, (check, what))
    for check, what, p in claims:
        for parent in p.parents:
            if (hit := folder_owner.get(parent)) is not None and hit[0] is not check:
                check.problems.append(f"{what} {p} lies in the {hit[1]} of tenant {hit[0].tenant}")
                break
