"""Admin endpoints change the fake's site the way time and users change a real one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    ok_json,
    search_keys,
    walk_token_pages,
)


def project_keys(fake: Any) -> list[str]:
    return sorted({row["project_key"] for row in fake.admin.issues()})


def one_issue(client: httpx.Client, key: str, fields: str = "*all", expand: str = "") -> dict:
    issues, _ = walk_token_pages(client, f"key = {key}", 10, fields=fields, expand=expand or None)
    assert len(issues) == 1
    return issues[0]


def count(client: httpx.Client, jql: str) -> int:
    body = ok_json(client.post("/rest/api/3/search/approximate-count", json={"jql": jql}))
    return body["count"]


def test_created_issue_is_next_in_its_project_and_searchable(
    fake_jira: Any, jira: httpx.Client
) -> None:
    project = project_keys(fake_jira)[0]
    numbers = [int(r["key"].split("-")[1]) for r in fake_jira.admin.issues()
               if r["project_key"] == project]
    before = fake_jira.admin.now()
    created = fake_jira.admin.create_issue(project, {"summary": "Checkout button is grey"})
    assert created["key"] == f"{project}-{max(numbers) + 1}"
    updated = parse_jira_datetime(created["updated"])
    assert updated >= before.replace(microsecond=before.microsecond // 1000 * 1000)
    assert created["key"] in {r["key"] for r in fake_jira.admin.issues()}
    assert search_keys(jira, f"project = {project} AND updated >= {to_epoch_ms(updated)}") == [
        created["key"]
    ]
    issue = one_issue(jira, created["key"], "summary,created,updated")
    assert issue["id"] == created["id"]
    assert issue["fields"]["summary"] == "Checkout button is grey"
    assert issue["fields"]["created"] == issue["fields"]["updated"]


def test_creating_in_an_unknown_project_is_refused(fake_jira: Any) -> None:
    response = httpx.post(f"{fake_jira.base_url}/_fake/issues", json={"project_key": "NOPE"})
    assert response.status_code in (400, 404)
    assert "NOPE" in response.text


def test_touch_bumps_updated_and_appends_a_changelog_history(
    fake_jira: Any, jira: httpx.Client
) -> None:
    row = fake_jira.admin.issues()[7]
    before = one_issue(jira, row["key"], "updated,summary", expand="changelog")
    fake_jira.admin.advance_clock(3600)
    touched = fake_jira.admin.touch_issue(row["key"], {"summary": "Renamed by the test"})
    after = one_issue(jira, row["key"], "updated,summary", expand="changelog")

    old_updated = parse_jira_datetime(before["fields"]["updated"])
    new_updated = parse_jira_datetime(after["fields"]["updated"])
    assert new_updated == parse_jira_datetime(touched["updated"])
    assert new_updated >= old_updated + timedelta(hours=1)
    assert after["fields"]["summary"] == "Renamed by the test"
    assert after["changelog"]["total"] == before["changelog"]["total"] + 1
    newest = max(after["changelog"]["histories"], key=lambda h: parse_jira_datetime(h["created"]))
    assert parse_jira_datetime(newest["created"]) == new_updated
    assert any(item["field"] == "summary" and item["toString"] == "Renamed by the test"
               for item in newest["items"])


def test_touch_without_fields_still_changes_updated(fake_jira: Any, jira: httpx.Client) -> None:
    row = fake_jira.admin.issues()[3]
    fake_jira.admin.advance_clock(60)
    touched = fake_jira.admin.touch_issue(row["key"])
    assert parse_jira_datetime(touched["updated"]) > parse_jira_datetime(row["updated"])
    bound = to_epoch_ms(parse_jira_datetime(touched["updated"]))
    assert row["key"] in search_keys(jira, f"updated >= {bound}")


def test_deleted_issue_disappears_from_search_count_and_dump(
    fake_jira: Any, jira: httpx.Client
) -> None:
    row = fake_jira.admin.issues()[0]
    jql = f"project = {row['project_key']}"
    before = count(jira, jql)
    fake_jira.admin.delete_issue(row["key"])
    assert row["key"] not in search_keys(jira, jql)
    assert count(jira, jql) == before - 1
    assert row["key"] not in {r["key"] for r in fake_jira.admin.issues()}
    again = httpx.delete(f"{fake_jira.base_url}/_fake/issues/{row['key']}")
    assert again.status_code == 404


def test_touching_an_unknown_issue_is_refused(fake_jira: Any) -> None:
    response = httpx.post(f"{fake_jira.base_url}/_fake/issues/NOPE-1/touch", json={})
    assert response.status_code == 404


def test_clock_can_be_set_and_advanced_and_the_api_follows_it(
    fake_jira: Any, jira: httpx.Client
) -> None:
    assert fake_jira.admin.now() >= FAKE_JIRA_NOW
    target = FAKE_JIRA_NOW + timedelta(days=30)
    assert fake_jira.admin.set_clock(target) >= target
    server_time = parse_jira_datetime(ok_json(jira.get("/rest/api/3/serverInfo"))["serverTime"])
    assert target <= server_time < target + timedelta(hours=1)
    advanced = fake_jira.admin.advance_clock(86_400)
    assert advanced >= target + timedelta(days=1)
    assert fake_jira.admin.now() >= advanced
    created = fake_jira.admin.create_issue(project_keys(fake_jira)[0])
    assert parse_jira_datetime(created["updated"]) >= advanced


def test_clock_accepts_iso_timestamps_over_http(fake_jira: Any) -> None:
    response = httpx.post(f"{fake_jira.base_url}/_fake/clock",
                          json={"now": "2026-03-01T08:00:00+01:00"})
    assert response.status_code == 200
    assert fake_jira.admin.now() >= FAKE_JIRA_NOW.replace(month=3, day=1, hour=7)


def test_clock_refuses_nonsense(fake_jira: Any) -> None:
    for body in ({"now": "yesterday"}, {"advance_seconds": "soon"}, {}):
        response = httpx.post(f"{fake_jira.base_url}/_fake/clock", json=body)
        assert response.status_code == 400, body


def test_configure_reports_every_knob(fake_jira: Any) -> None:
    knobs = fake_jira.admin.configure(latency_ms=5, burst=7, token_ttl=120, fault_rate=0.0,
                                      rate_limit=0, malformed_json_next=0)
    assert {"latency_ms": 5, "burst": 7, "token_ttl": 120, "fault_rate": 0.0, "rate_limit": 0,
            "malformed_json_next": 0}.items() <= knobs.items()


def test_configure_refuses_unknown_or_out_of_range_knobs(fake_jira: Any) -> None:
    for body in ({"warp_speed": 9}, {"fault_rate": 2}, {"latency_ms": -1}):
        response = httpx.post(f"{fake_jira.base_url}/_fake/config", json=body)
        assert response.status_code == 400, body


def test_reset_restores_the_seeded_site(fake_jira: Any, jira: httpx.Client) -> None:
    pristine = fake_jira.admin.issues()
    project = project_keys(fake_jira)[0]
    fake_jira.admin.create_issue(project)
    fake_jira.admin.touch_issue(pristine[5]["key"])
    fake_jira.admin.delete_issue(pristine[6]["key"])
    fake_jira.admin.advance_clock(10 * 86_400)
    fake_jira.admin.configure(latency_ms=50)
    jira.get("/rest/api/3/myself")

    fake_jira.admin.reset()

    assert fake_jira.admin.issues() == pristine
    assert fake_jira.admin.now() < FAKE_JIRA_NOW + timedelta(days=1)
    assert fake_jira.admin.configure()["latency_ms"] == 0
    assert fake_jira.admin.stats()["requests"] == {}


def test_stats_count_requests_per_endpoint_and_status(fake_jira: Any, jira: httpx.Client) -> None:
    for _ in range(3):
        assert jira.get("/rest/api/3/myself").status_code == 200
    with httpx.Client(base_url=fake_jira.base_url) as anonymous:
        assert anonymous.get("/rest/api/3/myself").status_code == 401
    stats = fake_jira.admin.stats()
    myself = [counts for endpoint, counts in stats["requests"].items() if "myself" in endpoint]
    assert len(myself) == 1
    assert myself[0] == {"200": 3, "401": 1}
    assert stats["rate_limited"] == 0
    assert stats["requests_in_retry_after_window"] == 0


def test_admin_endpoints_live_outside_the_rest_api(fake_jira: Any) -> None:
    with basic_client(fake_jira) as client:
        assert client.get("/rest/api/3/_fake/stats").status_code == 404
    assert httpx.get(f"{fake_jira.base_url}/_fake/stats").status_code == 200


def test_moving_an_issue_to_done_resolves_it_and_back_reopens_it(
    fake_jira: Any, jira: httpx.Client
) -> None:
    created = fake_jira.admin.create_issue(project_keys(fake_jira)[0])
    assert one_issue(jira, created["key"], "resolutiondate")["fields"]["resolutiondate"] is None

    fake_jira.admin.advance_clock(120)
    fake_jira.admin.touch_issue(created["key"], {"status": {"name": "Done"}})
    done = one_issue(jira, created["key"], "status,resolutiondate,updated")["fields"]
    assert done["status"]["statusCategory"]["key"] == "done"
    assert done["resolutiondate"] == done["updated"]
    assert created["key"] in search_keys(jira, "status = Done AND resolved >= 0")

    fake_jira.admin.touch_issue(created["key"], {"status": {"name": "To Do"}})
    reopened = one_issue(jira, created["key"], "status,resolutiondate")["fields"]
    assert reopened["status"]["statusCategory"]["key"] == "new"
    assert reopened["resolutiondate"] is None


def test_raw_fields_are_served_exactly_as_set_without_touching_updated(
    fake_jira: Any, jira: httpx.Client
) -> None:
    key = fake_jira.admin.issues()[5]["key"]
    before = one_issue(jira, key)["fields"]

    fake_jira.admin.set_raw_fields(key, {"labels": "urgent", "priority": "High"}, ("updated",))
    odd = one_issue(jira, key)["fields"]
    only_summary = one_issue(jira, key, "summary,labels")["fields"]
    fake_jira.admin.set_raw_fields(key, reset=True)
    again = one_issue(jira, key)["fields"]

    assert odd["labels"] == "urgent" and odd["priority"] == "High" and "updated" not in odd
    assert odd["summary"] == before["summary"] and odd["created"] == before["created"]
    assert only_summary == {"summary": before["summary"], "labels": "urgent"}
    assert again == before  # reset serves the issue as generated, `updated` unchanged
