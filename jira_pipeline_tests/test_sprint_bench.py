"""benchmarks/history_sprints.py prints the sprints phase's JSON line (a small run: the keys and
their relations, never a time bound)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = {"phase", "issues", "sprints", "boards", "memberships", "issue_sync_requests",
        "sprint_list_requests", "membership_requests", "check_requests",
        "per_sprint_requests", "converged", "wall_s", "target", "met"}


def test_the_sprints_phase_prints_one_line_and_derives_membership_without_a_request() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "history_sprints.py"),
         "--issues", "120", "--days", "45"],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [json.loads(text) for text in done.stdout.splitlines() if text.startswith("{")]
    assert KEYS <= line.keys(), KEYS - line.keys()
    assert line["phase"] == "sprints" and line["issues"] == 120
    assert line["memberships"] > 0 and line["sprints"] > 0
    assert line["membership_requests"] == 0 and line["converged"] is True
    assert line["met"] is True
    # The per-sprint way lists the same sprints, then asks each for its issues.
    assert line["per_sprint_requests"] > line["sprint_list_requests"] > 0
