"""Automated rollback triggers: metric sources, the rule state machine, the watch loop, hold and release.

Pure part (no I/O): ``policy_problems``, ``lookup``, ``threshold_for`` and ``evaluate`` turn one sample plus the facts
around it (baseline, hold, current provider) and the rules' states into an ``Evaluation``: one result per rule, the
decision, the next states and the audit events to write. Effects: the metric sources, ``hold.json``, the audit log
and ``Watcher``, which samples every interval and runs the rollback.

Semantics (also in ``failback watch --help``):

- A rule states the *failure* condition: the sample fails when ``value <op> threshold`` holds. The threshold is
  ``threshold``, or ``baseline.metrics[metric] * baseline_ratio`` from ``<state>/baseline.json``.
- A rule fires when ``for`` consecutive samples fail, exactly once per streak; a passing sample ends the streak.
- A sample is inconclusive when the metric is missing (its source failed, or did not answer in full within its
  deadline: the interval, between 1 and 10 s), not a number, matched by several Prometheus series, or its
  baseline is missing. ``[triggers] inconclusive``: ``keep`` ignores the sample (the streak is kept), ``fail``
  counts it as a failing sample, ``pause`` drops the streak and pauses the rule until a conclusive sample arrives.
- Fresh data only: every value carries when it was measured (a JSONL line's ``time`` or the file's mtime, a /metrics
  exposition timestamp or the read, a Prometheus query's newest scrape). A value older than its source's
  ``max_age`` (default 3 × interval, at least 60 s), or the value counted last time read again, is inconclusive
  whatever the policy — never a failure, the streak kept: ``for`` counts distinct fresh samples.
- Severity ``warn`` is reported and audited; ``rollback`` runs a standard rollback, ``emergency`` an emergency one.
  A rule on ``integrity`` always rolls back in emergency mode: a failed ``quick_check`` is a critical signal.
- Risk gate of an automatic rollback: the firing rule is the operator's pre-authorisation of a *high* risk
  (``yes=True``), never of a *critical* one (no ``force``): that run is refused (exit 3) and a human decides.
- A hold (``failback hold``) blocks automatic rollbacks: every evaluation says so, the due rule stays due and fires
  on the first failing sample after ``failback release``. Warnings are still reported.
- An automatic rollback runs only while the app config selects the native provider: rolling back again would
  replace the sql.js data written since the first switch. ``watch`` ends after an automatic rollback, with its
  exit code; ``check`` never rolls back and exits ``CHECK_FIRED`` (3) when a rollback rule fires (hold or not).
"""
