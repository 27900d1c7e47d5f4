"""Issue 13's history benchmark: one JSON line per phase, each phase in a process of its own.

Phases (each also runs alone, with more options, as its own script):

- `changelogs` (benchmarks/history_changelogs.py): complete changelogs of N issues with 10-300
  histories each through `changelog/bulkfetch`, against the request floor and what one
  `/issue/{id}/changelog` walk per issue would cost; the first run after an upgrade;
- `worklog_delta` (benchmarks/history_worklog_delta.py): `jira_worklogs` after 100 worklog
  changes and 10 deletions;
- `field_history` (benchmarks/history_field_history.py): field history, status transitions and
  time in status derived from stored changelogs, items per second and memory at two sizes;
- `sprints` (benchmarks/history_sprints.py, issue 14): sprint membership of N issues derived
  from the issue sync, its requests (the target: none beyond the issue sync and the sprint
  list) beside what asking each board's sprints for their issues would cost.

A phase's own process keeps its peak RSS its own, and a failing phase does not hide the
others' lines (the exit status says one failed).

    python benchmarks/history_bench.py [--phases changelogs,worklog_delta,field_history,sprints]
        [--issues N]  (N for every phase; each phase's own default otherwise)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = {
    "changelogs": "history_changelogs.py",
    "worklog_delta": "history_worklog_delta.py",
    "field_history": "history_field_history.py",
    "sprints": "history_sprints.py",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--issues", type=int, help="issues for every phase")
    options = parser.parse_args(argv)
    phases = [phase.strip() for phase in options.phases.split(",") if phase.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(unknown)}; known: {', '.join(PHASES)}")
    failed = []
    for phase in phases:
        command = [sys.executable, str(HERE / PHASES[phase])]
        if options.issues is not None:
            command += ["--issues", str(options.issues)]
        # The phase prints its JSON line on stdout (inherited); its logs go to stderr.
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(phase)
    if failed:
        print(f"history_bench: phase(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
