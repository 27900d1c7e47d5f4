"""Upgrading keeps state: a Dagster instance and a store written by the previous release still
mean the same things to the current definitions.

The previous release's state is written here through the public APIs it used, in the formats it
wrote, independent of today's asset code: materializations of `jira_issues` partitions and of
the dimensions under the asset keys users know (plain for the environment's site, prefixed for a
registered connection), the refresh sensor's cursor (`{acknowledged_ms, pending}`, see
assets/sensors.py) in the instance's instigator state under the sensor's name, a succeeded
refresh run answering that cursor's pending request, and a connection document in
`jira_connections` whose token is Fernet-encrypted. The issues are stored by a sync of today's
code run on a throwaway instance, so the instance holds only the records written by hand.

Then the current definitions are loaded the way Dagster loads them (the module workspace.yaml
names, as a code location) and the test reads everything through that public surface: asset
keys, the instance API, the UI's partition status, the sensor by name through the sensor
daemon, the collections. It holds whichever way the definitions are built, on either instance
file (dagster.yaml, and dagster.postgres.yaml when DAGSTER_PG_URL names a server).
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from cryptography.fernet import Fernet
from dagster._core.definitions.repository_definition import RepositoryDefinition
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.remote_representation.external import RemoteRepository
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.client import get_database
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.assets.conftest import PIPELINE_VARIABLES, this_hour

REPO = Path(__file__).resolve().parents[1]
[_LOCATION] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
MODULE = _LOCATION["python_module"]["module_name"]
LOCATION = _LOCATION["python_module"]["location_name"]
REPOSITORY = "__repository__"  # what Dagster names the repository of a Definitions object
SENSOR = "jira_refresh_sensor"
SITES_JOB = "jira_sites_job"  # the registered sites' shared job
DIMENSIONS = ("jira_projects", "jira_statuses", "jira_users")
ENTITIES = (*DIMENSIONS, "jira_issues")
CONNECTION = "acme"
DAYS = 4
# The tags the previous release's refresh runs carried (assets/sensors.py).
REFRESH_TAG, REFRESH_REQUEST_TAG = "jira/refresh", "jira/refresh_request"


def key(site: str | None, entity: str) -> dg.AssetKey:
    return dg.AssetKey([site, entity]) if site else dg.AssetKey(entity)


def materialize_as_before(instance: dg.DagsterInstance, site: str | None,
                          partitions: list[str]) -> None:
    """What the previous release's runs left in the event log, by asset key and partition."""
    for partition in partitions:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key(site, "jira_issues"), partition=partition,
            metadata={"records_fetched": 1, "inserted": 1},
        ))  # fmt: skip
    for dimension in DIMENSIONS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key(site, dimension)))


def succeeded_refresh_run(instance: dg.DagsterInstance, run_key: str) -> str:
    """A refresh run of the previous release that succeeded: the sensor finds it by its tags."""

    @dg.op
    def refreshed() -> None:
        return None

    @dg.job(name="jira_issues_job")
    def previous_refresh() -> None:
        refreshed()

    result = previous_refresh.execute_in_process(
        instance=instance, tags={REFRESH_TAG: "default", REFRESH_REQUEST_TAG: run_key}
    )
    assert result.success
    return result.run_id


def sensor_state_as_before(instance: dg.DagsterInstance, cursor: str) -> None:
    """The refresh sensor's stored state: running, with the previous release's cursor. Dagster
    keys it by code location, repository and sensor name, which the upgrade keeps."""
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name=MODULE, working_directory=str(REPO)),
                location_name=LOCATION,
            ),
            REPOSITORY,
        ),
        SENSOR,
    )  # fmt: skip
    instance.add_instigator_state(InstigatorState(
        origin, InstigatorType.SENSOR, InstigatorStatus.RUNNING,
        SensorInstigatorData(min_interval=300, cursor=cursor, sensor_type=SensorType.STANDARD),
    ))  # fmt: skip


def register_as_before(fake: FakeJiraHandle, fernet_key: str) -> str:
    """The connection document the previous release's `connections add` wrote."""
    connection_id = uuid.uuid4()
    now = datetime.now(UTC)
    get_database()["jira_connections"].insert_one({
        "_id": connection_id, "id": str(connection_id), "name": CONNECTION,
        "site_url": fake.base_url, "cloud_id": None, "email": fake.config.email,
        "auth_type": "api_token",
        "access_token_encrypted": Fernet(fernet_key.encode()).encrypt(
            fake.config.api_token.encode()).decode(),
        "refresh_token_encrypted": None, "refresh_token_sha256": None, "token_expires_at": None,
        "created_at": now, "updated_at": now,
    })  # fmt: skip
    return str(connection_id)


