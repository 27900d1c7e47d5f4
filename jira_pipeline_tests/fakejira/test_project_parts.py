"""The fake's project versions and components: listed exactly as issues carry them, paged and
filtered per the OpenAPI document, 404 for a project Jira does not have, and removable and
restorable through the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira.admin import FakeJiraAdminError
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    error_messages,
    ok_json,
    walk_offset_pages,
    walk_token_pages,
)
from jira_pipeline_tests.openapi import assert_valid_response


def test_every_version_and_component_an_issue_carries_is_listed_with_its_project(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    keys = sorted({issue["project_key"] for issue in read_only_fake.admin.issues()})
    issues, _ = walk_token_pages(reader, f"project in ({', '.join(keys)}) ORDER BY key", 100,
                                 fields="project,fixVersions,components")
    listed_versions: dict[str, dict] = {}
    listed_components: dict[str, dict] = {}
    for key in keys:
        versions, pages = walk_offset_pages(reader, f"/rest/api/3/project/{key}/version", 2)
        assert len(pages) == 2, "three versions come in two pages of two"
        assert versions == ok_json(reader.get(f"/rest/api/3/project/{key}/versions"))
        components, _ = walk_offset_pages(reader, f"/rest/api/3/project/{key}/component", 50)
        unpaged = ok_json(reader.get(f"/rest/api/3/project/{key}/components"))
        assert [c["id"] for c in components] == [c["id"] for c in unpaged]
        for row in versions:
            listed_versions[row["id"]] = row
        for row in components:
            listed_components[row["id"]] = row
    counts: dict[str, int] = {}
    for issue in issues:
        fields = issue["fields"]
        project_id = int(fields["project"]["id"])
        for version in fields["fixVersions"]:
            listed = listed_versions[version["id"]]
            assert {k: listed[k] for k in version} == version
            assert listed["projectId"] == project_id
        for component in fields["components"]:
            counts[component["id"]] = counts.get(component["id"], 0) + 1
            listed = listed_components[component["id"]]
            assert {k: listed[k] for k in component} == component
            assert listed["projectId"] == project_id
    assert counts, "the dataset puts issues in components"
    assert {cid: row["issueCount"] for cid, row in listed_components.items() if row["issueCount"]} \
        == counts
    released = [v for v in listed_versions.values() if v["released"]]
    upcoming = [v for v in listed_versions.values() if not v["released"]]
    assert released and upcoming
    assert all(v["startDate"] < v["releaseDate"] for v in listed_versions.values())
    assert all("overdue" in v for v in upcoming) and any(v["overdue"] for v in upcoming)
    assert {c["assigneeType"] for c in listed_components.values()} == {
        "COMPONENT_LEAD", "PROJECT_DEFAULT"}
    led = [c for c in listed_components.values() if c["assigneeType"] == "COMPONENT_LEAD"]
    assert all(c["lead"]["accountId"] for c in led)


def test_version_page_filters_orders_and_pages_per_the_document(reader: httpx.Client) -> None:
    path = "/rest/api/3/project/CORE/version"
    every = ok_json(reader.get(path))["values"]
    assert [v["name"] for v in every] == ["core-1.0", "core-1.1", "core-1.2"]
    newest = ok_json(reader.get(path, params={"orderBy": "-releaseDate", "maxResults": 1}))
    assert_valid_response("GET", path, 200, newest)
    assert [v["name"] for v in newest["values"]] == ["core-1.2"]
    assert newest["isLast"] is False and newest["total"] == 3
    assert ok_json(reader.get(newest["nextPage"]))["values"][0]["name"] == "core-1.1"
    unreleased = ok_json(reader.get(path, params={"status": "unreleased"}))["values"]
    assert [v["name"] for v in unreleased] == ["core-1.2"]
    both = ok_json(reader.get(path, params={"status": "released,unreleased"}))["values"]
    assert len(both) == 3
    assert ok_json(reader.get(path, params={"query": "1.1"}))["values"][0]["name"] == "core-1.1"
    # Jira ignores what it does not know and refuses an order it does not have.
    assert ok_json(reader.get(path, params={"expand": "operations", "colour": "red"}))["total"] \
        == 3
    assert reader.get(path, params={"orderBy": "colour"}).status_code == 400
    # By id as well as by key.
    by_id = ok_json(reader.get("/rest/api/3/project/10000/versions"))
    assert [v["id"] for v in by_id] == [v["id"] for v in every]


def test_site_wide_component_search_filters_by_project(reader: httpx.Client) -> None:
    core = ok_json(reader.get("/rest/api/3/project/CORE/components"))
    web = ok_json(reader.get("/rest/api/3/project/WEB/components"))
    found, pages = walk_offset_pages(reader, "/rest/api/3/component", 2,
                                     {"projectIdsOrKeys": ["CORE", "10001"]})
    assert len(pages) == 3
    assert [c["id"] for c in found] == [c["id"] for c in core + web]
    assert all(set(c) == {"self", "id", "name", "description"} for c in found)


@pytest.mark.parametrize("path", ["version", "versions", "component", "components"])
def test_an_unknown_project_answers_404(reader: httpx.Client, path: str) -> None:
    response = reader.get(f"/rest/api/3/project/NOPE/{path}")
    assert error_messages(response, 404) == ["No project could be found with key 'NOPE'."]


def test_removed_version_and_component_leave_their_listings_until_restored(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=10)
    with basic_client(fake) as client:
        before = ok_json(client.get("/rest/api/3/project/CORE/versions"))
        fake.admin.remove_project_part("version", before[1]["id"])
        fake.admin.remove_project_part("component", "10001")
        paged, _ = walk_offset_pages(client, "/rest/api/3/project/CORE/version", 1)
        components = ok_json(client.get("/rest/api/3/project/CORE/components"))
        searched = ok_json(client.get("/rest/api/3/component",
                                      params={"projectIdsOrKeys": "CORE"}))["values"]
        fake.admin.remove_project_part("project", "CORE")
        gone = client.get("/rest/api/3/project/CORE/versions")
        still_listed = ok_json(client.get("/rest/api/3/project/CORE"))
        fake.admin.restore_project_part("project", "CORE")
        fake.admin.restore_project_part("version", before[1]["id"])
        fake.admin.restore_project_part("component", "10001")
        after = ok_json(client.get("/rest/api/3/project/CORE/versions"))
        components_after = ok_json(client.get("/rest/api/3/project/CORE/components"))
    assert [v["id"] for v in paged] == [before[0]["id"], before[2]["id"]]
    assert "10001" not in {c["id"] for c in components} | {c["id"] for c in searched}
    assert len(components) == 2
    assert gone.status_code == 404 and still_listed["key"] == "CORE"
    assert after == before
    assert "10001" in {c["id"] for c in components_after}
    with pytest.raises(FakeJiraAdminError):
        fake.admin.remove_project_part("version", "99")


def test_an_archived_project_is_listed_only_when_archived_projects_are_asked_for(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=10, projects=3)
    fake.admin.archive_project("WEB")
    with basic_client(fake) as client:
        live = walk_offset_pages(client, "/rest/api/3/project/search", 50)[0]
        both = walk_offset_pages(client, "/rest/api/3/project/search", 50,
                                 {"status": ["live", "archived"]})[0]
        archived = ok_json(client.get("/rest/api/3/project/search",
                                      params={"status": "archived"}))["values"]
        versions = ok_json(client.get("/rest/api/3/project/WEB/versions"))
    dc = fake_jira_factory(mode="datacenter", issues=10, projects=3)
    dc.admin.archive_project("WEB")
    headers = {"Authorization": f"Bearer {dc.config.pat}"}
    with httpx.Client(base_url=dc.base_url, headers=headers) as client:
        dc_live = ok_json(client.get("/rest/api/2/project"))
        dc_all = ok_json(client.get("/rest/api/2/project", params={"includeArchived": "true"}))
    fake.admin.unarchive_project("WEB")
    with basic_client(fake) as client:
        back = walk_offset_pages(client, "/rest/api/3/project/search", 50)[0]
    assert [p["key"] for p in live] == ["CORE", "OPS"]
    assert [p["key"] for p in both] == ["CORE", "OPS", "WEB"]
    assert [p["key"] for p in archived] == ["WEB"]
    assert len(versions) == 3, "an archived project keeps its versions"
    assert [p["key"] for p in dc_live] == ["CORE", "OPS"]
    assert sorted(p["key"] for p in dc_all) == ["CORE", "OPS", "WEB"]
    assert [p["key"] for p in back] == ["CORE", "OPS", "WEB"]


def test_data_center_serves_versions_and_components_under_api_2(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=10, projects=2)
    headers = {"Authorization": f"Bearer {fake.config.pat}"}
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        versions = ok_json(client.get("/rest/api/2/project/CORE/versions"))
        paged = ok_json(client.get("/rest/api/2/project/CORE/version", params={"maxResults": 2}))
        components = ok_json(client.get("/rest/api/2/project/CORE/components"))
        missing = client.get("/rest/api/2/project/NOPE/components")
        site_wide = client.get("/rest/api/2/component")
    assert len(versions) == 3 and paged["values"] == versions[:2] and not paged["isLast"]
    assert all(v["self"].startswith(f"{fake.base_url}/rest/api/2/") for v in versions)
    assert len(components) == 3
    led = [c for c in components if "lead" in c]
    assert led and all(c["lead"]["name"] == c["leadUserName"] for c in led)
    assert missing.status_code == 404
    assert site_wide.status_code == 404, "Data Center has no site-wide component search"
