"""A backfill killed with SIGKILL in the middle of its writes, then run again: nothing lost, nothing
doubled, and the killed run never claims its partitions."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pymongo.database import Database

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    stored_issues,
    this_hour,
)

ISSUES = 1500  # two write batches of 1,000: a kill after the first leaves the store partial
PATIENCE_S = 120.0
# What a kill can leave half-written is the issues' writes: the followers' steps (comments,
# changelogs, worklogs, history; tested on their own) only stretch each run.
ISSUES_ONLY = ("jira_issues",)


def kill_once_partly_written(target: SyncTarget, db: Database) -> int:
    """Start the sync in a child process and SIGKILL it as soon as the store holds some issues;
    returns how many it held then."""
    process = target.sync_process(assets=ISSUES_ONLY)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline and process.poll() is None:
            held = db["jira_issues"].estimated_document_count()
            if held:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return held
            time.sleep(0.02)
        output = process.stdout.read() if process.stdout else ""
        raise AssertionError(f"the sync ended (or hung) before writing anything:\n{output}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_backfill_killed_mid_write_then_rerun_stores_what_a_clean_run_stores(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    # Latency stretches the fetch so the kill lands while pages are still arriving.
    fake = fake_jira_factory(issues=ISSUES, days=3, now=this_hour(), latency_ms=80)
    clean = point_at(fake, "clean")
    assert clean.sync("jira_issues_job", assets=ISSUES_ONLY).success
    clean_state = stored_issues(open_store(clean.store_folder))

    target = point_at(fake, "killed")
    db = open_store(target.store_folder)
    held_at_kill = kill_once_partly_written(target, db)

    assert 0 < held_at_kill < ISSUES
    assert 0 < db["jira_issues"].count_documents({}) < ISSUES
    with dg.DagsterInstance.get() as instance:
        [killed_run] = instance.get_runs()
        assert killed_run.status != dg.DagsterRunStatus.SUCCESS
        assert instance.get_materialized_partitions(dg.AssetKey("jira_issues")) == set()

    rerun = target.sync_process(assets=ISSUES_ONLY)
    output, _ = rerun.communicate(timeout=PATIENCE_S)
    assert rerun.returncode == 0, output

    assert stored_issues(db) == clean_state
    assert {doc_id: (doc["key"], doc["updated"]) for doc_id, doc in clean_state.items()} == \
        fake_issue_versions(fake)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert [run.status for run in runs if run.run_id == killed_run.run_id] == \
            [killed_run.status]
        first, last = target.partition_range()
        materialized = instance.get_materialized_partitions(dg.AssetKey("jira_issues"))
        assert first in materialized and last in materialized
        killed_events = [
            record for record in instance.fetch_materializations(
                dg.AssetKey("jira_issues"), limit=1000
            ).records
            if record.run_id == killed_run.run_id
        ]
        assert killed_events == []
