"""failback's own metrics: the textfile written after a real rollback and after watch samples parses with
prometheus_client's parser and holds the run's values (`watch --metrics-port`: test_triggers' SIGTERM test)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import failback
from failback.autorollback.hold import place_hold
from failback.autorollback.watcher import Watcher
from failback.journal import find_run
from failback.metrics import RULE_STATES
from failback.pipeline.rollback import Options, Rollback

from .test_triggers import configure

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

WARN_RULE = '[[triggers.rules]]\nname = "lat"\nmetric = "latency"\nthreshold = 100\nfor = 3\nseverity = "warn"\n'


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_textfile_after_a_rollback_holds_the_run(demo_dir: Path) -> None:
    cfg, path = configure(demo_dir, "")
    outcome = Rollback(cfg, path, Options(yes=True)).run()
    assert outcome.exit_code == 0
    got = parse((cfg.state_path / "metrics.prom").read_text())
    state = find_run(cfg.state_path, outcome.run_id).load()
    assert got[("failback_last_run_info", (("mode", "standard"), ("run", outcome.run_id), ("status", "done")))] == 1
    assert got[("failback_last_run_exit_code", ())] == 0
    steps = {dict(labels)["step"]: v for (name, labels), v in got.items() if name == "failback_last_run_step_seconds"}
    assert steps == {s.name: s.seconds for s in state.steps if s.seconds is not None} and "snapshot" in steps
    backups = failback.list_backups(path)
    assert got[("failback_backups", ())] == len(backups) >= 1
    assert got[("failback_backup_newest_age_seconds", ())] <= got[("failback_backup_oldest_age_seconds", ())]
    assert (got[("failback_debts_open", ())], got[("failback_hold", ())]) == (0, 0)
    assert not any(name.startswith("failback_rule_") for name, _ in got)  # no watch: no rule states


def test_the_textfile_after_each_watch_sample_holds_the_rules(demo_dir: Path) -> None:
    (demo_dir / "metrics.jsonl").write_text('{"latency": 500}\n')
    textfile = demo_dir / "textfile" / "failback.prom"
    textfile.parent.mkdir()
    (demo_dir / "failback.toml").write_text(
        f'[metrics]\ntextfile = "{textfile}"\n' + (demo_dir / "failback.toml").read_text()
    )
    cfg, path = configure(demo_dir, 'interval = 0.01\njsonl_path = "metrics.jsonl"', WARN_RULE)
    place_hold(cfg, "freeze")
    w = Watcher(cfg, path)
    w.watch(max_samples=2)
    got = parse(textfile.read_text())
    states = {dict(labels)["state"]: v for (name, labels), v in got.items() if name == "failback_rule_state"}
    assert states == {s: float(s == "inconclusive") for s in RULE_STATES}  # the same line read again
    assert got[("failback_rule_streak", (("rule", "lat"),))] == 1
    assert got[("failback_rule_value", (("rule", "lat"),))] == 500  # read, shown, not counted again
    assert got[("failback_hold", ())] == 1
    assert got[("failback_rule_flapping", (("rule", "lat"),))] == 0
    assert got[("failback_cooldown_until_timestamp_seconds", ())] == 0
    assert not (cfg.state_path / "metrics.prom").exists()