class Location:
    """The current definitions, loaded as Dagster loads the module workspace.yaml names."""

    def __init__(self, workspace: WorkspaceProcessContext) -> None:
        self.workspace = workspace
        request = workspace.create_request_context()
        location = request.get_code_location(LOCATION)
        assert isinstance(location, InProcessCodeLocation)
        self.location = location
        [self.repository] = location.get_repositories().values()
        self.repository_def: RepositoryDefinition = location._get_repo_def(self.repository.name)

    @property
    def remote(self) -> RemoteRepository:
        return self.repository

    def run(self, instance: dg.DagsterInstance, job: str, first: str, last: str,
            assets: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
        """`job` over the partitions first..last; `assets` narrows it, as the registered sites'
        schedule and sensor narrow their shared job to one site."""
        return self.repository_def.get_job(job).execute_in_process(
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
            asset_selection=assets,
        )

    def site_assets(self, site: str) -> list[dg.AssetKey]:
        """A registered site's assets (its group: keys prefixed by its name)."""
        # Materializable only: upstream keys no asset defines yet are stubs in the graph.
        return [asset for asset in self.repository_def.asset_graph.materializable_asset_keys
                if asset.path[0] == site]


def issue_figures(result: dg.ExecuteInProcessResult, asset: dg.AssetKey) -> dict[str, int]:
    """inserted / updated summed over the run's materializations of `asset`."""
    totals = {"inserted": 0, "updated": 0}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == asset:
            for name in totals:
                value: Any = materialization.metadata[name]
                totals[name] += int(getattr(value, "value", value))
    return totals


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeJiraHandle], str]:
    """Point the JIRA_* variables at a fake, as a deployment's environment does; returns the
    Fernet key that encrypts the stored tokens."""
    for name in PIPELINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fernet_key = Fernet.generate_key().decode()

    def point_at(fake: FakeJiraHandle) -> str:
        monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
        monkeypatch.setenv("JIRA_EMAIL", fake.config.email)
        monkeypatch.setenv("JIRA_API_TOKEN", fake.config.api_token)
        start = datetime.now(UTC).date() - timedelta(days=DAYS)
        monkeypatch.setenv("JIRA_SYNC_START_DATE", start.isoformat())
        monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "0")
        monkeypatch.setenv("JIRA_PIPELINE_FERNET_KEYS", fernet_key)
        return fernet_key

    return point_at


@pytest.fixture
def previous_instance(instance_config: dict[str, Any]) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides=instance_config) as instance:
        yield instance


