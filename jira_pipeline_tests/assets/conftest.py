"""Fixtures for the Dagster layer: a fake Jira site, the environment pointing at it, an embedded
store in the test's folder, and the code location built from that environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from pymongo.database import Database

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import parse_jira_datetime

# Variables that decide what the code location builds; each test starts without any of them.
PIPELINE_VARIABLES = (
    "JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT", "JIRA_DEPLOYMENT",
    "JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET", "JIRA_CLOUD_ID", "JIRA_OAUTH_ORIGIN",
    "JIRA_SYNC_START_DATE", "JIRA_PROJECTS", "JIRA_LOOKBACK_MINUTES", "JIRA_SCHEDULE_CRON",
    "JIRA_SENSOR_INTERVAL_S", "JIRA_FRESHNESS_TOLERANCE_MINUTES", "JIRA_MIN_REQUEST_INTERVAL_MS",
    "JIRA_MAX_IN_FLIGHT", "JIRA_TIMEOUT_S", "JIRA_RETRY_ATTEMPTS", "JIRA_RETRY_BASE_S",
    "JIRA_RETRY_CAP_S", "JIRA_VERIFY_TLS", "MONGODB_URI", "MONGODB_DATABASE", "DAGSTER_HOME",
    "JIRA_CONSISTENCY_LAG_MINUTES",
)  # fmt: skip
DIMENSIONS = ("jira_projects", "jira_statuses", "jira_users", "jira_fields", "jira_issue_types",
              "jira_priorities", "jira_resolutions", "jira_status_categories", "jira_boards",
              "jira_sprints", "jira_project_versions", "jira_project_components")
# For tests that only load definitions: nothing may contact this site.
MADE_UP_SITE = "https://acme-test.atlassian.net"
MADE_UP_TOKEN = "made-up-api-token-4f1c9e"


def this_hour() -> datetime:
    """The fake's pinned start: the dataset repeats within the hour and the fake's "today" is
    the pipeline's (which reads the wall clock)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class Pipeline:
    """The code location built against one fake Jira, its embedded store, and a Dagster instance
    that remembers the runs of one test."""

    fake: FakeJiraHandle
    defs: dg.Definitions
    db: Database
    instance: dg.DagsterInstance
    start_date: date
    mongo: MongoResource = field(repr=False)

    @property
    def today(self) -> str:
        return datetime.now(UTC).date().isoformat()

    def partition_keys(self) -> list[str]:
        partitions = self.defs.resolve_assets_def("jira_issues").partitions_def
        assert partitions is not None
        return list(partitions.get_partition_keys())

    def run(
        self,
        job_name: str,
        first: str | None = None,
        last: str | None = None,
        *,
        lookback_minutes: int | None = None,
        reconcile_deletions: bool | None = None,
        raise_on_error: bool = True,
        assets: Sequence[str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """One in-process run of a job; `first`..`last` is its partition range (one run);
        `assets`: only these of the job's assets (what a test of `jira_issues` alone needs:
        the followers' per-issue requests cost a Data Center fake with latency minutes)."""
        tags = partition_range_tags(first, last or first) if first else {}
        issue_config = {
            name: value
            for name, value in (
                ("lookback_minutes", lookback_minutes),
                ("reconcile_deletions", reconcile_deletions),
            )
            if value is not None
        }
        run_config = {"ops": {"jira_issues": {"config": issue_config}}} if issue_config else None
        return self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, tags=tags, run_config=run_config,
            raise_on_error=raise_on_error,
            asset_selection=[dg.AssetKey(name) for name in assets] if assets else None,
        )

    def sync_everything(self) -> dg.ExecuteInProcessResult:
        keys = self.partition_keys()
        return self.run("jira_sync_job", keys[0], keys[-1])

    def stored_issues(self, *, deleted: bool | None = False) -> dict[str, dict[str, Any]]:
        """Stored issue documents by issue id: live ones, deleted ones (True) or all (None)."""
        selector: dict[str, Any] = {}
        if deleted is not None:
            selector["is_deleted"] = deleted
        return {doc["issue_id"]: doc for doc in self.db["jira_issues"].find(selector)}

    def fake_issues(self) -> dict[str, dict[str, Any]]:
        """The fake's live issues by id, `updated` parsed to an aware UTC datetime."""
        return {
            issue["id"]: {**issue, "updated": parse_jira_datetime(issue["updated"])}
            for issue in self.fake.admin.issues()
        }


class InFlight(httpx.AsyncBaseTransport):
    """HTTP to the fake, counting the requests under way at once whose path ends with one of
    `suffixes` (the fake's latency holds each in flight before it answers); a path ending with
    `forbidden` is answered 403, as by a site that hides it from the account."""

    def __init__(self, *suffixes: str, forbidden: str | None = None) -> None:
        self._http = httpx.AsyncHTTPTransport()
        self._suffixes = suffixes
        self._forbidden = forbidden
        self.now = self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._forbidden and request.url.path.endswith(self._forbidden):
            return httpx.Response(403, json={"errorMessages": ["You cannot see this."]})
        if not request.url.path.endswith(self._suffixes):
            return await self._http.handle_async_request(request)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self._http.handle_async_request(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self._http.aclose()


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dict[str, Any]]:
    """The metadata of each materialization of `asset` in a run (one per partition)."""
    # By asset key (`acme/jira_projects`, or its node-style `acme__jira_projects`), not node:
    # the dimensions share one step (a multi-asset node).
    events = [event.step_materialization_data.materialization
              for event in result.get_asset_materialization_events()
              if event.asset_key is not None
              and asset in (event.asset_key.to_user_string(),
                            event.asset_key.to_python_identifier())]
    return [
        {key: getattr(value, "value", value) for key, value in event.metadata.items()}
        for event in events
    ]


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """Each check evaluation of a run, by (asset key, check name)."""
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


@pytest.fixture
def site_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., date]:
    """Point the environment at a Jira site: `site_env(fake, days=N)` sets the JIRA_* variables
    (a fake's, or a made-up Cloud site's for None) and DAGSTER_HOME, so the embedded store lives
    in tmp_path; returns the first partition, N days ago."""
    for name in PIPELINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def point_at(fake: FakeJiraHandle | None, *, days: int) -> date:
        start = datetime.now(UTC).date() - timedelta(days=days)
        if fake is None:
            monkeypatch.setenv("JIRA_BASE_URL", MADE_UP_SITE)
            monkeypatch.setenv("JIRA_EMAIL", "someone@example.com")
            monkeypatch.setenv("JIRA_API_TOKEN", MADE_UP_TOKEN)
        else:
            monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
            monkeypatch.setenv("JIRA_EMAIL", fake.config.email)
            monkeypatch.setenv("JIRA_API_TOKEN", fake.config.api_token)
        monkeypatch.setenv("JIRA_SYNC_START_DATE", start.isoformat())
        monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "0")
        home = tmp_path / "dagster_home"
        home.mkdir(exist_ok=True)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        return start

    return point_at


