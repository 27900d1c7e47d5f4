"""The fake's reference data: issue types, priorities, resolutions and status categories are
listed as the issues carry them, paged per the OpenAPI document, and can be removed and
restored through the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira.admin import FakeJiraAdminError
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    ok_json,
    walk_offset_pages,
    walk_token_pages,
)
from jira_pipeline_tests.openapi import assert_valid_response


def all_issues(client: httpx.Client, fake: Any) -> list[dict]:
    projects = ", ".join(sorted({issue["project_key"] for issue in fake.admin.issues()}))
    issues, _ = walk_token_pages(client, f"project in ({projects}) ORDER BY key", 100,
                                 fields="issuetype,priority,resolution,status")
    return issues


def test_every_reference_an_issue_carries_is_listed(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    issues = all_issues(reader, read_only_fake)
    types = {t["id"]: t for t in ok_json(reader.get("/rest/api/3/issuetype"))}
    priorities, _ = walk_offset_pages(reader, "/rest/api/3/priority/search", 2)
    resolutions, _ = walk_offset_pages(reader, "/rest/api/3/resolution/search", 3)
    categories = {c["id"]: c for c in ok_json(reader.get("/rest/api/3/statuscategory"))}
    by_priority = {p["id"]: p for p in priorities}
    by_resolution = {r["id"]: r for r in resolutions}

    assert issues
    resolved = [i for i in issues if i["fields"]["resolution"]]
    assert resolved, "the dataset resolves some issues"
    for issue in issues:
        fields = issue["fields"]
        assert types[fields["issuetype"]["id"]] == fields["issuetype"]
        listed = by_priority[fields["priority"]["id"]]
        assert {k: listed[k] for k in fields["priority"]} == fields["priority"]
        category = fields["status"]["statusCategory"]
        assert categories[category["id"]] == category
    for issue in resolved:
        resolution = issue["fields"]["resolution"]
        assert {k: by_resolution[resolution["id"]][k] for k in resolution} == resolution
    assert [p["name"] for p in priorities] == ["Highest", "High", "Medium", "Low", "Lowest"]
    assert all(p["statusColor"].startswith("#") for p in priorities)
    assert [p["id"] for p in priorities if p["isDefault"]] == ["3"]
    assert {c["key"] for c in categories.values()} == {"undefined", "new", "indeterminate",
                                                       "done"}
    assert {t["name"]: (t["subtask"], t["hierarchyLevel"]) for t in types.values()}[
        "Sub-task"] == (True, -1)


def test_priority_and_resolution_searches_page_and_filter_per_the_document(
    reader: httpx.Client,
) -> None:
    priorities, pages = walk_offset_pages(reader, "/rest/api/3/priority/search", 2)
    assert [len(page["values"]) for page in pages] == [2, 2, 1] and len(priorities) == 5
    assert all(page["total"] == 5 for page in pages)
    assert "nextPage" in pages[0] and "nextPage" not in pages[-1]
    assert ok_json(reader.get(pages[0]["nextPage"]))["values"] == pages[1]["values"]
    resolutions, pages = walk_offset_pages(reader, "/rest/api/3/resolution/search", 50)
    assert len(pages) == 1 and len(resolutions) == 4
    # The document's default page is 50 rows; Jira caps it.
    assert ok_json(reader.get("/rest/api/3/priority/search"))["maxResults"] == 50
    assert ok_json(reader.get("/rest/api/3/priority/search",
                              params={"maxResults": 5000}))["maxResults"] == 100

    one = ok_json(reader.get("/rest/api/3/priority/search", params={"id": ["1", "4"]}))
    assert [p["name"] for p in one["values"]] == ["Highest", "Low"]
    named = ok_json(reader.get("/rest/api/3/priority/search", params={"priorityName": "high"}))
    assert [p["name"] for p in named["values"]] == ["Highest", "High"]
    default = ok_json(reader.get("/rest/api/3/resolution/search",
                                 params={"onlyDefault": "true"}))
    assert [r["name"] for r in default["values"]] == ["Done"]
    assert_valid_response("GET", "/rest/api/3/resolution/search", 200, default)
    bad = reader.get("/rest/api/3/priority/search", params={"maxResults": "many"})
    assert bad.status_code == 400


def test_a_removed_priority_leaves_its_listings_until_restored(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=10)
    with basic_client(fake) as client:
        fake.admin.remove_reference("priority", "2")
        searched, _ = walk_offset_pages(client, "/rest/api/3/priority/search", 50)
        listed = ok_json(client.get("/rest/api/3/priority"))
        fake.admin.remove_reference("issuetype", "10003")
        types = ok_json(client.get("/rest/api/3/issuetype"))
        fake.admin.restore_reference("priority", "2")
        back, _ = walk_offset_pages(client, "/rest/api/3/priority/search", 50)
    assert "2" not in {p["id"] for p in searched} | {p["id"] for p in listed}
    assert len(searched) == len(listed) == 4
    assert "Bug" not in {t["name"] for t in types}
    assert "2" in {p["id"] for p in back}
    with pytest.raises(FakeJiraAdminError):
        fake.admin.remove_reference("priority", "99")


def test_data_center_serves_the_unpaged_lists(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=10)
    headers = {"Authorization": f"Bearer {fake.config.pat}"}
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        for resource, count in (("issuetype", 5), ("priority", 5), ("resolution", 4),
                                ("statuscategory", 4)):
            body = ok_json(client.get(f"/rest/api/2/{resource}"))
            assert len(body) == count
            assert all(row["self"].startswith(f"{fake.base_url}/rest/api/2/") for row in body)
        assert client.get("/rest/api/2/priority/search").status_code == 404
