"""The fleet journal round trip and approvals, and the fleet report in its three formats (HTML rendered in
headless Chromium like the run report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from failback.errors import InputError
from failback.fleet.journal import FleetJournal, FleetState, TenantEntry
from failback.fleet.report import fleet_summary, histogram, next_step, render_html, render_json, render_markdown

from .test_report import render_in_chromium


def halted_fleet() -> FleetState:
    """A fleet halted in wave 2: one tenant switched per wave, one refused (a name and error needing escaping)."""
    tenants = {
        "a": TenantEntry("/t/a/failback.toml", 0, "switched", "x", "r1", 0, "", 1.5),
        "b<i>": TenantEntry("/t/b/failback.toml", 1, "refused", "x", "r2", 3, "source <damaged> & | odd", 0.4),
        "c": TenantEntry("/t/c/failback.toml", 1, "switched", "x", "r3", 0, "", 2.5),
        "d": TenantEntry("/t/d/failback.toml", 1, "dispatched", "x"),
        "e": TenantEntry("/t/e/failback.toml", 2),
    }
    waves = [["a"], ["b<i>", "c", "d"], ["e"]]
    return FleetState("/t/fleet.csv", "2026-01-01T00:00:00+00:00", ["1", "3"], "1", False, True, waves, tenants,
                      "halted", 1, "wave 2: failures weigh 2, over its budget of 1")  # fmt: skip


def test_journal_round_trip_and_approvals(tmp_path: Path) -> None:
    journal = FleetJournal(tmp_path / "state")
    with pytest.raises(InputError, match="holds no fleet run"):
        journal.load()
    state = halted_fleet()
    journal.save(state)
    assert journal.load() == state and journal.approved() == set()
    journal.approve(2)
    assert journal.approved() == {2}
    assert [r["event"] for r in journal.audit.records()] == ["fleet.approve"]
    with pytest.raises(InputError, match="waves 1 to 3, not 4"):
        journal.approve(4)


def test_summary_counts_waves_and_says_what_next() -> None:
    s = fleet_summary(halted_fleet())
    assert [w["counts"]["switched"] for w in s["waves"]] == [1, 1, 0]
    assert s["counts"] == {"switched": 2, "refused": 1, "failed": 0, "lost": 0, "dispatched": 1, "pending": 1}
    assert s["seconds"]["p50"] == 1.5 and s["seconds"]["p95"] == 2.5
    assert [f["tenant"] for f in s["failed"]] == ["b<i>"] and "failback status -c /t/b" in s["failed"][0]["next"]
    assert "failback fleet approve --wave 2" in next_step(halted_fleet())
    assert json.loads(render_json(halted_fleet())) == s
    assert sum(b["tenants"] for b in histogram([0.1, 0.2, 5.0, 0.0])) == 4 and histogram([]) == []


def test_markdown_lists_the_failed_tenants_with_their_next_command() -> None:
    md = render_markdown(halted_fleet())
    assert "# Fleet rollback: halted" in md and "| 2 | 3 | 1 | 1 | 0 | 0 | 1 |" in md
    assert "source <damaged> & \\| odd" in md and "`failback status -c /t/b/failback.toml`" in md


def test_fleet_html_report_renders_in_chromium(chromium: Path, tmp_path: Path) -> None:
    page = tmp_path / "fleet.html"
    page.write_text(render_html(halted_fleet()), encoding="utf-8")
    dom, console = render_in_chromium(chromium, page, tmp_path / "profile")
    assert console == []
    assert '<h1 id="status">Fleet rollback: halted</h1>' in dom
    assert "b&lt;i&gt;" in dom and "source &lt;damaged&gt; &amp; | odd" in dom and "<i>" not in dom.split("<body>")[1]
    assert dom.count('<div class="bar">') == 10
