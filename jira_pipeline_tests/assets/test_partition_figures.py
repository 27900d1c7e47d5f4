"""A run of several partitions (a single-run backfill, the schedule's two days) reports each
partition's own figures on that partition's materialization."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

from jira_pipeline_tests.assets.conftest import Pipeline, day_start, materializations

LOOKBACK = timedelta(minutes=10)  # JIRA_LOOKBACK_MINUTES' default


def test_each_partition_reports_its_own_row_count(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=137, days=3)
    keys = pipeline.partition_keys()[-3:]
    first_start = day_start(date.fromisoformat(keys[0]))
    expected: Counter[str] = Counter()
    for issue in pipeline.fake_issues().values():
        if issue["updated"] < first_start - LOOKBACK:
            continue
        # A lookback record (minutes before the first day) counts for the first partition.
        expected[max(issue["updated"].date().isoformat(), keys[0])] += 1
    assert len(set(expected.values())) > 1  # days of different sizes, or the test proves nothing

    result = pipeline.run("jira_issues_job", keys[0], keys[-1])

    events = result.asset_materializations_for_node("jira_issues")
    figures = {event.partition: meta for event, meta in
               zip(events, materializations(result, "jira_issues"), strict=True)}
    assert set(figures) == set(keys)
    for key in keys:
        assert figures[key]["dagster/row_count"] == expected[key], key
        assert figures[key]["records_fetched"] == expected[key], key
        assert figures[key]["inserted"] == expected[key], key  # a fresh store: all new
        assert figures[key]["updated"] == 0
    assert sum(f["dagster/row_count"] for f in figures.values()) == len(pipeline.stored_issues())

    again = pipeline.run("jira_issues_job", keys[0], keys[-1])

    for meta in materializations(again, "jira_issues"):
        assert (meta["inserted"], meta["updated"]) == (0, 0)
        assert meta["unchanged"] == meta["dagster/row_count"]
