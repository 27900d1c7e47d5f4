"""The fake's issue links: each link is on both issues, the other issue named on opposite
sides under one id, links to deleted issues are not rendered, and the admin API adds and
removes links now (both issues updated, a "Link" history on each)."""

from __future__ import annotations

from typing import Any

import httpx

from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json, walk_token_pages
from jira_pipeline_tests.openapi import assert_valid_response, assert_valid_schema


def links_by_key(client: httpx.Client, fake: Any) -> dict[str, list[dict]]:
    keys = ", ".join(sorted({issue["project_key"] for issue in fake.admin.issues()}))
    issues, _ = walk_token_pages(client, f"project in ({keys}) ORDER BY key", 100,
                                 fields="issuelinks,updated")
    return {issue["key"]: issue["fields"]["issuelinks"] for issue in issues}


def other_side(link: dict) -> tuple[str, dict]:
    side = "outwardIssue" if "outwardIssue" in link else "inwardIssue"
    assert ({"outwardIssue", "inwardIssue"} & link.keys()) == {side}, "one side per link"
    return side, link[side]


def test_each_link_is_rendered_on_both_issues_with_one_id_and_opposite_sides(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    by_key = links_by_key(reader, read_only_fake)
    types = ok_json(reader.get("/rest/api/3/issueLinkType"))
    assert_valid_response("GET", "/rest/api/3/issueLinkType", 200, types)
    assert [t["name"] for t in types["issueLinkTypes"]] == [
        "Blocks", "Cloners", "Duplicate", "Relates"]
    sides: dict[str, dict[str, tuple[str, str]]] = {}
    for key, links in by_key.items():
        for link in links:
            side, other = other_side(link)
            assert_valid_schema("IssueLinkType", link["type"])
            assert_valid_schema("LinkedIssue", other)
            assert link["type"] in types["issueLinkTypes"]
            sides.setdefault(link["id"], {})[key] = (side, other["key"])
    linked = sum(1 for links in by_key.values() if links)
    assert 0.1 * len(by_key) < linked < 0.5 * len(by_key), "a share of issues is linked"
    for link_id, ends in sides.items():
        assert len(ends) == 2, f"link {link_id} is on both issues"
        (a, (side_a, other_a)), (b, (side_b, other_b)) = ends.items()
        assert (other_a, other_b) == (b, a)
        assert {side_a, side_b} == {"outwardIssue", "inwardIssue"}


def test_admin_adds_and_removes_links_on_both_issues_and_hides_links_to_deleted_issues(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=30)
    with basic_client(fake) as client:
        before = links_by_key(client, fake)
        a, b = sorted(before)[:2]
        updated = {i["key"]: i["updated"] for i in fake.admin.issues()}
        fake.admin.advance_clock(60)
        link_id = fake.admin.link_issues("Blocks", a, b)
        added = links_by_key(client, fake)
        updated_after = {i["key"]: i["updated"] for i in fake.admin.issues()}
        histories = ok_json(client.get(f"/rest/api/3/issue/{a}/changelog",
                                       params={"maxResults": 100}))
        fake.admin.unlink_issues(link_id)
        removed = links_by_key(client, fake)
        victim_key, victim_links = next((k, v) for k, v in before.items() if v)
        _, other = other_side(victim_links[0])
        fake.admin.delete_issue(victim_key)
        after_delete = links_by_key(client, fake)
    new_a = [link for link in added[a] if link["id"] == link_id]
    new_b = [link for link in added[b] if link["id"] == link_id]
    assert new_a and new_a[0]["outwardIssue"]["key"] == b
    assert new_b and new_b[0]["inwardIssue"]["key"] == a
    assert new_a[0]["type"]["outward"] == "blocks"
    assert updated_after[a] > updated[a] and updated_after[b] > updated[b]
    items = [item for history in histories["values"] for item in history["items"]]
    assert {"field": "Link", "toString": f"This issue blocks {b}"}.items() <= next(
        item for item in items if item["field"] == "Link").items()
    assert removed[a] == before[a] and removed[b] == before[b]
    assert victim_key not in after_delete
    assert all(other_side(link)[1]["key"] != victim_key for link in after_delete[other["key"]])
