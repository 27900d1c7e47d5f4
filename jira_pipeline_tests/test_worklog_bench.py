"""benchmarks/history_worklog_delta.py prints issue 13's `worklog_delta` line with every key.

One tiny run (60 issues, 20 changes, 4 deletions): the line must carry every key with sane
values, and the delta must converge. Figures are never compared with a time bound.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = {"phase", "issues", "histories", "page_size", "requests", "per_issue_requests", "wall_s",
        "peak_rss_mb", "worklogs", "changes", "deletions", "inserted", "updated",
        "marked_deleted", "converged", "target", "met"}


def test_the_worklog_delta_bench_prints_its_line_and_the_delta_converges() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "DAGSTER_HOME")}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "history_worklog_delta.py"),
         "--issues", "60", "--days", "3", "--changes", "20", "--deletions", "4"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
    assert KEYS <= line.keys(), KEYS - line.keys()
    assert line["phase"] == "worklog_delta" and line["issues"] == 60
    assert line["histories"] == 24 and line["page_size"] == 1000
    assert (line["inserted"], line["updated"], line["marked_deleted"]) == (10, 10, 4)
    assert line["converged"] is True
    assert line["requests"] == 3 and line["met"] is True and line["target"] == 3
    assert line["per_issue_requests"] > line["requests"]
    assert line["wall_s"] > 0 and 0 < line["peak_rss_mb"] < 100_000
