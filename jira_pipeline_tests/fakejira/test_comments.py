"""The fake's comments: `/issue/{id}/comment` pages whole threads (PageOfComments), the embedded
block is truncated like Jira's, and the admin API adds, edits and deletes comments."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.fakejira.jira_pages import basic_client, error_messages, ok_json
from jira_pipeline_tests.openapi import assert_valid_response, assert_valid_v2_response

COMMENTS = "/rest/api/3/issue/{issueIdOrKey}/comment"
EVERY_ISSUE = "created >= 0 ORDER BY key"


def comment_blocks(client: httpx.Client) -> dict[str, dict]:
    """Each issue's embedded comment block, by key."""
    blocks: dict[str, dict] = {}
    token = None
    while True:
        body: dict[str, Any] = {"jql": EVERY_ISSUE, "fields": ["comment", "updated"],
                                "maxResults": 100}
        if token:
            body["nextPageToken"] = token
        page = ok_json(client.post("/rest/api/3/search/jql", json=body))
        blocks.update({issue["key"]: issue["fields"]["comment"] for issue in page["issues"]})
        token = page.get("nextPageToken")
        if not token:
            return blocks


def heavy_issue(client: httpx.Client) -> tuple[str, dict]:
    """An issue with more comments than its embedded block shows."""
    return next((key, block) for key, block in sorted(comment_blocks(client).items())
                if block["total"] > block["maxResults"])


def walk_comments(client: httpx.Client, key: str, size: int, **params: Any) -> list[dict]:
    comments: list[dict] = []
    start = 0
    while True:
        page = ok_json(client.get(f"/rest/api/3/issue/{key}/comment",
                                  params={"startAt": start, "maxResults": size, **params}))
        assert_valid_response("GET", COMMENTS, 200, page)
        assert page["startAt"] == start and page["maxResults"] == size
        comments.extend(page["comments"])
        start += len(page["comments"])
        if not page["comments"] or start >= page["total"]:
            assert len(comments) == page["total"]
            return comments


def test_embedded_block_is_truncated_and_the_paged_thread_is_whole(reader: httpx.Client) -> None:
    key, block = heavy_issue(reader)
    assert block["maxResults"] == len(block["comments"]) == 20 < block["total"]

    comments = walk_comments(reader, key, 7)

    assert [c["id"] for c in comments[:20]] == [c["id"] for c in block["comments"]]
    assert len({c["id"] for c in comments}) == block["total"]
    created = [parse_jira_datetime(c["created"]) for c in comments]
    assert created == sorted(created)


def test_comments_newest_first_and_rendered_bodies(reader: httpx.Client) -> None:
    key, _ = heavy_issue(reader)
    oldest_first = walk_comments(reader, key, 100)
    newest_first = walk_comments(reader, key, 100, orderBy="-created", expand="renderedBody")
    assert [c["id"] for c in newest_first] == [c["id"] for c in oldest_first][::-1]
    assert all(c["renderedBody"].startswith("<p>") for c in newest_first)


def test_comment_pages_are_capped_at_one_hundred(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=30)
    with basic_client(fake) as client:
        key = comment_blocks(client).popitem()[0]
        for _ in range(105):
            fake.admin.add_comment(key, "one more")
        page = ok_json(client.get(f"/rest/api/3/issue/{key}/comment",
                                  params={"maxResults": 1000}))
    assert_valid_response("GET", COMMENTS, 200, page)
    assert page["maxResults"] == len(page["comments"]) == 100 < page["total"]


def test_unknown_comment_order_answers_400(reader: httpx.Client) -> None:
    key, _ = heavy_issue(reader)
    response = reader.get(f"/rest/api/3/issue/{key}/comment", params={"orderBy": "updated"})
    assert error_messages(response, 400) == ["Invalid orderBy parameter: updated"]
    assert_valid_response("GET", COMMENTS, 400, response.json())


def test_some_comments_are_restricted_to_a_role(reader: httpx.Client) -> None:
    restricted = [c for block in comment_blocks(reader).values() for c in block["comments"]
                  if "visibility" in c]
    assert restricted
    assert {c["visibility"]["type"] for c in restricted} == {"role"}


