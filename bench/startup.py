#!/usr/bin/env python3
"""Start-up time of the CLI: `failback --version`, `--help` and `status --help` against a bare `python -c pass`.

Each command runs N times (alternating, so a slow spell hits them all alike); the table shows the median and the
difference to `python -c pass`. Issue 15's goal: --version and --help within 0.1 s of Python itself. Run with the
project's venv: `make bench-quick` or `.venv/bin/python bench/startup.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.1


def failback_command() -> list[str]:
    """The installed `failback` script beside this Python, else `python -m failback`."""
    script = Path(sys.executable).with_name("failback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "failback"]


def commands() -> dict[str, list[str]]:
    fb = failback_command()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "failback --version": [*fb, "--version"],
        "failback --help": [*fb, "--help"],
        "failback status --help": [*fb, "status", "--help"],
    }


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    args = parser.parse_args()
    if shutil.which(failback_command()[0]) is None:
        print("failback is not installed in this Python: run `make deps`", file=sys.stderr)
        return 2
    todo = commands()
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(args.runs):
        for name, argv in todo.items():
            times[name].append(time_once(argv))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<26}{'median s':>10}{'vs python':>12}  (median of {args.runs} runs)")
    for name, samples in times.items():
        median = statistics.median(samples)
        delta = median - base
        flag = "" if name == "python -c pass" or "status" in name else ("  ok" if delta <= GOAL_S else "  > goal")
        print(f"{name:<26}{median:>10.3f}{delta:>+12.3f}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