def test_an_upgrade_keeps_keys_partitions_sensor_cursor_and_connections(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    pipeline_env: Callable[[FakeJiraHandle], str],
    previous_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = previous_instance  # its DAGSTER_HOME holds the embedded store too
    site = fake_jira_factory(issues=60, days=3, now=this_hour(), seed=1)
    other = fake_jira_factory(issues=30, days=3, now=this_hour(), seed=2)
    fernet_key = pipeline_env(site)
    today = datetime.now(UTC).date()
    partitions = [(today - timedelta(days=n)).isoformat() for n in range(DAYS, -1, -1)]

    # --- the previous release's state -------------------------------------------------------
    newest_ms = max(to_epoch_ms(parse_jira_datetime(i["updated"])) for i in site.admin.issues())
    through_ms = newest_ms + 1  # distinct from anything stored: only the cursor can say it
    run_key = f"refresh:default:{through_ms}:0123456789ab"
    old_run = succeeded_refresh_run(instance, run_key)
    old_cursor = json.dumps({
        "acknowledged_ms": newest_ms - 3_600_000,
        "pending": {"run_key": run_key, "through_ms": through_ms, "attempt": 0},
    })  # fmt: skip
    sensor_state_as_before(instance, old_cursor)
    # The first partition of the environment's site never ran; every other one did.
    materialize_as_before(instance, None, partitions[1:])
    materialize_as_before(instance, CONNECTION, partitions)
    connection_id = register_as_before(other, fernet_key)

    # --- the current definitions ------------------------------------------------------------
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=MODULE, working_directory=str(REPO)),
        location_name=LOCATION,
    )
    with create_test_daemon_workspace_context(
        InProcessWorkspaceLoadTarget(origin), instance
    ) as workspace:
        current = Location(workspace)
        graph = current.remote.asset_graph

        # The issues the previous release stored (see the module docstring).
        with dg.DagsterInstance.ephemeral() as scratch:
            current.run(scratch, "jira_sync_job", partitions[0], partitions[-1])
            # Registered sites share one job; a run is narrowed to one site's assets.
            current.run(scratch, SITES_JOB, partitions[0], partitions[-1],
                        current.site_assets(CONNECTION))
        db = get_database()
        live = {i["id"] for i in site.admin.issues()}
        assert len(live) == 60

        # Same asset keys: plain for the environment's site, prefixed for the connection.
        keys = set(graph.get_all_asset_keys())
        for entity in ENTITIES:
            assert key(None, entity) in keys
            assert key(CONNECTION, entity) in keys

        # The materialized partitions still count as materialized, as the UI computes them.
        for site_name, expected in ((None, set(partitions[1:])), (CONNECTION, set(partitions))):
            asset = key(site_name, "jira_issues")
            partitions_def = graph.get(asset).partitions_def
            assert partitions_def is not None
            assert set(partitions_def.get_partition_keys()) == set(partitions)
            status = get_and_update_asset_status_cache_value(instance, asset, partitions_def)
            assert status is not None
            materialized = status.deserialize_materialized_partition_subsets(partitions_def)
            assert set(materialized.get_partition_keys()) == expected
        for site_name in (None, CONNECTION):
            for dimension in DIMENSIONS:
                assert instance.get_latest_materialization_event(key(site_name, dimension))

        # The connection's token still decrypts, and its site syncs with it.
        tokens = ConnectionRepository(db).tokens(CONNECTION)
        assert tokens.access_token == other.config.api_token
        assert db["jira_issues"].count_documents({"connection_id": connection_id}) == 30

        # The sensor, found by name, reads the old cursor; one daemon tick settles its pending
        # request (its run succeeded) and asks for nothing already stored.
        sensor = current.remote.get_sensor(SENSOR)
        state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        assert state is not None and state.instigator_data is not None
        assert state.instigator_data.cursor == old_cursor  # type: ignore[union-attr]
        runs_before = {run.run_id for run in instance.get_runs()}
        list(execute_sensor_iteration(workspace, logging.getLogger("upgrade"), None, None))
        state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        assert state is not None
        new_cursor: Any = state.instigator_data.cursor  # type: ignore[union-attr]
        cursor = json.loads(new_cursor)
        assert cursor == {"acknowledged_ms": through_ms, "pending": None}
        ticks = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)
        assert ticks and not ticks[0].run_ids, "the tick after the upgrade requested runs"
        new_runs = [r for r in instance.get_runs() if r.run_id not in runs_before]
        assert not [r for r in new_runs if r.tags.get(REFRESH_TAG) == "default"]
        assert old_run in runs_before

        # A sync after the upgrade converges without refetching what is stored: two edits in
        # Jira, and the next tick asks for today's partition only; its run writes just them.
        touched = sorted(site.admin.issues(), key=lambda i: i["key"])[:2]
        for issue in touched:
            site.admin.touch_issue(issue["key"])
        with dg.build_sensor_context(
            instance=instance, cursor=new_cursor,
            repository_def=current.repository_def,
            resources=current.repository_def.get_top_level_resources(),
        ) as context:
            data = current.repository_def.get_sensor_def(SENSOR).evaluate_tick(context)
        [request] = [r for r in data.run_requests or [] if r.tags.get(REFRESH_TAG)]
        assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == partitions[-1]
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == partitions[-1]
        assert request.job_name is not None
        result = current.run(instance, request.job_name, partitions[-1], partitions[-1])
        assert result.success
        assert issue_figures(result, key(None, "jira_issues")) == {"inserted": 0, "updated": 2}
        stored = {doc["issue_id"]: doc for doc in db["jira_issues"].find(
            {"connection_id": {"$ne": connection_id}, "is_deleted": {"$ne": True}})}
        assert set(stored) == live
        # The connection's site: nothing changed in Jira, so nothing is written.
        again = current.run(instance, SITES_JOB, partitions[-1], partitions[-1],
                            [key(CONNECTION, "jira_issues")])
        assert issue_figures(again, key(CONNECTION, "jira_issues")) == {"inserted": 0,
                                                                       "updated": 0}
