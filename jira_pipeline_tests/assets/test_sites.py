"""Several Jira sites in one code location: one asset group per site, prefixed keys, own data."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline.storage.resources import MongoResource


@pytest.fixture
def two_fakes(fake_jira_factory, monkeypatch, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    main = fake_jira_factory(issues=60, days=3, seed=3, now=now)
    other = fake_jira_factory(issues=40, days=3, seed=4, now=now)
    for name in ("MONGODB_URI", "JIRA_PAT", "JIRA_OAUTH_CLIENT_ID", "JIRA_PROJECTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("JIRA_BASE_URL", main.base_url)
    monkeypatch.setenv("JIRA_EMAIL", main.config.email)
    monkeypatch.setenv("JIRA_API_TOKEN", main.config.api_token)
    monkeypatch.setenv("JIRA_SYNC_START_DATE", (now - timedelta(days=4)).date().isoformat())
    monkeypatch.setenv("JIRA_MIN_REQUEST_INTERVAL_MS", "0")
    monkeypatch.setenv("JIRA_PIPELINE_FERNET_KEYS", TokenCipher.generate_key())
    mongo = MongoResource(folder=str(tmp_path / "mongo"))
    connection = ConnectionRepository(mongo.get_database()).add(
        "acme", other.base_url, auth_type="api_token", email=other.config.email,
        access_token=other.config.api_token,
    )
    return main, other, mongo, connection, now


def test_each_registered_connection_gets_its_own_prefixed_group(two_fakes):
    _main, _other, mongo, _connection, _now = two_fakes
    defs = build_definitions(mongo=mongo)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"jira_issues", "acme/jira_issues", "acme/jira_projects"} <= keys
    assert graph.get(dg.AssetKey(["acme", "jira_issues"])).group_name == "jira_acme"
    assert graph.get(dg.AssetKey("jira_issues")).group_name == "jira"
    # Registered sites share one job, one schedule and one sensor (a set per site made the load
    # grow by 0.1 s a site); the environment's site keeps its own.
    assert {job.name for job in defs.jobs or []} >= {"jira_sync_job", "jira_sites_job"}
    assert not any(name.startswith("acme_") for name in
                   [*(j.name for j in defs.jobs or []), *(s.name for s in defs.sensors or [])])
    job = defs.resolve_job_def("jira_sites_job")
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == {
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
    sensor = defs.resolve_sensor_def("jira_sites_refresh_sensor")
    assert {target.job_name for target in sensor.targets} == {"jira_sites_job"}
    assert {target.job_name for target in defs.resolve_sensor_def("jira_refresh_sensor").targets
            } == {"jira_issues_job", "jira_dimensions_job"}  # fmt: skip


def test_each_site_syncs_its_own_issues_under_its_own_connection_id(two_fakes):
    main, other, mongo, connection, now = two_fakes
    defs = build_definitions(mongo=mongo)
    first = (now - timedelta(days=4)).date().isoformat()
    tags = partition_range_tags(first, now.date().isoformat())
    for job_name, selection in (("jira_issues_job", None),
                                ("jira_sites_job", [dg.AssetKey(["acme", "jira_issues"])])):
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), tags=tags, asset_selection=selection
        )
        assert result.success
    issues = mongo.get_database()["jira_issues"]
    main_id = site_connection_id(main.base_url)
    assert {d["key"] for d in issues.find({"connection_id": main_id})} == {
        i["key"] for i in main.admin.issues()
    }
    assert {d["key"] for d in issues.find({"connection_id": connection.id})} == {
        i["key"] for i in other.admin.issues()
    }


def test_no_site_at_all_fails_naming_the_variable(monkeypatch, tmp_path):
    for name in ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT",
                 "JIRA_OAUTH_CLIENT_ID", "MONGODB_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(ConfigurationError, match="JIRA_BASE_URL") as raised:
        build_definitions(mongo=MongoResource(folder=str(tmp_path / "mongo")))
    assert raised.value.variable == "JIRA_BASE_URL"
