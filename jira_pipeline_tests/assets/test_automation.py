"""`jira_daily_schedule` and `jira_refresh_sensor` evaluated with Dagster's test contexts against
a test instance, the sensor asking the fake Jira over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.sensors import RefreshCursor, missing_dimension_rows
from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.jira.sprints import sprint_ids
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.issue_references import ISSUE_PROJECT_PARTS, ISSUE_REFERENCE_DATA
from jira_pipeline.storage.sprint_references import sprint_field_ids, sprints_not_stored
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.assets.conftest import Pipeline, day_start


def _missing_group_by_group(db: Any, connection: str) -> dict[str, list[str]]:
    """What live issues reference and the dimensions lack, read from each issue whole, a group
    at a time: statuses and users, then each reference of `raw.fields`."""
    live = {"connection_id": connection, "is_deleted": {"$ne": True}}
    issues = list(db["jira_issues"].find(live))

    def lacking(entity: str, ids: set[Any]) -> list[str]:
        spec = entity_spec(entity)
        stored = {str(i) for i in db[spec.collection].distinct(spec.id_field, live)}
        return sorted({str(i) for i in ids if i} - stored)

    missing = {
        "statuses": lacking("statuses", {issue.get("status_id") for issue in issues}),
        "users": lacking("users", {issue.get(field) for issue in issues
                                   for field in ("assignee_account_id", "reporter_account_id")}),
    }
    for entity, name in ISSUE_REFERENCE_DATA + ISSUE_PROJECT_PARTS:
        values = [issue["raw"]["fields"].get(name) for issue in issues]
        ids = {item.get("id") for value in values
               for item in (value if isinstance(value, list) else [value])
               if isinstance(item, dict)}
        missing[entity] = sorted({*missing.get(entity, []), *lacking(entity, ids)})
    return missing


@pytest.fixture
def test_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(set_dagster_home=False) as instance:
        yield instance


def partition_range(request: dg.RunRequest) -> tuple[str, str]:
    return (request.tags[ASSET_PARTITION_RANGE_START_TAG],
            request.tags[ASSET_PARTITION_RANGE_END_TAG])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The daily schedule
# ---------------------------------------------------------------------------------------------


def test_daily_schedule_requests_yesterday_and_today_with_the_dimensions_in_one_run(
    site_env: Callable[..., date], test_instance: dg.DagsterInstance
) -> None:
    site_env(None, days=10)
    schedule = build_definitions().resolve_schedule_def("jira_daily_schedule")
    tick = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    context = dg.build_schedule_context(instance=test_instance, scheduled_execution_time=tick)

    [request] = schedule.evaluate_tick(context).run_requests or []

    today = tick.date()
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.job_name == "jira_sync_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert partition_range(request) == ((today - timedelta(days=1)).isoformat(),
                                        today.isoformat())  # fmt: skip
    assert request.run_key == f"daily:{today.isoformat()}"
    assert request.tags["jira/connection"] == "default"


def test_daily_schedule_never_asks_for_a_day_before_the_first_partition(
    site_env: Callable[..., date], test_instance: dg.DagsterInstance
) -> None:
    start = site_env(None, days=0)
    schedule = build_definitions().resolve_schedule_def("jira_daily_schedule")
    context = dg.build_schedule_context(
        instance=test_instance, scheduled_execution_time=day_start(start) + timedelta(hours=2)
    )

    [request] = schedule.evaluate_tick(context).run_requests or []

    assert partition_range(request) == (start.isoformat(), start.isoformat())


def test_the_run_a_schedule_tick_requests_syncs_yesterday_today_and_the_dimensions(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=4, persistent_instance=True)
    schedule = pipeline.defs.resolve_schedule_def("jira_daily_schedule")
    tick = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    context = dg.build_schedule_context(instance=pipeline.instance, scheduled_execution_time=tick)
    [request] = schedule.evaluate_tick(context).run_requests or []

    result = pipeline.defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=pipeline.instance, tags=request.tags
    )

    assert result.success
    yesterday, today = partition_range(request)
    materialized = {(e.asset_key.to_user_string() if e.asset_key else None, e.partition)
                    for e in result.get_asset_materialization_events()}  # fmt: skip
    assert materialized == {
        ("jira_issues", yesterday), ("jira_issues", today), ("jira_projects", None),
        ("jira_statuses", None), ("jira_users", None), ("jira_issue_daily_summary", yesterday),
        ("jira_issue_daily_summary", today), ("jira_fields", None),
        ("jira_issue_comments", yesterday), ("jira_issue_comments", today),
        ("jira_issue_changelogs", yesterday), ("jira_issue_changelogs", today),
        ("jira_worklogs", None), ("jira_issue_types", None), ("jira_priorities", None),
        ("jira_resolutions", None), ("jira_status_categories", None), ("jira_boards", None),
        ("jira_sprints", None), ("jira_project_versions", None),
        ("jira_project_components", None), ("jira_sprint_report", None),
        *((name, day) for name in ("jira_issue_field_history", "jira_issue_status_transitions",
                                   "jira_time_in_status_daily", "jira_issue_links",
                                   "jira_sprint_issues")
          for day in (yesterday, today)),
    }  # fmt: skip
    window = (day_start(date.fromisoformat(yesterday)), day_start(date.fromisoformat(today))
              + timedelta(days=1))  # fmt: skip
    in_window = {i for i, issue in pipeline.fake_issues().items()
                 if window[0] <= issue["updated"] < window[1]}  # fmt: skip
    assert in_window <= set(pipeline.stored_issues())


# ---------------------------------------------------------------------------------------------
# The refresh sensor
# ---------------------------------------------------------------------------------------------


class SensorTicks:
    """Evaluates the refresh sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sensor = pipeline.defs.resolve_sensor_def("jira_refresh_sensor")
        self.cursor: str | None = None

    def tick(self, cursor: str | None = None) -> Any:
        with dg.build_sensor_context(
            instance=self.pipeline.instance,
            cursor=cursor if cursor is not None else self.cursor,
            resources=self.pipeline.defs.resources,
            definitions=self.pipeline.defs,
        ) as context:
            data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def launch(self, request: dg.RunRequest, *, raise_on_error: bool = True
               ) -> dg.ExecuteInProcessResult:
        """Run what the sensor requested, as the daemon would (in process, same tags)."""
        assert request.job_name is not None
        return self.pipeline.defs.resolve_job_def(request.job_name).execute_in_process(
            instance=self.pipeline.instance, tags=request.tags, raise_on_error=raise_on_error
        )

    def newest_ms(self) -> int:
        return to_epoch_ms(max(i["updated"] for i in self.pipeline.fake_issues().values()))


