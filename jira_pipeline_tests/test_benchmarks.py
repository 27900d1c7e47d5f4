"""benchmarks/sync_bench.py, launched as users launch runs, prints every figure issue 12 names.

One tiny run (50 issues over 2 days, each phase a whole `dagster` command): the JSON lines must
carry every key with sane values. Figures are never compared with a time bound.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PHASE_KEYS = {
    "phase", "launch", "issues", "wall_s", "cpu_s", "import_dagster_s", "api_calls",
    "peak_rss_mb", "store", "success", "target_rss_mb", "target_wall_s", "met",
}
FULL_KEYS = {"client_fetch_s", "client_cpu_s", "client_issues", "target_cpu_s",
             "cpu_minus_overhead_s"}


def run_sync_bench(*arguments: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "DAGSTER_HOME")}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sync_bench.py"), *arguments],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=3500,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# Three whole `dagster` commands: 7 minutes on the shared 2-core machine, 35 under heavy load.
@pytest.mark.timeout(3600)
def test_sync_bench_cli_prints_every_phase_with_every_figure() -> None:
    lines = run_sync_bench("--issues", "50", "--days", "2", "--launch", "cli", "--deltas", "2")

    assert [line["phase"] for line in lines] == ["overhead", "full", "delta", "delta"]
    overhead, full, delta, later = lines
    assert (delta["delta_number"], later["delta_number"]) == (1, 2)
    assert later["touched"] == 100 and later["target_wall_s"] == delta["target_wall_s"]
    for line in lines:
        assert PHASE_KEYS <= line.keys(), PHASE_KEYS - line.keys()
        assert line["launch"] == "cli"
        assert line["store"] == "embedded"
        assert line["success"] is True
        assert line["wall_s"] > 0 and line["cpu_s"] > 0
        assert 0 < line["peak_rss_mb"] < 100_000
        assert line["import_dagster_s"] > 0
        assert line["import_dagster_s"] == overhead["import_dagster_s"]  # one baseline per run
        assert isinstance(line["met"], bool)
        assert line["command"].startswith("dagster ")
    assert FULL_KEYS <= full.keys(), FULL_KEYS - full.keys()
    # The empty partition fetches nothing; the full sync every issue, as the bare client does.
    assert overhead["issues"] == 0
    assert full["issues"] == full["client_issues"] == 50
    assert full["client_fetch_s"] > 0 and full["client_cpu_s"] > 0
    assert full["api_calls"] > overhead["api_calls"] > 0
    # Targets derive from the phase's own baselines.
    assert overhead["target_wall_s"] == round(2 * overhead["import_dagster_s"], 2)
    assert full["target_cpu_s"] == round(overhead["cpu_s"] + 2 * full["client_cpu_s"], 2)
    assert delta["target_wall_s"] == round(overhead["wall_s"] + 1.5, 2)
    # 100 touched of 50 issues: every issue moved to today's partition.
    assert delta["issues"] == 50
    assert "client_fetch_s" not in delta


def test_event_log_bench_prints_both_storages_for_both_kinds_of_event() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "event_log_bench.py"), "--events", "5",
         "--rounds", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    measured = {(line["event"], line["storage"]) for line in lines if "storage" in line}
    assert measured == {(kind, storage) for kind in ("planned", "log")
                        for storage in ("dagster", "kept_connections")}
    for line in lines:
        if "storage" in line:
            assert line["events"] == 5 and line["wall_ms_per_event"] > 0
        else:
            assert line["dagster_over_kept_connections"] > 0
