"""The fleet's pure parts: the manifest in its three forms, `fleet plan`'s checks on real tenant folders, the wave
sizes and the failure budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failback.config import load_config
from failback.errors import ConfigError
from failback.fleet.demo import create_fleet
from failback.fleet.manifest import Tenant, load_manifest, plan_fleet
from failback.fleet.waves import failure_budget, failure_weight, over_budget, split_waves, wave_sizes

TENANT_TOML = """\
[source]
path = "{source}"
[target]
path = "{target}"
[app]
config = "app.env"
[backup]
dir = "{backups}"
"""


def tenant(
    root: Path, name: str, source: str = "native.sqlite", target: str = "app.sqlite", backups: str = "b"
) -> Path:
    """A tenant folder with the files `fleet plan` looks for (plan never opens the databases)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.env").write_text("DATABASE_PROVIDER=native\n")
    (folder / "native.sqlite").write_bytes(b"")
    cfg = folder / "failback.toml"
    cfg.write_text(TENANT_TOML.format(source=source, target=target, backups=backups))
    return cfg


# -- manifest ---------------------------------------------------------------------------------------
def test_csv_jsonl_and_toml_manifests_name_the_same_tenants(tmp_path: Path) -> None:
    for name in ("a", "b"):
        tenant(tmp_path / "tenants", name)
    (tmp_path / "f.csv").write_text("tenant,config\na,tenants/a/failback.toml\nb,tenants/b/failback.toml\n")
    (tmp_path / "f.jsonl").write_text(
        "".join(json.dumps({"tenant": t, "config": f"tenants/{t}/failback.toml"}) + "\n" for t in "ab")
    )
    (tmp_path / "list.toml").write_text('config = "tenants/{tenant}/failback.toml"\ntenants = ["a", "b"]\n')
    (tmp_path / "glob.toml").write_text('config = "tenants/{tenant}/failback.toml"\n')
    expected = [Tenant(t, tmp_path.resolve() / "tenants" / t / "failback.toml") for t in "ab"]
    for name in ("f.csv", "f.jsonl", "list.toml", "glob.toml"):
        assert load_manifest(tmp_path / name) == expected, name


TEMPLATE_TOML = """\
state_dir = "tenants/{tenant}/.failback"
[source]
path = "tenants/{tenant}/native.sqlite"
[target]
path = "tenants/{tenant}/app.sqlite"
[app]
config = "tenants/{tenant}/app.env"
[backup]
dir = "%s"
"""


def test_one_template_config_serves_every_tenant(tmp_path: Path) -> None:
    """config = a failback.toml with {tenant} placeholders, the tenants listed or matched by a glob."""
    for name in ("a", "b"):
        tenant(tmp_path / "tenants", name)
    template = tmp_path / "failback.template.toml"
    template.write_text(TEMPLATE_TOML % "backups/{tenant}")
    (tmp_path / "list.toml").write_text('config = "failback.template.toml"\ntenants = ["a", "b"]\n')
    (tmp_path / "glob.toml").write_text('config = "failback.template.toml"\nmatch = "tenants/{tenant}/app.env"\n')
    expected = [Tenant(t, tmp_path.resolve() / "failback.template.toml") for t in "ab"]
    for name in ("list.toml", "glob.toml"):
        tenants = load_manifest(tmp_path / name)
        assert tenants == expected, name
        assert plan_fleet(tenants).ok
    cfg = load_config(template, "b")
    assert cfg.source_path == tmp_path / "tenants" / "b" / "native.sqlite" and cfg.file == template
    assert cfg.state_path == tmp_path / "tenants" / "b" / ".failback"
    with pytest.raises(ConfigError, match="a fleet template") as e:
        load_config(template)  # one app's command given the template: no tenant to put in
    assert "failback fleet" in e.value.hint


