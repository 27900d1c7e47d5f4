"""`jira_project_versions` and `jira_project_components`: full-refresh dimensions asked project
by project, equal to what the fake lists (Cloud and Data Center), paged, vanished rows marked
deleted and revived, a project that 404s skipped and counted, and the check that every version
and component a live issue names is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from jira_pipeline.assets.dimensions import StepListings
from jira_pipeline.assets.project_parts import PROJECT_COMPONENTS, PROJECT_VERSIONS
from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.jira import BasicAuth, JiraClient, RateLimiter
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.indexes import PROJECT_PART_INDEX_NAMES
from jira_pipeline_tests.assets.conftest import (
    InFlight,
    Pipeline,
    check_results,
    materializations,
)
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json, walk_offset_pages

ID_FIELDS = {"jira_project_versions": "version_id", "jira_project_components": "component_id"}


def stored(pipeline: Pipeline, collection: str, **selector: object) -> dict[str, dict]:
    return {doc[ID_FIELDS[collection]]: doc for doc in pipeline.db[collection].find(selector)}


def served(pipeline: Pipeline, *, datacenter: bool = False) -> dict[str, list[dict]]:
    """What the fake lists, project by project, from the resources the walks read (Cloud's
    paged component list carries issue counts; Data Center's unpaged one lead names)."""
    fake = pipeline.fake
    if datacenter:
        client = httpx.Client(base_url=fake.base_url,
                              headers={"Authorization": f"Bearer {fake.config.pat}"})
    else:
        client = basic_client(fake)
    with client:
        if datacenter:
            keys = [p["key"] for p in ok_json(client.get("/rest/api/2/project"))]
            components = [c for key in keys for c in ok_json(
                client.get(f"/rest/api/2/project/{key}/components"))]
        else:
            keys = [p["key"] for p in walk_offset_pages(client, "/rest/api/3/project/search",
                                                        50)[0]]
            components = [c for key in keys for c in walk_offset_pages(
                client, f"/rest/api/3/project/{key}/component", 50)[0]]
        prefix = "/rest/api/2" if datacenter else "/rest/api/3"
        versions = [v for key in keys for v in ok_json(
            client.get(f"{prefix}/project/{key}/versions"))]
    return {"jira_project_versions": versions, "jira_project_components": components}


def test_versions_and_components_are_stored_as_jira_lists_them(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)

    result = pipeline.run("jira_dimensions_job")
    requests = pipeline.fake.admin.stats()["requests"]

    connection = site_connection_id(pipeline.fake.base_url)
    lists = served(pipeline)
    checks = check_results(result)
    projects = {doc["project_id"]: doc["key"] for doc in pipeline.db["jira_projects"].find()}
    for collection, rows in lists.items():
        docs = stored(pipeline, collection)
        assert set(docs) == {row["id"] for row in rows} and len(docs) == len(rows), collection
        assert {d["connection_id"] for d in docs.values()} == {connection}
        assert all(d["is_deleted"] is False and d["synced_at"] for d in docs.values())
        assert all(projects[d["project_id"]] == d["project_key"] for d in docs.values())
        [meta] = materializations(result, collection)
        assert meta["records_fetched"] == meta["inserted"] == len(rows)
        assert meta["projects_not_found"] == 0
        assert checks[(collection, "not_empty")].passed
        assert checks[(collection, "no_duplicate_keys")].passed
        index = pipeline.db[collection].index_information()[PROJECT_PART_INDEX_NAMES[collection]]
        assert index["unique"] is True
        assert [k for k, _ in index["key"]] == ["connection_id", ID_FIELDS[collection]]
    versions = stored(pipeline, "jira_project_versions")
    for row in lists["jira_project_versions"]:
        doc = versions[row["id"]]
        assert {k: doc["raw"][k] for k in row} == row, "raw is Jira's JSON (plus its project)"
        assert doc["raw"]["project"] == doc["project_key"]
        assert (doc["name"], doc["released"], doc["archived"], doc["project_id"]) == (
            row["name"], row["released"], row["archived"], str(row["projectId"]))
        day = datetime.fromisoformat(row["releaseDate"])
        # A date-only value is stored as that day's UTC midnight, a BSON date.
        assert doc["release_date"].replace(tzinfo=UTC) == day.replace(tzinfo=UTC)
        assert doc["start_date"] < doc["release_date"]
        assert doc["overdue"] == row.get("overdue")
    components = stored(pipeline, "jira_project_components")
    for row in lists["jira_project_components"]:
        doc = components[row["id"]]
        assert doc["raw"] == row
        assert doc["assignee_type"] == row["assigneeType"]
        assert doc["lead_account_id"] == (row["lead"]["accountId"] if "lead" in row else None)
        assert doc["description"] == row["description"]
    # One paged request per project for each (three rows each fit a 50-row page), and the
    # project listing each walk asks first.
    assert requests["GET /rest/api/3/project/{key}/version"] == {"200": len(projects)}
    assert requests["GET /rest/api/3/project/{key}/component"] == {"200": len(projects)}
    # The projects dimension's listing (live projects) and one listing with the archived ones,
    # read by the versions walk and kept for the components walk of the same step.
    assert requests["GET /rest/api/3/project/search"] == {"200": 2}


def test_a_removed_version_is_marked_deleted_and_revived_on_restore(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3)
    synced = pipeline.sync_everything()
    assert check_results(synced)[("jira_issues", "project_parts_present")].passed
    in_use = sorted({v["id"] for doc in pipeline.db["jira_issues"].find(
        {}, {"raw.fields.fixVersions.id": 1}) for v in doc["raw"]["fields"]["fixVersions"]})
    assert in_use, "the dataset puts issues in fix versions"
    gone = in_use[0]

    pipeline.fake.admin.remove_project_part("version", gone)
    pipeline.fake.admin.remove_project_part("component", "10001")
    removed = pipeline.run("jira_dimensions_job")
    after = pipeline.sync_everything()

    doc = stored(pipeline, "jira_project_versions")[gone]
    assert doc["is_deleted"] is True and doc["deleted_at"] is not None
    assert stored(pipeline, "jira_project_components")["10001"]["is_deleted"] is True
    assert materializations(removed, "jira_project_versions")[0]["marked_deleted"] == 1
    check = check_results(after)[("jira_issues", "project_parts_present")]
    assert not check.passed
    assert check.metadata["missing_project_versions"].value == 1
    assert f"project_versions/{gone}" in check.metadata["sample"].value

    pipeline.fake.admin.restore_project_part("version", gone)
    pipeline.fake.admin.restore_project_part("component", "10001")
    back = pipeline.sync_everything()
    doc = stored(pipeline, "jira_project_versions")[gone]
    assert doc["is_deleted"] is False and doc["deleted_at"] is None
    assert stored(pipeline, "jira_project_components")["10001"]["is_deleted"] is False
    assert check_results(back)[("jira_issues", "project_parts_present")].passed


def test_a_component_lost_from_the_store_fails_the_check(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3)
    pipeline.sync_everything()
    connection = site_connection_id(pipeline.fake.base_url)
    named = pipeline.db["jira_issues"].find_one({"raw.fields.components.0": {"$exists": True}})
    assert named is not None, "the dataset puts issues in components"
    component = named["raw"]["fields"]["components"][0]["id"]
    pipeline.db["jira_project_components"].delete_many(
        {"connection_id": connection, "component_id": component})

    result = pipeline.run("jira_issues_job", pipeline.today)

    check = check_results(result)[("jira_issues", "project_parts_present")]
    assert not check.passed
    assert check.metadata["missing_project_components"].value == 1
    assert check.metadata["missing_project_versions"].value == 0


def test_a_project_that_404s_is_skipped_and_counted(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)
    pipeline.run("jira_dimensions_job")
    # Deleted between the project listing and its version request: /project still lists it.
    pipeline.fake.admin.remove_project_part("project", "CORE")

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    for collection in ID_FIELDS:
        [meta] = materializations(result, collection)
        assert meta["projects_not_found"] == 1
        docs = stored(pipeline, collection)
        assert all(d["is_deleted"] == (d["project_key"] == "CORE") for d in docs.values())
        assert any(d["project_key"] == "CORE" for d in docs.values())


@pytest.mark.parametrize("mode", ["cloud", "datacenter"])
def test_an_archived_project_s_versions_and_components_are_kept_live(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    if mode == "datacenter":
        monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=20, days=2, mode=mode, pat="demo-pat")
    pipeline.run("jira_dimensions_job")
    pipeline.fake.admin.archive_project("WEB")

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    for collection in ID_FIELDS:
        web = [d for d in stored(pipeline, collection).values() if d["project_key"] == "WEB"]
        assert len(web) == 3 and all(d["is_deleted"] is False for d in web), collection
        assert materializations(result, collection)[0]["marked_deleted"] == 0


def test_an_error_other_than_404_fails_the_walk(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)
    pipeline.fake.admin.remove_project_part("project", "WEB", status=400)

    result = pipeline.run("jira_dimensions_job", raise_on_error=False,
                          assets=["jira_project_versions"])

    assert not result.success
    assert not materializations(result, "jira_project_versions")
    assert pipeline.db["jira_project_versions"].count_documents({}) == 0


def test_data_center_versions_and_components_come_from_rest_api_2(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=10, days=2, mode="datacenter", pat="demo-pat")

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    requests = pipeline.fake.admin.stats()["requests"]
    lists = served(pipeline, datacenter=True)
    for collection, rows in lists.items():
        docs = stored(pipeline, collection, is_deleted=False)
        assert set(docs) == {row["id"] for row in rows}
    projects = pipeline.db["jira_projects"].count_documents({})
    assert requests["GET /rest/api/2/project/{key}/version"] == {"200": projects}
    assert requests["GET /rest/api/2/project/{key}/components"] == {"200": projects}
    led = [d for d in stored(pipeline, "jira_project_components").values()
           if d["assignee_type"] == "COMPONENT_LEAD"]
    assert led and all(d["lead_account_id"].startswith("JIRAUSER") for d in led)


def test_the_projects_versions_and_components_are_asked_concurrently_one_request_each(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(projects=9, issues=20, latency_ms=40)
    counted = InFlight("/version", "/component")
    settings = PipelineSettings.model_construct(projects=())
    listings = StepListings()
    counts: dict[str, int] = {}

    async def walk() -> tuple[list[dict], list[dict], list[dict]]:
        auth = BasicAuth(fake.config.email, fake.config.api_token)
        async with JiraClient(auth, fake.base_url, limiter=RateLimiter(0.0, 4),
                              transport=counted) as client:
            versions = [r async for r in PROJECT_VERSIONS.rows(client, settings, counts,
                                                               listings)]
            components = [r async for r in PROJECT_COMPONENTS.rows(client, settings, counts,
                                                                   listings)]
            projects = [p async for p in client.projects(archived=True)]
            one_by_one = [v for p in projects async for v in client.project_versions(p["id"])]
            return versions, components, one_by_one

    versions, components, one_by_one = asyncio.run(walk())

    requests = fake.admin.stats()["requests"]
    assert requests["GET /rest/api/3/project/{key}/version"] == {"200": 9 + 9}  # + one_by_one
    assert requests["GET /rest/api/3/project/{key}/component"] == {"200": 9}
    # The archived-included listing: once for both walks, once more for `one_by_one`.
    assert requests["GET /rest/api/3/project/search"] == {"200": 2}
    # As many projects in flight at once as the limiter allows, never more.
    assert counted.peak == 4
    assert sorted(v["id"] for v in versions) == sorted(v["id"] for v in one_by_one)
    assert len({c["id"] for c in components}) == len(components) >= 9
    assert all(row["project"] for row in versions + components)
    assert counts == {"projects_not_found": 0}
