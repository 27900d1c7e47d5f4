"""benchmarks/history_changelogs.py at a tiny N prints issue 13's `changelogs` phase with every
figure; counts are compared with what the fake serves, never a time with a bound."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KEYS = {"phase", "issues", "histories", "page_size", "requests", "floor", "per_issue_requests",
        "wall_s", "peak_rss_mb", "target", "met", "store_s"}


@pytest.mark.timeout(600)
def test_changelogs_phase_prints_requests_against_the_floor_and_the_per_issue_cost() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "DAGSTER_HOME")}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "history_changelogs.py"),
         "--issues", "30", "--histories", "10-300", "--days", "5", "--store"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=580,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]

    assert KEYS <= line.keys(), KEYS - line.keys()
    assert line["phase"] == "changelogs" and line["issues"] == 30
    assert 30 * 10 <= line["histories"] <= 30 * 300
    assert line["page_size"] == 1000
    # One call of 30 issues, paged over its histories: exactly the pages they fill.
    assert line["requests"] == math.ceil(line["histories"] / 1000)
    assert line["floor"] == 1 + math.ceil(line["histories"] / 1000)
    assert line["met"] is True
    # The per-issue walk: at least a request an issue, more for issues over 100 histories.
    assert line["per_issue_requests"] >= 30
    assert line["per_issue_requests"] > line["requests"]
    assert line["wall_s"] > 0 and 0 < line["peak_rss_mb"] < 100_000
    assert line["store_s"] is not None and line["store_s"] >= 0
