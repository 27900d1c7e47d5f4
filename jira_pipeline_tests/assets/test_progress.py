"""Progress on long runs: a walk logs how far it is (so far, of Jira's count, rate, rate-limit
waits) every interval, and a multi-partition run logs each partition's completion. The interval
is shortened to 0.2 s and the fake answers slowly, so the walks here last several intervals;
the tests read what the lines say, never how long anything took."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import dagster as dg
import pytest

import jira_pipeline.assets.progress as progress
from jira_pipeline.assets.progress import WalkProgress
from jira_pipeline_tests.assets.conftest import Pipeline, materializations

# The progress lines are jira_issues': the followers (comments, changelogs, worklogs, history)
# are left out, whose per-issue requests on a Data Center fake with latency cost minutes.
ISSUES_ONLY = ("jira_issues",)
INTERVAL_S = 0.2
SO_FAR = re.compile(r"^issues: ([\d,]+) of ([\d,]+) \(\d+%\) fetched so far in [\d.]+ s, "
                    r"[\d.]+/s, (\d+) rate-limit wait\(s\) \([\d.]+ s\)$")
DONE = re.compile(r"^issues: ([\d,]+) of ([\d,]+) \(\d+%\) fetched, done in [\d.]+ s")
PARTITION_DONE = re.compile(
    r"^partition (\S+) done: ([\d,]+) issues \((\d+) of (\d+) partitions\)$"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def run_logs(pipeline: Pipeline, result: dg.ExecuteInProcessResult) -> list[str]:
    return [entry.user_message for entry in pipeline.instance.all_logs(result.run_id)]


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL_S", INTERVAL_S)


def test_a_long_walk_logs_issues_so_far_of_jiras_count_and_each_partition_when_done(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=1000, days=3, latency_ms=300)
    keys = pipeline.partition_keys()
    total = len(pipeline.fake_issues())

    result = pipeline.run("jira_issues_job", keys[0], keys[-1], assets=ISSUES_ONLY)

    assert result.success
    logs = run_logs(pipeline, result)
    so_far = [SO_FAR.match(line) for line in logs if line.startswith("issues: ")
              and "so far" in line and " of ?" not in line]  # fmt: skip
    assert so_far and all(so_far), [line for line in logs if line.startswith("issues: ")]
    counts = [number(match.group(1)) for match in so_far if match]
    assert counts == sorted(counts) and counts[-1] <= total
    assert {number(match.group(2)) for match in so_far if match} == {total}
    [done] = [match for line in logs if (match := DONE.match(line))]
    assert (number(done.group(1)), number(done.group(2))) == (total, total)
    fetched: dict[str | None, Any] = {event.partition: event.metadata["records_fetched"].value
               for event in result.asset_materializations_for_node("jira_issues")}  # fmt: skip
    partitions = [match.groups() for line in logs if (match := PARTITION_DONE.match(line))]
    assert partitions == [(key, f"{fetched[key]:,}", str(n), str(len(keys)))
                          for n, key in enumerate(keys, 1)]  # fmt: skip
    assert sum(fetched.values()) == total
    assert sum(p["records_fetched"] for p in materializations(result, "jira_issues")) == total


def test_the_census_walk_logs_its_ids_so_far_of_jiras_count(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=3, latency_ms=600)
    total = len(pipeline.fake_issues())

    result = pipeline.run("jira_issues_job", pipeline.today, reconcile_deletions=True,
                          assets=ISSUES_ONLY)

    assert result.success
    census = [line for line in run_logs(pipeline, result) if line.startswith("issue census: ids")]
    assert census, "the census walk logged no progress"
    assert all(f" of {total:,} " in line for line in census), census
    assert census[-1].startswith(f"issue census: ids: {total:,} of {total:,} (100%) fetched, done")


def test_a_count_jira_cannot_give_is_said_so_and_the_walk_goes_on() -> None:
    failed: Future[int] = Future()
    failed.set_exception(TimeoutError("no answer"))
    lines: list[str] = []

    class Log:
        def info(self, line: str) -> None:
            lines.append(line)

    ticker = WalkProgress(Log(), "issues", count=lambda: failed, interval_s=INTERVAL_S)
    released = ticker.watch(slow_items(5, ticker))

    assert list(released) == [0, 1, 2, 3, 4]
    assert lines, "no progress line"
    assert "(Jira's count is not available: TimeoutError)" in lines[-1]
    assert lines[-1].startswith("issues: 5 (Jira's count is not available")
    unknown = WalkProgress(None, "issues", count=None)
    assert "(Jira's count is not available for this walk)" in unknown.line()


def slow_items(n: int, ticker: WalkProgress) -> Iterator[int]:
    """A walk whose last item comes only once the ticker has logged (a walk of over an
    interval)."""
    for i in range(n):
        if i == n - 1:
            deadline = time.monotonic() + 30
            while not ticker.lines and time.monotonic() < deadline:
                time.sleep(0.05)
        yield i


def test_the_lines_count_the_rate_limit_waits_of_the_walk(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    # One request a second, none saved up: the walk's concurrent pages always meet a 429, even
    # from a client slowed by a loaded machine (at 4 a second with 2 saved up, a CI run under
    # load once spaced its requests enough to meet none).
    pipeline = pipeline_factory(issues=400, days=1, rate_limit=1, burst=1)

    result = pipeline.run("jira_issues_job", pipeline.today, assets=ISSUES_ONLY)

    assert result.success
    [figures] = materializations(result, "jira_issues")
    assert figures["rate_limit_waits"] > 0
    done = [line for line in run_logs(pipeline, result) if line.startswith("issues: ")
            and "done" in line]  # fmt: skip
    assert len(done) == 1
    assert f", {figures['rate_limit_waits']} rate-limit wait(s) (" in done[0], done[0]


def test_on_data_center_the_lines_count_of_the_search_total(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")  # the fake's PAT: a Data Center site
    pipeline = pipeline_factory(
        issues=600, days=2, latency_ms=300, mode="datacenter", pat="demo-pat"
    )
    keys = pipeline.partition_keys()
    total = len(pipeline.fake_issues())

    result = pipeline.run("jira_issues_job", keys[0], keys[-1], assets=ISSUES_ONLY)

    assert result.success
    so_far = [match for line in run_logs(pipeline, result) if (match := SO_FAR.match(line))]
    assert so_far, "no progress line with Jira's count"
    assert {number(match.group(2)) for match in so_far} == {total}
