"""The `search_lag_s` knob: search sees a change only that many seconds (fake clock) after it."""

from __future__ import annotations

from typing import Any

import httpx

from jira_pipeline_tests.fakejira.jira_pages import ok_json, walk_token_pages


def searched(client: httpx.Client, key: str) -> dict | None:
    issues, _ = walk_token_pages(client, f"key = {key}", 10, fields="summary,updated")
    return issues[0] if issues else None


def count(client: httpx.Client, jql: str) -> int:
    return ok_json(client.post("/rest/api/3/search/approximate-count", json={"jql": jql}))["count"]


def test_search_serves_an_edit_only_after_the_lag_and_reads_by_key_at_once(
    fake_jira: Any, jira: httpx.Client
) -> None:
    admin = fake_jira.admin
    key = admin.issues()[0]["key"]
    before = searched(jira, key)
    assert before is not None
    assert admin.configure(search_lag_s=60)["search_lag_s"] == 60

    admin.touch_issue(key, {"summary": "Edited within the lag"})

    stale = searched(jira, key)
    assert stale is not None
    assert stale["fields"] == before["fields"]
    direct = ok_json(jira.get(f"/rest/api/3/issue/{key}", params={"fields": "summary"}))
    assert direct["fields"]["summary"] == "Edited within the lag"
    admin.advance_clock(61)
    fresh = searched(jira, key)
    assert fresh is not None and fresh["fields"]["summary"] == "Edited within the lag"


def test_an_issue_created_within_the_lag_is_not_found_or_counted_until_it_passes(
    fake_jira: Any, jira: httpx.Client
) -> None:
    admin = fake_jira.admin
    project = admin.issues()[0]["project_key"]
    bound = f"project = {project} AND updated >= -3650d"
    counted = count(jira, bound)
    admin.configure(search_lag_s=30)

    created = admin.create_issue(project)

    assert searched(jira, created["key"]) is None
    assert count(jira, bound) == counted
    admin.advance_clock(31)
    assert searched(jira, created["key"]) is not None
    assert count(jira, bound) == counted + 1


def test_a_change_made_without_lag_is_searchable_at_once_even_while_older_ones_wait(
    fake_jira: Any, jira: httpx.Client
) -> None:
    admin = fake_jira.admin
    first, second = (row["key"] for row in admin.issues()[:2])
    admin.configure(search_lag_s=120)
    admin.touch_issue(first, {"summary": "Slow to index"})
    admin.configure(search_lag_s=0)
    admin.touch_issue(second, {"summary": "Indexed at once"})

    assert searched(jira, first)["fields"]["summary"] != "Slow to index"
    assert searched(jira, second)["fields"]["summary"] == "Indexed at once"