def test_cloud_v2_and_data_center_serve_plain_text_comments(fake_jira_factory: Any) -> None:
    cloud = fake_jira_factory(issues=200)
    with basic_client(cloud) as client:
        key, _ = heavy_issue(client)
        page = ok_json(client.get(f"/rest/api/2/issue/{key}/comment"))
    assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}/comment", 200, page)
    assert page["comments"] and all(isinstance(c["body"], str) for c in page["comments"])

    dc = fake_jira_factory(mode="datacenter", issues=200)
    headers = {"Authorization": f"Bearer {dc.config.pat}"}
    with httpx.Client(base_url=dc.base_url, headers=headers) as client:
        issue = ok_json(client.get(f"/rest/api/2/issue/{key}", params={"fields": "comment"}))
        page = ok_json(client.get(f"/rest/api/2/issue/{key}/comment",
                                  params={"maxResults": 5}))
    assert_valid_response("GET", COMMENTS, 200, page)
    assert page["total"] == issue["fields"]["comment"]["total"]
    assert page["comments"] == issue["fields"]["comment"]["comments"][:5]


def test_admin_adds_edits_and_deletes_comments_bumping_the_issue(fake_jira: Any) -> None:
    admin = fake_jira.admin
    with basic_client(fake_jira) as client:
        key, block = heavy_issue(client)
        before = parse_jira_datetime(ok_json(client.get(f"/rest/api/3/issue/{key}"))
                                     ["fields"]["updated"])
        admin.advance_clock(60)
        added = admin.add_comment(key, "Fixed in the next release.")
        assert_valid_response("GET", "/rest/api/3/issue/{issueIdOrKey}/comment/{id}", 200,
                              {k: v for k, v in added.items() if k not in ("issueKey",
                                                                           "issueUpdated")})
        admin.advance_clock(60)
        first = block["comments"][0]["id"]
        edited = admin.edit_comment(key, first, "Edited: the cache was stale.")
        admin.advance_clock(60)
        admin.delete_comment(key, block["comments"][1]["id"])

        issue = ok_json(client.get(f"/rest/api/3/issue/{key}"))
        thread = walk_comments(client, key, 10)

    updated = parse_jira_datetime(issue["fields"]["updated"])
    assert updated > parse_jira_datetime(edited["issueUpdated"]) > before
    ids = [c["id"] for c in thread]
    assert len(ids) == block["total"] and ids[-1] == added["id"]
    assert block["comments"][1]["id"] not in ids
    changed = next(c for c in thread if c["id"] == first)
    assert changed["body"]["content"][0]["content"][0]["text"] == "Edited: the cache was stale."
    assert parse_jira_datetime(changed["updated"]) > parse_jira_datetime(changed["created"])
    embedded = issue["fields"]["comment"]
    assert embedded["total"] == block["total"] and embedded["comments"] == thread[:20]


def test_admin_refuses_to_edit_a_deleted_comment(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        key, block = heavy_issue(client)
    gone = block["comments"][0]["id"]
    fake_jira.admin.delete_comment(key, gone)
    with pytest.raises(Exception, match="has no comment"):
        fake_jira.admin.edit_comment(key, gone, "too late")


def test_a_short_comment_page_loses_its_first_half_once(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        key, _ = heavy_issue(client)
        fake_jira.admin.shorten_comment_pages(1)
        short = ok_json(client.get(f"/rest/api/3/issue/{key}/comment",
                                   params={"maxResults": 10}))
        whole = ok_json(client.get(f"/rest/api/3/issue/{key}/comment",
                                   params={"maxResults": 10}))
    assert_valid_response("GET", COMMENTS, 200, short)
    assert short["total"] == whole["total"] and short["startAt"] == 0
    assert short["comments"] == whole["comments"][5:]


def test_field_catalog_lists_sprint_and_story_points_and_forgets_trashed_fields(
    fake_jira: Any,
) -> None:
    with basic_client(fake_jira) as client:
        catalog = ok_json(client.get("/rest/api/3/field"))
        assert_valid_response("GET", "/rest/api/3/field", 200, catalog)
        by_id = {f["id"]: f for f in catalog}
        assert by_id["customfield_10020"]["schema"]["custom"] == (
            "com.pyxis.greenhopper.jira:gh-sprint")
        assert by_id["customfield_10016"]["name"] == "Story point estimate"
        assert all(f["key"] == f["id"] for f in catalog)

        fake_jira.admin.trash_field("customfield_10036")
        trashed = {f["id"] for f in ok_json(client.get("/rest/api/3/field"))}
        fake_jira.admin.restore_field("customfield_10036")
        restored = {f["id"] for f in ok_json(client.get("/rest/api/3/field"))}
    assert trashed == set(by_id) - {"customfield_10036"}
    assert restored == set(by_id)
    with pytest.raises(Exception, match="No custom field"):
        fake_jira.admin.trash_field("summary")