def test_a_template_sharing_a_folder_between_tenants_fails_the_plan(tmp_path: Path) -> None:
    for name in ("a", "b"):
        tenant(tmp_path / "tenants", name)
    (tmp_path / "t.toml").write_text(TEMPLATE_TOML % "backups")  # one backup folder for every tenant
    (tmp_path / "f.toml").write_text('config = "t.toml"\ntenants = ["a", "b"]\n')
    plan = plan_fleet(load_manifest(tmp_path / "f.toml"))
    shared = (tmp_path / "backups").resolve()
    assert [c.problems for c in plan.problems] == [
        [f"backup folder {shared} is also the backup folder of tenant b"],
        [f"backup folder {shared} is also the backup folder of tenant a"],
    ]


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("f.csv", "id,config\na,x.toml\n", "header must name"),
        ("f.csv", "tenant,config\na,x.toml\na,y.toml\n", "line 3: tenant a is already named at line 2"),
        ("f.csv", "tenant,config\n../a,x.toml\n", "line 2: tenant '../a' is not an id"),
        ("f.csv", "tenant,config\na,\n", "config must be a path"),
        ("f.jsonl", '{"tenant": "a", "config": "x"}\n{"tenant": "b"\n', "line 2: not valid JSON"),
        ("f.jsonl", "[1, 2]\n", "line 1: not a JSON object"),
        ("f.toml", 'config = "x.toml"\n', "tenants = [...] or match = "),
        ("f.toml", 'config = "x.toml"\nmatch = "data/*.sqlite"\n', "one {tenant}"),
        ("f.toml", 'config = "{tenant}/x.toml"\nmatch = "{tenant}.sqlite"\n', "one {tenant}"),
        ("f.toml", 'config = "{tenant}/{tenant}.toml"\n', "one {tenant}"),
        ("f.csv", "tenant,config\n", "names no tenants"),
        ("f.txt", "a", "is .csv, .jsonl or .toml"),
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_row(tmp_path: Path, name: str, text: str, says: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as e:
        load_manifest(tmp_path / name)
    assert says in e.value.message and "\n" not in e.value.message
    assert e.value.message.startswith(str(tmp_path / name)) and e.value.exit_code == 2


# -- fleet plan -------------------------------------------------------------------------------------
def test_plan_passes_a_generated_fleet(tmp_path: Path) -> None:
    plan = plan_fleet(load_manifest(create_fleet(tmp_path / "fleet", 3, notes=20)))
    assert plan.ok and len(plan.checks) == 3 and plan.to_json()["problems"] == []


def test_plan_names_missing_files_bad_configs_and_shared_paths(tmp_path: Path) -> None:
    root = tmp_path / "t"
    tenants = [
        Tenant("ok", tenant(root, "ok")),
        Tenant("missing", root / "nowhere" / "failback.toml"),
        Tenant("nosource", tenant(root, "nosource", source="gone.sqlite")),
        # "thief" writes its target over tenant ok's source; "nested" keeps its backups in ok's state folder
        Tenant("thief", tenant(root, "thief", target="../ok/native.sqlite")),
        Tenant("nested", tenant(root, "nested", backups="../ok/.failback/b")),
    ]
    plan = plan_fleet(tenants)
    problems = {c.tenant: c.problems for c in plan.checks}
    assert not plan.ok
    assert "no such config file" in problems["missing"][0]
    assert problems["nosource"] == [f"source {root / 'nosource' / 'gone.sqlite'} does not exist"]
    shared = (root / "ok" / "native.sqlite").resolve()
    assert f"target {shared} is also the source of tenant ok" in problems["thief"]
    assert f"source {shared} is also the target of tenant thief" in problems["ok"]
    assert any("lies in the state folder of tenant ok" in p for p in problems["nested"])
    assert [c.tenant for c in plan.problems] == ["ok", "missing", "nosource", "thief", "nested"]


# -- waves and budget -------------------------------------------------------------------------------
def test_default_waves_start_with_one_canary() -> None:
    assert wave_sizes(1000) == [1, 10, 99, 890]
    assert wave_sizes(1) == [1]
    assert wave_sizes(5, ["2"]) == [2, 3]  # the tenants left after the last spec form one more wave
    assert split_waves(["a", "b", "c"], ["1", "50%"]) == [["a"], ["b"], ["c"]]


@given(st.integers(0, 5000), st.lists(st.one_of(st.integers(0, 50).map(str), st.integers(1, 100).map("{}%".format))))
def test_waves_cover_every_tenant_once_in_order(total: int, specs: list[str]) -> None:
    sizes = wave_sizes(total, specs)
    assert sum(sizes) == total and all(s > 0 for s in sizes)
    tenants = [f"t{n}" for n in range(total)]
    assert [t for wave in split_waves(tenants, specs) for t in wave] == tenants


@pytest.mark.parametrize("spec", ["0%", "101%", "-1", "ten", "5 %%"])
def test_a_bad_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        wave_sizes(10, [spec])
    with pytest.raises(ConfigError):
        failure_budget(spec, 10)


def test_budget_counts_data_safety_refusals_and_verification_failures_double() -> None:
    assert failure_budget("2%", 1) == 0 and failure_budget("2%", 250) == 5 and failure_budget("3", 1) == 3
    assert [failure_weight(code) for code in (0, 1, 2, 3, 4, 5, 6, 70)] == [0, 2, 1, 2, 1, 2, 1, 1]
    assert not over_budget([0, 2, 0], 1) and over_budget([0, 3], 1) and over_budget([2, 2], 1)


@given(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 70])), st.integers(0, 20))
def test_more_failures_never_bring_a_wave_back_under_budget(codes: list[int], budget: int) -> None:
    if over_budget(codes, budget):
        assert over_budget([*codes, 2], budget) and over_budget([*codes, 0], budget)
