"""Fixtures for resilience tests: an environment pointing the code location at a fake Jira, full
syncs through Dagster's own execution, and the stored state compared field by field."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pymongo.database import Database

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.assets.conftest import PIPELINE_VARIABLES

REPO = Path(__file__).resolve().parents[2]
# Modules that give their assets the step RetryPolicy (30 s and more between attempts).
STEP_RETRY_MODULES = ("jira_pipeline.assets.issues", "jira_pipeline.assets.dimensions")
# Written by the sync at a moment of its own choosing; everything else must repeat exactly.
SYNC_TIME_FIELDS = ("synced_at", "first_seen_at")


def this_hour() -> datetime:
    """The fake's pinned start: the dataset repeats within the hour, and the fake's "today" is
    the pipeline's (which reads the wall clock)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class SyncTarget:
    """The code location's environment: one fake Jira, a Dagster home and its embedded store."""

    fake: FakeJiraHandle
    home: Path
    start: date

    @property
    def store_folder(self) -> Path:
        return self.home / "mongo"

    def partition_range(self) -> tuple[str, str]:
        return self.start.isoformat(), datetime.now(UTC).date().isoformat()

    def definitions(self, mongo: MongoResource | None = None) -> dg.Definitions:
        return build_definitions(mongo=mongo or MongoResource(folder=str(self.store_folder)))

    def sync(
        self,
        job: str = "jira_sync_job",
        *,
        defs: dg.Definitions | None = None,
        instance: dg.DagsterInstance | None = None,
        assets: Sequence[str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Every partition (and the job's other assets, or only `assets` of them) in one run,
        as a backfill runs."""
        defs = defs or self.definitions()
        owned = instance is None
        instance = instance or dg.DagsterInstance.ephemeral()
        try:
            return defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=partition_range_tags(*self.partition_range()),
                raise_on_error=False,
                asset_selection=[dg.AssetKey(name) for name in assets] if assets else None,
            )
        finally:
            if owned:
                instance.dispose()

    def sync_process(
        self, job: str = "jira_issues_job", assets: Sequence[str] = ()
    ) -> subprocess.Popen:
        """The same sync in a child process against the persistent instance in `home`."""
        first, last = self.partition_range()
        return subprocess.Popen(
            [sys.executable, "-m", "jira_pipeline_tests.resilience.sync_process", job, first,
             last, *assets],
            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture(autouse=True)
def without_step_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the assets without their step RetryPolicy: `execute_in_process` ignores executor
    retry config, and a retried step waits 30 s or more. Every recovery these tests see is the
    client's own; a failure fails the run at once."""
    for module in STEP_RETRY_MODULES:
        monkeypatch.setattr(f"{module}.NETWORK_RETRY_POLICY", None)


@pytest.fixture
def point_at(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., SyncTarget]]:
    """`point_at(fake, home_name)`: the environment (JIRA_*, DAGSTER_HOME) of a code location
    syncing `fake` into `tmp_path/home_name`; fast client retries, no request spacing."""
    for name in PIPELINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("JIRA_PIPELINE_FERNET_KEYS", raising=False)

    def point(fake: FakeJiraHandle, home_name: str = "home", *, basic_auth: bool = True
              ) -> SyncTarget:
        home = tmp_path / home_name
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_bytes((REPO / "dagster.yaml").read_bytes())
        assert fake.config.now is not None  # the fixture pins the clock
        start = fake.config.now.date() - timedelta(days=fake.config.days + 1)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("JIRA_SYNC_START_DATE", start.isoformat())
        monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "0")
        monkeypatch.setenv("JIRA_RETRY_BASE_S", "0.05")
        monkeypatch.setenv("JIRA_RETRY_CAP_S", "0.5")
        if basic_auth:
            monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
            monkeypatch.setenv("JIRA_EMAIL", fake.config.email)
            monkeypatch.setenv("JIRA_API_TOKEN", fake.config.api_token)
        return SyncTarget(fake=fake, home=home, start=start)

    yield point


@pytest.fixture
def open_store() -> Iterator[Callable[[Path], Database]]:
    """`open_store(folder)`: the embedded store's database, closed at teardown."""
    clients: list[Any] = []

    def open_folder(folder: Path) -> Database:
        client = get_mongo_client(None, folder=folder)
        clients.append(client)
        return client.get_database(MongoResource().database_name())

    yield open_folder
    for client in clients:
        client.close()


def stored_issues(db: Database) -> dict[str, dict[str, Any]]:
    """Every stored issue document by issue id, sync timestamps dropped; fails on duplicates."""
    documents = list(db["jira_issues"].find({}))
    by_id = {doc["issue_id"]: doc for doc in documents}
    assert len(by_id) == len(documents), "two documents hold the same issue id"
    keys = [doc["key"] for doc in documents if not doc.get("is_deleted")]
    assert len(set(keys)) == len(keys), "two live documents hold the same issue key"
    return {
        issue_id: {name: value for name, value in doc.items() if name not in SYNC_TIME_FIELDS}
        for issue_id, doc in by_id.items()
    }


def fake_issue_versions(fake: FakeJiraHandle) -> dict[str, tuple[str, datetime]]:
    """The fake's live issues: id -> (key, updated)."""
    return {
        issue["id"]: (issue["key"], parse_jira_datetime(issue["updated"]))
        for issue in fake.admin.issues()
    }


def stored_versions(db: Database) -> dict[str, tuple[str, datetime]]:
    return {
        issue_id: (doc["key"], doc["updated"])
        for issue_id, doc in stored_issues(db).items()
        if not doc.get("is_deleted")
    }


def run_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The metadata of the run's (first) materialization of `asset`: a single-run backfill gives
    each partition's event the run's API counters, and that partition's own record counts."""
    # By asset key (`acme/jira_projects`, or its node-style `acme__jira_projects`), not node:
    # the dimensions share one step (a multi-asset node).
    events = [event.step_materialization_data.materialization
              for event in result.get_asset_materialization_events()
              if event.asset_key is not None
              and asset in (event.asset_key.to_user_string(),
                            event.asset_key.to_python_identifier())]
    assert events, f"{asset} was not materialized"
    return {key: getattr(value, "value", value) for key, value in events[0].metadata.items()}


def files_holding(folder: Path, secrets: Iterable[str | None]) -> list[tuple[str, int]]:
    """(file, secret number) for each file under `folder` whose bytes hold a secret verbatim."""
    needles = [secret.encode() for secret in secrets if secret]
    assert needles
    found: list[tuple[str, int]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        found += [(str(path), n) for n, needle in enumerate(needles) if needle in content]
    return found