@pytest.fixture
def pipeline_factory(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    site_env: Callable[..., date],
    tmp_path: Path,
) -> Iterator[Callable[..., Pipeline]]:
    """`pipeline_factory(issues=300, days=5, **fake_config)`: a fake Jira (clock pinned to this
    hour), the definitions built from an environment pointing at it, and a Dagster instance."""
    opened = ExitStack()

    def build(
        *, issues: int = 300, days: int = 5, persistent_instance: bool = False, **config: Any
    ) -> Pipeline:
        config.setdefault("now", this_hour())
        config.setdefault("seed", 1)
        fake = fake_jira_factory(issues=issues, days=days, **config)
        # One day more than the dataset spans, so every seeded issue lies in some partition.
        start = site_env(fake, days=days + 1)
        folder = tmp_path / "dagster_home" / "mongo"
        mongo = MongoResource(folder=str(folder))
        client = get_mongo_client(None, folder=folder)
        opened.callback(client.close)
        opened.callback(mongo.close)
        # In memory by default (fast); a persistent test instance (SQLite files in their own
        # folder, as a deployment has) where ticks and runs are the point.
        instance = (
            opened.enter_context(dg.instance_for_test(set_dagster_home=False))
            if persistent_instance
            else opened.enter_context(dg.DagsterInstance.ephemeral())
        )
        return Pipeline(
            fake=fake,
            defs=build_definitions(mongo=mongo),
            db=client.get_database(mongo.database_name()),
            instance=instance,
            start_date=start,
            mongo=mongo,
        )

    with opened:
        yield build