def issue_requests(data: Any) -> list[dg.RunRequest]:
    return [r for r in data.run_requests or [] if r.job_name == "jira_issues_job"]


def dimension_requests(data: Any) -> list[dg.RunRequest]:
    return [r for r in data.run_requests or [] if r.job_name == "jira_dimensions_job"]


def test_sensor_requests_todays_partition_and_acknowledges_it_only_once_its_run_succeeded(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No re-read behind the cursor (tested on its own below): otherwise the second tick also
    # sees yesterday's last minutes, and whether the seeded data has an issue there depends on
    # the hour the test runs at.
    monkeypatch.setenv("JIRA_CONSISTENCY_LAG_MINUTES", "0")
    pipeline = pipeline_factory(issues=150, days=3, persistent_instance=True)
    sensor = SensorTicks(pipeline)
    admin = pipeline.fake.admin
    admin.touch_issue(admin.issues()[0]["key"])  # at least one update today, whatever the hour
    today = pipeline.today

    first = sensor.tick()
    [request] = first.run_requests or []
    newest = sensor.newest_ms()
    assert request.job_name == "jira_issues_job"
    assert partition_range(request) == (today, today)
    assert request.run_key and request.run_key.startswith(f"refresh:default:{newest}:")
    assert request.tags["jira/connection"] == "default"
    requested = RefreshCursor.parse(first.cursor)
    assert requested is not None and requested.pending is not None
    assert requested.pending.run_key == request.run_key
    assert requested.acknowledged_ms == to_epoch_ms(day_start(date.fromisoformat(today)))

    # The daemon launches a tick's runs before the next tick: one never launched is asked again.
    [again] = sensor.tick().run_requests or []
    assert again.run_key == f"{request.run_key}:retry:1"
    assert partition_range(again) == (today, today)

    assert sensor.launch(again).success
    pipeline.run("jira_dimensions_job")  # so that no dimension refresh is requested either
    quiet = sensor.tick()
    assert not quiet.run_requests and quiet.skip_message
    assert RefreshCursor.parse(quiet.cursor) == RefreshCursor(newest)

    admin.advance_clock(5)
    touched = admin.touch_issue(admin.issues()[1]["key"])
    [later] = sensor.tick().run_requests or []
    moved = parse_jira_datetime(touched["updated"])
    assert moved is not None
    moved_to = to_epoch_ms(moved)
    assert later.run_key and later.run_key.startswith(f"refresh:default:{moved_to}:")
    assert partition_range(later) == (today, today)


def test_the_run_a_sensor_requests_stores_the_change_it_saw(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3, persistent_instance=True)
    pipeline.sync_everything()
    sensor = SensorTicks(pipeline)
    sensor.tick()  # the first tick starts from what is stored
    admin = pipeline.fake.admin
    admin.advance_clock(5)
    key = admin.issues()[0]["key"]
    admin.touch_issue(key, {"summary": "Changed after the last sync"})

    [request] = sensor.tick().run_requests or []
    pipeline.defs.resolve_job_def(request.job_name).execute_in_process(
        instance=pipeline.instance, tags=request.tags
    )

    [doc] = [d for d in pipeline.stored_issues().values() if d["key"] == key]
    assert doc["summary"] == "Changed after the last sync"


def test_sensor_covers_every_partition_between_its_cursor_and_the_newest_update(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=4, persistent_instance=True)
    sensor = SensorTicks(pipeline)
    pipeline.fake.admin.touch_issue(pipeline.fake.admin.issues()[0]["key"])
    # Noon, so that the consistency lag's overlap stays within the day.
    two_days_ago = day_start(datetime.now(UTC).date() - timedelta(days=2)) + timedelta(hours=12)

    data = sensor.tick(RefreshCursor(to_epoch_ms(two_days_ago)).dump())

    [request] = issue_requests(data)
    assert partition_range(request) == (two_days_ago.date().isoformat(), pipeline.today)
    cursor = RefreshCursor.parse(data.cursor)
    assert cursor is not None and cursor.pending is not None
    assert cursor.pending.through_ms == sensor.newest_ms()
    assert cursor.acknowledged_ms == to_epoch_ms(two_days_ago)


def test_sensor_requests_a_dimension_refresh_when_issues_reference_missing_rows(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3, persistent_instance=True)
    keys = pipeline.partition_keys()
    pipeline.run("jira_issues_job", keys[0], keys[-1])  # issues only: no statuses, no users
    sensor = SensorTicks(pipeline)

    first = dimension_requests(sensor.tick())
    # No jira_fields yet either: the sprint field is unknown, so no sprint is missed.
    assert {tuple(k.to_user_string() for k in r.asset_selection or []) for r in first} == {
        ("jira_statuses",), ("jira_users",), ("jira_issue_types",), ("jira_priorities",),
        ("jira_resolutions",), ("jira_project_versions",), ("jira_project_components",),
    }  # fmt: skip
    assert all(r.run_key and r.run_key.startswith("dimension:default:") for r in first)
    # Still missing on the next tick: the same run keys, so Dagster launches each refresh once.
    assert {r.run_key for r in dimension_requests(sensor.tick())} == {r.run_key for r in first}

    pipeline.run("jira_dimensions_job")
    assert not dimension_requests(sensor.tick())

    referenced = next(iter(pipeline.stored_issues().values()))["reporter_account_id"]
    pipeline.db["jira_users"].delete_one({"account_id": referenced})
    [users_only] = dimension_requests(sensor.tick())
    assert [k.to_user_string() for k in users_only.asset_selection or []] == ["jira_users"]

    pipeline.run("jira_dimensions_job")
    priority = next(iter(pipeline.stored_issues().values()))["raw"]["fields"]["priority"]["id"]
    pipeline.db["jira_priorities"].delete_one({"priority_id": priority})
    referenced = {s["id"] for issue in pipeline.stored_issues().values()
                  for s in issue["raw"]["fields"].get("customfield_10020") or ()}
    assert referenced, "some issue of the fake is in a sprint"
    pipeline.db["jira_sprints"].delete_one({"sprint_id": str(min(referenced))})
    assert {tuple(k.to_user_string() for k in r.asset_selection or [])
            for r in dimension_requests(sensor.tick())} == {
        ("jira_priorities",), ("jira_sprints",)}


def test_one_projected_pass_over_the_issues_finds_every_missing_referenced_row(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sensor's tick reads the stored issues once for every dimension's missing rows, and
    finds what the checks' three separate passes find."""
    pipeline = pipeline_factory(issues=60, days=3)
    assert pipeline.sync_everything().success
    db, connection = pipeline.db, site_connection_id(pipeline.fake.base_url)
    issues = list(pipeline.stored_issues().values())
    fields = [issue["raw"]["fields"] for issue in issues]
    sprint = min(int(s["id"]) for f in fields for s in f.get("customfield_10020") or ())
    version = next(v["id"] for f in fields for v in f["fixVersions"])
    component = next(c["id"] for f in fields for c in f["components"])
    for collection, selector in (
        ("jira_statuses", {"status_id": issues[0]["status_id"]}),
        ("jira_users", {"account_id": issues[0]["reporter_account_id"]}),
        ("jira_priorities", {"priority_id": fields[0]["priority"]["id"]}),
        ("jira_issue_types", {"issue_type_id": fields[0]["issuetype"]["id"]}),
        ("jira_project_versions", {"version_id": version}),
        ("jira_project_components", {"component_id": component}),
        ("jira_sprints", {"sprint_id": str(sprint)}),
    ):
        assert db[collection].delete_one(selector).deleted_count == 1, collection
    expected = _missing_group_by_group(db, connection)
    live = {"connection_id": connection, "is_deleted": {"$ne": True}}
    sprint_fields = sprint_field_ids(db, connection)
    expected["sprints"] = sprints_not_stored(db, connection, {
        sprint_id for issue in db["jira_issues"].find(live) for field in sprint_fields
        for sprint_id in sprint_ids(issue["raw"]["fields"].get(field))})
    collection_type = type(db["jira_issues"])
    real_find = collection_type.find
    passes: list[Any] = []

    def counted_find(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == "jira_issues":
            passes.append(args[1] if len(args) > 1 else kwargs.get("projection"))
        return real_find(self, *args, **kwargs)

    monkeypatch.setattr(collection_type, "find", counted_find)

    missing = missing_dimension_rows(db, connection)

    assert len(passes) == 1 and passes[0]["_id"] == 0, passes
    assert "raw" not in passes[0], "projected, never the whole raw JSON"
    assert missing == expected
    assert list(missing) == list(expected), "refreshes are requested in the same order"
    assert {entity for entity, ids in missing.items() if ids} == {
        "statuses", "users", "priorities", "issue_types", "project_versions",
        "project_components", "sprints"}


@pytest.fixture
def synced_for_sensor(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> tuple[Pipeline, SensorTicks]:
    """A site synced whole, its sensor past its first tick. Steps are built without their
    RetryPolicy: a run failed on purpose here fails at once (it would wait 30 s and more)."""
    for module in ("jira_pipeline.assets.issues", "jira_pipeline.assets.dimensions"):
        monkeypatch.setattr(f"{module}.NETWORK_RETRY_POLICY", None)
    pipeline = pipeline_factory(issues=100, days=3, persistent_instance=True)
    assert pipeline.sync_everything().success
    sensor = SensorTicks(pipeline)
    assert not sensor.tick().run_requests  # everything Jira shows is stored
    return pipeline, sensor


def stored_summary(pipeline: Pipeline, key: str) -> str:
    [doc] = [d for d in pipeline.stored_issues().values() if d["key"] == key]
    return doc["summary"]


def test_sensor_rerequests_changes_after_a_failed_run(
    synced_for_sensor: tuple[Pipeline, SensorTicks], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, sensor = synced_for_sensor
    admin = pipeline.fake.admin
    admin.advance_clock(5)
    key = admin.issues()[0]["key"]
    admin.touch_issue(key, {"summary": "Changed before a failed run"})
    [first] = issue_requests(sensor.tick())

    monkeypatch.setenv("JIRA_API_TOKEN", "revoked-token")
    failed = sensor.launch(first, raise_on_error=False)
    assert not failed.success
    monkeypatch.setenv("JIRA_API_TOKEN", pipeline.fake.config.api_token)

    [again] = issue_requests(sensor.tick())
    assert again.run_key == f"{first.run_key}:after:{failed.run_id}"
    assert partition_range(again) == partition_range(first)
    assert sensor.launch(again).success
    assert stored_summary(pipeline, key) == "Changed before a failed run"

    settled = sensor.tick()
    assert not issue_requests(settled)
    assert RefreshCursor.parse(settled.cursor) == RefreshCursor(sensor.newest_ms())


def test_sensor_never_launches_two_runs_for_one_change(
    synced_for_sensor: tuple[Pipeline, SensorTicks],
) -> None:
    pipeline, sensor = synced_for_sensor
    admin = pipeline.fake.admin
    admin.advance_clock(5)
    first_key, second_key = (row["key"] for row in admin.issues()[:2])
    admin.touch_issue(first_key, {"summary": "First change"})
    [first] = issue_requests(sensor.tick())
    # Launched, not finished: what the daemon leaves behind while the run waits or works.
    job = pipeline.defs.resolve_job_def("jira_issues_job")
    running = pipeline.instance.create_run_for_job(
        job, tags=first.tags, status=dg.DagsterRunStatus.STARTED
    )

    admin.advance_clock(5)
    admin.touch_issue(second_key, {"summary": "Second change"})
    for _ in range(2):
        waiting = sensor.tick()
        assert not issue_requests(waiting)
        assert running.run_id in (waiting.skip_message or "")

    pipeline.instance.report_run_canceled(running)
    [after] = issue_requests(sensor.tick())
    assert after.run_key and after.run_key.endswith(f":after:{running.run_id}")
    assert sensor.launch(after).success
    assert stored_summary(pipeline, first_key) == "First change"
    assert stored_summary(pipeline, second_key) == "Second change"
    assert not issue_requests(sensor.tick())


def test_sensor_window_overlaps_the_cursor_by_the_consistency_lag(
    synced_for_sensor: tuple[Pipeline, SensorTicks],
) -> None:
    pipeline, sensor = synced_for_sensor
    admin = pipeline.fake.admin
    late_key, early_key = (row["key"] for row in admin.issues()[:2])
    # Jira Cloud's index shows some updates later than newer ones.
    admin.configure(search_lag_s=120)
    admin.touch_issue(late_key, {"summary": "Indexed two minutes late"})
    admin.configure(search_lag_s=0)
    admin.advance_clock(5)
    admin.touch_issue(early_key, {"summary": "Indexed at once"})

    [first] = issue_requests(sensor.tick())
    assert sensor.launch(first).success
    assert stored_summary(pipeline, early_key) == "Indexed at once"
    assert stored_summary(pipeline, late_key) != "Indexed two minutes late"
    assert not issue_requests(sensor.tick())  # the run succeeded: acknowledged past both edits

    admin.advance_clock(121)
    [late] = issue_requests(sensor.tick())
    assert sensor.launch(late).success
    assert stored_summary(pipeline, late_key) == "Indexed two minutes late"
