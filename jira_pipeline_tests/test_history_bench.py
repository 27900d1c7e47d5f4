"""benchmarks/history_field_history.py prints the field_history phase's JSON line (a tiny run:
the keys and their relations, never a time bound)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = {"phase", "issues", "histories", "page_size", "requests", "per_issue_requests", "wall_s",
        "peak_rss_mb", "items_per_s", "target", "met", "peak_rss_mb_by_issues"}


def test_the_field_history_phase_prints_one_line_with_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "history_field_history.py"),
         "--issues", "3", "--scale", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
    assert KEYS <= line.keys(), KEYS - line.keys()
    assert line["phase"] == "field_history" and line["issues"] == 6
    assert set(line["peak_rss_mb_by_issues"]) == {"3", "6"}
    assert line["histories"] >= 6 * 10 and line["items"] >= line["histories"]
    # Every history item becomes an interval of its field (or replaces one at the same instant).
    assert 0 < line["field_history_rows"] <= line["items"] + 6 * line["issues"]
    assert line["transition_rows"] > line["issues"] and line["time_in_status_rows"] > 0
    assert line["requests"] == 0 and line["items_per_s"] > 0
    assert isinstance(line["met"], bool)
