"""Many registered sites: one schedule and one sensor cover them all, a tick asks every site's
Jira (concurrently), keeps a cursor per site, and one site failing never stops the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.sensors import RefreshCursor, parse_site_cursors
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import to_epoch_ms
from jira_pipeline_tests.assets.conftest import PIPELINE_VARIABLES, day_start, this_hour

SITES = ("acme", "globex")


@dataclass
class Sites:
    fakes: dict[str, FakeJiraHandle]
    mongo: MongoResource
    instance: dg.DagsterInstance

    def defs(self) -> dg.Definitions:
        return build_definitions(mongo=self.mongo)

    def register(self, name: str, fake: FakeJiraHandle, token: str | None = None) -> None:
        ConnectionRepository(self.mongo.get_database()).add(
            name, fake.base_url, auth_type="api_token", email=fake.config.email,
            access_token=token or fake.config.api_token,
        )

    def tick(self, defs: dg.Definitions, cursor: str | None = None) -> Any:
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=defs.resources, definitions=defs
        ) as context:
            return defs.resolve_sensor_def("jira_sites_refresh_sensor").evaluate_tick(context)


@pytest.fixture
def sites(fake_jira_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
          ) -> Iterator[Sites]:
    """Two registered sites on two fakes (each with an issue updated now); no site of the
    environment."""
    for name in PIPELINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    now = this_hour()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("JIRA_SYNC_START_DATE", (now - timedelta(days=5)).date().isoformat())
    monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "0")
    monkeypatch.setenv("JIRA_PIPELINE_FERNET_KEYS", TokenCipher.generate_key())
    fakes = {name: fake_jira_factory(issues=40, days=3, seed=n, now=now)
             for n, name in enumerate(SITES, start=3)}  # fmt: skip
    mongo = MongoResource(folder=str(tmp_path / "mongo"))
    with dg.instance_for_test(set_dagster_home=False) as instance:
        registered = Sites(fakes, mongo, instance)
        for name, fake in fakes.items():
            fake.admin.touch_issue(fake.admin.issues()[0]["key"])
            registered.register(name, fake)
        yield registered
    mongo.close()


def issue_requests(data: Any) -> dict[str, dg.RunRequest]:
    """The tick's issue runs, by the site whose `jira_issues` each one selects."""
    found = {}
    for request in data.run_requests or []:
        # A refresh selects the site's issues and what follows them (comments, changelogs,
        # worklogs, history).
        [key] = [k for k in request.asset_selection or [] if k.path[-1] == "jira_issues"] or [None]
        if key is not None:
            found[key.path[0]] = request
    return found


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string()
            for event in result.get_asset_materialization_events() if event.asset_key}


def partition_range(request: dg.RunRequest) -> tuple[str, str]:
    return (request.tags[ASSET_PARTITION_RANGE_START_TAG],
            request.tags[ASSET_PARTITION_RANGE_END_TAG])  # fmt: skip


def test_one_tick_asks_every_site_and_each_request_syncs_only_its_own_site(sites: Sites) -> None:
    defs = sites.defs()
    today = datetime.now(UTC).date().isoformat()

    first = sites.tick(defs)

    requests = issue_requests(first)
    assert set(requests) == set(SITES)
    for name, request in requests.items():
        assert request.job_name == "jira_sites_job"
        assert request.tags["jira/connection"] == request.tags["jira/issues"] == name
        assert partition_range(request) == (today, today)
        assert request.run_key and request.run_key.startswith(f"refresh:{name}:")
    cursors = parse_site_cursors(first.cursor)
    assert set(cursors) == set(SITES)
    assert all(c.pending is not None for c in cursors.values())

    acme = requests["acme"]
    result = defs.resolve_job_def("jira_sites_job").execute_in_process(
        instance=sites.instance, tags=acme.tags, asset_selection=acme.asset_selection
    )
    assert result.success
    assert materialized(result) == {
        "acme/jira_issues", "acme/jira_issue_comments", "acme/jira_issue_changelogs",
        "acme/jira_worklogs", "acme/jira_issue_field_history",
        "acme/jira_issue_status_transitions", "acme/jira_time_in_status_daily",
        "acme/jira_issue_links", "acme/jira_sprint_issues", "acme/jira_sprint_report"}

    second = sites.tick(defs, first.cursor)
    # acme's change is stored and acknowledged; globex's run never ran: asked again.
    assert set(issue_requests(second)) == {"globex"}
    after = parse_site_cursors(second.cursor)
    assert after["acme"].pending is None
    assert after["acme"].acknowledged_ms >= cursors["acme"].pending.through_ms  # type: ignore[union-attr]


def test_a_site_failing_in_a_tick_is_skipped_and_keeps_its_cursor(sites: Sites) -> None:
    sites.register("revoked", sites.fakes["acme"], token="a-revoked-token")  # answers 401
    defs = sites.defs()
    noon = day_start(datetime.now(UTC).date() - timedelta(days=1)) + timedelta(hours=12)
    kept = RefreshCursor(to_epoch_ms(noon))
    cursor = json.dumps({"sites": {"revoked": {"acknowledged_ms": kept.acknowledged_ms,
                                                "pending": None}}})  # fmt: skip

    data = sites.tick(defs, cursor)

    assert set(issue_requests(data)) == set(SITES)
    assert not any(r.tags.get("jira/connection") == "revoked" for r in data.run_requests or [])
    assert parse_site_cursors(data.cursor)["revoked"] == kept


