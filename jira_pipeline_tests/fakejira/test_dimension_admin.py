"""Admin changes to dimensions and issue moves: a status renamed or recategorised, an issue moved
to another project, and Data Center's user search with its documented defaults and caps."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.fakejira.admin import FakeJiraAdminError
from jira_pipeline.fakejira.cli import add_arguments, config_from_args
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    error_messages,
    ok_json,
    walk_offset_pages,
    walk_token_pages,
)
from jira_pipeline_tests.openapi import assert_valid_response


def moment(text: str) -> datetime:
    parsed = parse_jira_datetime(text)
    assert parsed is not None
    return parsed


def dc_client(fake: FakeJiraHandle) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {fake.config.pat}"})


def issues_in_status(client: httpx.Client, status_id: str) -> list[dict]:
    issues, _ = walk_token_pages(client, f"status = {status_id} ORDER BY id", 100,
                                 fields="status,updated")
    return issues


def test_renamed_status_shows_everywhere_and_no_issue_is_updated(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        before = {i["id"]: i["fields"]["updated"] for i in issues_in_status(client, "3")}
        changed = fake_jira.admin.change_status("3", name="Doing")
        after = issues_in_status(client, "3")
        listed = ok_json(client.get("/rest/api/3/status"))
        searched, _ = walk_offset_pages(client, "/rest/api/3/statuses/search", 200)
        one = ok_json(client.get(f"/rest/api/3/issue/{after[0]['key']}",
                                 params={"fields": "status"}))
    assert changed == {"id": "3", "name": "Doing", "category": "IN_PROGRESS"}
    assert before and {i["id"]: i["fields"]["updated"] for i in after} == before
    assert {i["fields"]["status"]["name"] for i in after} == {"Doing"}
    assert one["fields"]["status"]["name"] == "Doing"
    assert [s["name"] for s in listed if s["id"] == "3"] == ["Doing"]
    assert [s["name"] for s in searched if s["id"] == "3"] == ["Doing"]
    assert_valid_response("GET", "/rest/api/3/status", 200, listed)


def test_recategorised_status_shows_its_new_category_in_issues(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        fake_jira.admin.change_status("10001", category="DONE")
        after = issues_in_status(client, "10001")
        searched, _ = walk_offset_pages(client, "/rest/api/3/statuses/search", 200)
    assert after
    assert {i["fields"]["status"]["statusCategory"]["key"] for i in after} == {"done"}
    assert [s["statusCategory"] for s in searched if s["id"] == "10001"] == ["DONE"]


@pytest.mark.parametrize(
    ("status_id", "body"),
    [("424242", {"name": "Nope"}), ("3", {"category": "SOMEDAY"}), ("3", {})],
)
def test_a_bad_status_change_is_refused(fake_jira: Any, status_id: str, body: dict) -> None:
    with pytest.raises(FakeJiraAdminError):
        fake_jira.admin.change_status(status_id, **body)


def test_moved_issue_has_a_new_key_the_same_id_and_its_old_key_still_resolves(
    fake_jira: Any,
) -> None:
    rows = fake_jira.admin.issues()
    projects = sorted({r["project_key"] for r in rows})
    issue = next(r for r in rows if r["project_key"] == projects[0])
    target = projects[1]
    highest = max(int(r["key"].split("-")[1]) for r in rows if r["project_key"] == target)

    moved = fake_jira.admin.move_issue(issue["key"], target)

    assert moved["id"] == issue["id"]
    assert moved["key"] == f"{target}-{highest + 1}"
    assert moment(moved["updated"]) > moment(issue["updated"])
    with basic_client(fake_jira) as client:
        by_old_key = ok_json(client.get(f"/rest/api/3/issue/{issue['key']}",
                                        params={"expand": "changelog"}))
        found, _ = walk_token_pages(client, f"project = {target} AND key = {moved['key']}", 10,
                                    fields="project")
    assert_valid_response("GET", "/rest/api/3/issue/{issueIdOrKey}", 200, by_old_key)
    assert (by_old_key["id"], by_old_key["key"]) == (issue["id"], moved["key"])
    assert by_old_key["fields"]["project"]["key"] == target
    last_change = by_old_key["changelog"]["histories"][-1]["items"]
    assert {"field": "Key", "fromString": issue["key"], "toString": moved["key"]}.items() <= {
        k: v for item in last_change if item["field"] == "Key" for k, v in item.items()}.items()
    assert [i["id"] for i in found] == [issue["id"]]
    assert [r["key"] for r in fake_jira.admin.issues() if r["id"] == issue["id"]] == [moved["key"]]


def test_moving_to_an_unknown_project_is_refused(fake_jira: Any) -> None:
    key = fake_jira.admin.issues()[0]["key"]
    with pytest.raises(FakeJiraAdminError, match="NOPE"):
        fake_jira.admin.move_issue(key, "NOPE")


def test_dc_user_search_lists_active_users_unless_asked_for_inactive_ones(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=60)
    users = fake.site.data.users
    inactive = {u.key for u in users if not u.active}
    assert inactive  # the seeded site has people who left
    with dc_client(fake) as client:
        default = ok_json(client.get("/rest/api/2/user/search",
                                     params={"username": ".", "maxResults": 1000}))
        everyone = ok_json(client.get("/rest/api/2/user/search", params={
            "username": ".", "maxResults": 1000, "includeInactive": "true"}))
        only_inactive = ok_json(client.get("/rest/api/2/user/search", params={
            "username": ".", "maxResults": 1000, "includeInactive": "true",
            "includeActive": "false"}))
        refused = client.get("/rest/api/2/user/search",
                             params={"username": ".", "includeInactive": "maybe"})
    assert {u["key"] for u in default} == {u.key for u in users if u.active}
    assert all(u["active"] for u in default)
    assert {u["key"] for u in everyone} == {u.key for u in users}
    assert {u["key"] for u in only_inactive} == inactive
    assert_valid_response("GET", "/rest/api/3/user/search", 200, everyone)
    assert error_messages(refused, 400)


def test_dc_user_search_cap_shortens_pages_that_are_not_the_last(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=250,
                             dc_user_search_cap=100)
    pages = []
    with dc_client(fake) as client:
        for start in (0, 100, 200, 300):
            pages.append(ok_json(client.get("/rest/api/2/user/search", params={
                "username": ".", "includeInactive": "true", "startAt": start,
                "maxResults": 1000})))
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    assert len({u["key"] for p in pages for u in p}) == 250


def test_dc_user_search_limit_ends_the_listing_early(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=250,
                             dc_user_search_cap=100, dc_user_search_limit=150)
    with dc_client(fake) as client:
        sizes = [len(ok_json(client.get("/rest/api/2/user/search", params={
            "username": ".", "includeInactive": "true", "startAt": start})))
            for start in (0, 50, 100, 150)]
    assert sizes == [50, 50, 50, 0]


def test_dc_user_is_fetched_by_key_or_username(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=30)
    user = next(u for u in fake.site.data.users if not u.active)
    with dc_client(fake) as client:
        by_key = ok_json(client.get("/rest/api/2/user", params={"key": user.key}))
        by_name = ok_json(client.get("/rest/api/2/user", params={"username": user.name}))
        missing = client.get("/rest/api/2/user", params={"key": "JIRAUSERnobody"})
    assert by_key == by_name
    assert (by_key["key"], by_key["name"], by_key["active"]) == (user.key, user.name, False)
    assert_valid_response("GET", "/rest/api/3/user", 200, by_key)
    assert error_messages(missing, 404)


def test_cloud_user_is_fetched_by_account_id(fake_jira: Any) -> None:
    user = fake_jira.site.data.users[3]
    with basic_client(fake_jira) as client:
        body = ok_json(client.get("/rest/api/3/user", params={"accountId": user.account_id}))
    assert body["accountId"] == user.account_id
    assert_valid_response("GET", "/rest/api/3/user", 200, body)


def test_moving_a_parent_moves_its_sub_tasks_and_keeps_its_epic_children_pointing_at_it(
    fake_jira: Any,
) -> None:
    data = fake_jira.site.data
    parent = next(i for i in data.issues if i.children and i.type != 0)
    subtasks = [data.issues[c] for c in parent.children]
    target = next(p.key for p in data.projects if p is not data.projects[parent.project])
    before = {s.id: s.updated for s in subtasks}

    moved = fake_jira.admin.move_issue(parent.key, target)

    with basic_client(fake_jira) as client:
        found, _ = walk_token_pages(client, f"project = {target} ORDER BY id", 100,
                                    fields="parent,updated")
    by_id = {int(i["id"]): i for i in found}
    assert parent.id in by_id and all(s.id in by_id for s in subtasks)
    for sub in subtasks:
        fields = by_id[sub.id]["fields"]
        assert fields["parent"]["key"] == moved["key"]
        assert moment(fields["updated"]).timestamp() * 1000 > before[sub.id]


def test_epic_children_show_a_moved_epics_new_key_without_being_updated(fake_jira: Any) -> None:
    data = fake_jira.site.data
    child = next(i for i in data.issues if i.parent >= 0 and i.type != 4)
    epic = data.issues[child.parent]
    target = next(p.key for p in data.projects if p is not data.projects[epic.project])
    updated = child.updated

    moved = fake_jira.admin.move_issue(epic.key, target)

    with basic_client(fake_jira) as client:
        body = ok_json(client.get(f"/rest/api/3/issue/{child.key}",
                                  params={"fields": "parent,updated"}))
    assert body["fields"]["parent"]["key"] == moved["key"]
    assert child.updated == updated


def test_changed_project_key_rekeys_its_issues_and_old_keys_still_resolve(fake_jira: Any) -> None:
    rows = [r for r in fake_jira.admin.issues() if r["project_key"] == "CORE"]
    assert rows

    changed = fake_jira.admin.change_project("CORE", new_key="PLAT", name="Platform")

    assert changed["key"] == "PLAT" and changed["name"] == "Platform"
    after = {r["id"]: r for r in fake_jira.admin.issues()}
    for row in rows:
        assert after[row["id"]]["key"] == "PLAT-" + row["key"].split("-")[1]
        assert after[row["id"]]["updated"] == row["updated"]
    with basic_client(fake_jira) as client:
        old = ok_json(client.get(f"/rest/api/3/issue/{rows[0]['key']}",
                                 params={"fields": "project"}))
        projects, _ = walk_offset_pages(client, "/rest/api/3/project/search", 50)
    assert old["key"] == after[rows[0]["id"]]["key"]
    assert old["fields"]["project"]["key"] == "PLAT"
    assert "PLAT" in {p["key"] for p in projects} and "CORE" not in {p["key"] for p in projects}
    with pytest.raises(FakeJiraAdminError):
        fake_jira.admin.change_project("PLAT", new_key="WEB")  # taken


def test_deactivated_user_is_listed_inactive(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=0, projects=1, users=20)
    user = next(u for u in fake.site.data.users[1:] if u.active)
    fake.admin.set_user_active(user.key, False)
    with dc_client(fake) as client:
        active = ok_json(client.get("/rest/api/2/user/search", params={"username": "."}))
        fetched = ok_json(client.get("/rest/api/2/user", params={"key": user.key}))
    assert user.key not in {u["key"] for u in active}
    assert fetched["active"] is False
    with pytest.raises(FakeJiraAdminError):
        fake.admin.set_user_active("JIRAUSERnobody", False)


def test_dc_user_search_options_are_fake_jira_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(
        ["--mode", "datacenter", "--dc-user-search-cap", "100", "--dc-user-search-limit", "150"]))
    assert (config.dc_user_search_cap, config.dc_user_search_limit) == (100, 150)
    assert "--dc-user-search-cap" in parser.format_help()
    with pytest.raises(ValueError, match="dc_user_search_cap"):
        config_from_args(parser.parse_args(["--dc-user-search-cap", "0"]))
