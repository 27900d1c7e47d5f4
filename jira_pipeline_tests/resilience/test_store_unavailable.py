"""An unreachable MongoDB or an unwritable embedded store: the failure names the store and comes
before anything is fetched or written."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.client import StoreUnavailableError
from jira_pipeline.storage.io_manager import MongoUpsertIOManager
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline_tests.resilience.conftest import SyncTarget, this_hour

STORE_PASSWORD = "store-password-77c1"


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no one can create, root included: its parent is a regular file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's parent folder should be")
    return blocker / "mongo"


def test_unreachable_mongodb_fails_loading_naming_the_server_and_hiding_its_password(
    monkeypatch: pytest.MonkeyPatch, point_at: Callable[..., SyncTarget],
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    point_at(fake_jira_factory(issues=10, days=1, now=this_hour()))
    port = closed_loopback_port()
    monkeypatch.setenv("MONGODB_URI", f"mongodb://sync:{STORE_PASSWORD}@127.0.0.1:{port}/")

    with pytest.raises(StoreUnavailableError) as failure:
        build_definitions()

    assert f"127.0.0.1:{port}" in str(failure.value)
    assert STORE_PASSWORD not in str(failure.value)


def test_unwritable_embedded_store_fails_loading_naming_the_folder(
    tmp_path: Path, point_at: Callable[..., SyncTarget],
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    point_at(fake_jira_factory(issues=10, days=1, now=this_hour()))
    folder = unwritable_folder(tmp_path)

    with pytest.raises(StoreUnavailableError) as failure:
        build_definitions(mongo=MongoResource(folder=str(folder)))

    assert str(folder) in str(failure.value)
    assert not folder.exists()


def test_store_lost_after_loading_fails_the_run_naming_it_before_fetching_or_claiming(
    tmp_path: Path, point_at: Callable[..., SyncTarget],
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(issues=200, days=3, now=this_hour())
    target = point_at(fake)
    defs = target.definitions()
    folder = unwritable_folder(tmp_path)
    lost = MongoResource(folder=str(folder))

    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("jira_issues_job").execute_in_process(
            instance=instance, tags=partition_range_tags(*target.partition_range()),
            resources={"mongo": lost, "mongo_io_manager": MongoUpsertIOManager(mongo=lost)},
            raise_on_error=False,
        )

        assert not result.success
        [failure] = [event for event in result.all_events if event.is_step_failure]
        assert str(folder) in str(failure.step_failure_data.error)
        assert instance.get_materialized_partitions(dg.AssetKey("jira_issues")) == set()
    searches = {endpoint: counts for endpoint, counts in fake.admin.stats()["requests"].items()
                if "search" in endpoint}
    assert searches == {}
    assert not folder.exists()