def test_the_cursor_a_per_site_sensor_left_is_carried_on_after_the_upgrade(
    sites: Sites,
) -> None:
    # The previous release had a sensor per site; its cursor is in the instance.
    two_days_ago = day_start(datetime.now(UTC).date() - timedelta(days=2)) + timedelta(hours=12)
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="jira_pipeline.definitions"),
        location_name="jira_pipeline",
    )
    sites.instance.add_instigator_state(InstigatorState(
        RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"),
                               "acme_jira_refresh_sensor"),
        InstigatorType.SENSOR,
        InstigatorStatus.RUNNING,
        SensorInstigatorData(cursor=RefreshCursor(to_epoch_ms(two_days_ago)).dump()),
    ))  # fmt: skip

    requests = issue_requests(sites.tick(sites.defs()))

    today = datetime.now(UTC).date().isoformat()
    # acme goes on from its old mark (two days back); globex, never ticked, starts today.
    assert partition_range(requests["acme"]) == (two_days_ago.date().isoformat(), today)
    assert partition_range(requests["globex"]) == (today, today)


def test_one_schedule_tick_requests_a_daily_run_per_site_of_that_sites_assets(
    sites: Sites,
) -> None:
    defs = sites.defs()
    schedule = defs.resolve_schedule_def("jira_sites_daily_schedule")
    tick = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    context = dg.build_schedule_context(instance=sites.instance, scheduled_execution_time=tick)

    requests = schedule.evaluate_tick(context).run_requests or []

    today = tick.date()
    assert {r.tags["jira/connection"] for r in requests} == set(SITES)
    [acme] = [r for r in requests if r.tags["jira/connection"] == "acme"]
    assert acme.run_key == f"daily:acme:{today.isoformat()}"
    assert acme.tags["jira/census"] == "true"
    assert partition_range(acme) == ((today - timedelta(days=1)).isoformat(), today.isoformat())
    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=sites.instance, tags=acme.tags, asset_selection=acme.asset_selection
    )
    assert result.success
    assert materialized(result) == {
        "acme/jira_projects", "acme/jira_statuses", "acme/jira_users", "acme/jira_issues",
        "acme/jira_issue_daily_summary", "acme/jira_fields", "acme/jira_issue_comments",
        "acme/jira_issue_changelogs",
        "acme/jira_worklogs",
        "acme/jira_issue_field_history", "acme/jira_issue_status_transitions",
        "acme/jira_time_in_status_daily",
        "acme/jira_issue_types", "acme/jira_priorities", "acme/jira_resolutions",
        "acme/jira_status_categories", "acme/jira_boards", "acme/jira_sprints",
        "acme/jira_project_versions", "acme/jira_project_components", "acme/jira_issue_links",
        "acme/jira_sprint_issues", "acme/jira_sprint_report",
    }  # fmt: skip


def test_sites_a_tick_has_no_time_for_keep_their_cursor_and_are_asked_on_the_next(
    sites: Sites, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = sites.defs()
    noon = day_start(datetime.now(UTC).date() - timedelta(days=1)) + timedelta(hours=12)
    kept = RefreshCursor(to_epoch_ms(noon))
    cursor = json.dumps({"sites": {"acme": {"acknowledged_ms": kept.acknowledged_ms,
                                             "pending": None}}})  # fmt: skip
    monkeypatch.setattr("jira_pipeline.assets.sensors.TICK_BUDGET_S", -1.0)

    spent = sites.tick(defs, cursor)

    assert not spent.run_requests
    assert parse_site_cursors(spent.cursor) == {"acme": kept}
    assert "acme" in (spent.skip_message or "") and "globex" in (spent.skip_message or "")

    monkeypatch.setattr("jira_pipeline.assets.sensors.TICK_BUDGET_S", 40.0)
    requests = issue_requests(sites.tick(defs, spent.cursor))
    assert set(requests) == set(SITES)
    assert partition_range(requests["acme"])[0] == noon.date().isoformat()


def test_ticks_that_reach_one_site_each_take_the_sites_in_turn(
    sites: Sites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jira_pipeline.assets.sensors.SITES_PER_TICK", 1)
    defs = sites.defs()

    first = sites.tick(defs)
    second = sites.tick(defs, first.cursor)
    third = sites.tick(defs, second.cursor)

    assert set(issue_requests(first)) == {"acme"}
    assert json.loads(first.cursor)["after"] == "acme"
    assert set(issue_requests(second)) == {"globex"}
    # The round starts over; acme's first request never ran, so it is asked again.
    assert set(issue_requests(third)) == {"acme"}
    # A site not reached keeps its cursor; each reached one has its own.
    assert set(parse_site_cursors(first.cursor)) == {"acme"}
    assert set(parse_site_cursors(second.cursor)) == {"acme", "globex"}
    assert parse_site_cursors(second.cursor)["acme"] == parse_site_cursors(first.cursor)["acme"]


def test_a_site_registered_between_ticks_gets_its_turn_in_the_round(
    sites: Sites, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jira_pipeline.assets.sensors.SITES_PER_TICK", 1)
    first = sites.tick(sites.defs())
    assert set(issue_requests(first)) == {"acme"}

    sites.register("beta", sites.fakes["acme"])  # between acme and globex in the round
    defs = sites.defs()
    second = sites.tick(defs, first.cursor)
    third = sites.tick(defs, second.cursor)

    assert set(issue_requests(second)) == {"beta"}
    assert set(issue_requests(third)) == {"globex"}
    assert set(parse_site_cursors(third.cursor)) == {"acme", "beta", "globex"}
