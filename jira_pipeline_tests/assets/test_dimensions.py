"""`jira_projects`, `jira_statuses`, `jira_users`: full refreshes against the fake Jira over HTTP;
rows that vanish from Jira are kept and marked deleted, and come back to life."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from jira_pipeline.assets.agile import AGILE_DIMENSIONS
from jira_pipeline.assets.dimensions import Prefetched, prefetch_listings
from jira_pipeline.assets.fields import FIELDS
from jira_pipeline.assets.project_parts import PROJECT_PARTS
from jira_pipeline.assets.projects import PROJECTS
from jira_pipeline.assets.reference_data import REFERENCE_DATA
from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.assets.statuses import STATUSES
from jira_pipeline.assets.users import USERS
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.jira import (
    BasicAuth,
    JiraClient,
    JiraPermissionError,
    RateLimiter,
    StatusRecord,
    UserRecord,
)
from jira_pipeline.jira.models import JiraRecord
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.upserts import mark_deleted_except, upsert_records
from jira_pipeline_tests.assets.conftest import InFlight, Pipeline, materializations
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    walk_array_pages,
    walk_offset_pages,
)


def stored(pipeline: Pipeline, asset: str, **selector: object) -> dict[str, dict]:
    spec = entity_spec(asset)
    return {doc[spec.id_field]: doc for doc in pipeline.db[spec.collection].find(selector)}


def test_each_dimension_is_stored_as_jira_serves_it(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)

    result = pipeline.run("jira_dimensions_job")

    with basic_client(pipeline.fake) as client:
        projects, _ = walk_offset_pages(client, "/rest/api/3/project/search", 50)
        statuses, _ = walk_offset_pages(client, "/rest/api/3/statuses/search", 200)
        users = walk_array_pages(client, "/rest/api/3/users/search", 1000)
    assert {p["id"]: (p["key"], p["name"]) for p in projects} == {
        i: (d["key"], d["name"]) for i, d in stored(pipeline, "jira_projects").items()
    }
    assert {s["id"]: (s["name"], (s.get("scope") or {}).get("project", {}).get("id"))
            for s in statuses} == {
        i: (d["name"], d["scope_project_id"]) for i, d in stored(pipeline, "jira_statuses").items()
    }  # fmt: skip
    assert {u["accountId"]: (u.get("displayName"), u["active"]) for u in users} == {
        i: (d["display_name"], d["active"]) for i, d in stored(pipeline, "jira_users").items()
    }
    connection = site_connection_id(pipeline.fake.base_url)
    for asset, rows in (("jira_projects", projects), ("jira_statuses", statuses),
                        ("jira_users", users)):  # fmt: skip
        docs = stored(pipeline, asset)
        assert {d["connection_id"] for d in docs.values()} == {connection}
        assert all(d["is_deleted"] is False and d["raw"] for d in docs.values())
        [meta] = materializations(result, asset)
        assert meta["records_fetched"] == meta["inserted"] == len(rows) > 0
        assert meta["api_calls"] >= 1 and meta["marked_deleted"] == 0


def test_a_project_hidden_from_jira_is_marked_deleted_and_comes_back_when_visible_again(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)
    pipeline.run("jira_dimensions_job")
    first_seen = stored(pipeline, "jira_projects")
    gone = next(doc for doc in first_seen.values())
    others = set(first_seen) - {gone["project_id"]}

    pipeline.fake.admin.configure(forbidden_projects=[gone["key"]])
    started = datetime.now(UTC)
    hidden = pipeline.run("jira_dimensions_job")

    marked = stored(pipeline, "jira_projects")[gone["project_id"]]
    assert marked["is_deleted"] is True
    assert marked["deleted_at"] >= started - timedelta(seconds=1)
    assert set(stored(pipeline, "jira_projects", is_deleted=False)) == others
    assert materializations(hidden, "jira_projects")[0]["marked_deleted"] == 1

    pipeline.fake.admin.configure(forbidden_projects=[])
    pipeline.run("jira_dimensions_job")

    back = stored(pipeline, "jira_projects")[gone["project_id"]]
    assert (back["is_deleted"], back["deleted_at"]) == (False, None)
    assert back["first_seen_at"] == gone["first_seen_at"]


PHANTOMS: dict[str, JiraRecord] = {
    "jira_statuses": StatusRecord.from_raw(
        {"id": "99999", "name": "Retired Status", "statusCategory": "DONE"}, ""
    ),
    "jira_users": UserRecord.from_raw(
        {"accountId": "gone-0001", "displayName": "Former Colleague", "accountType": "atlassian",
         "active": False}, ""
    ),
}


@pytest.mark.parametrize("asset", ["jira_statuses", "jira_users"])
def test_a_stored_row_jira_no_longer_has_is_marked_deleted_and_a_revived_one_comes_back(
    pipeline_factory: Callable[..., Pipeline], asset: str
) -> None:
    # The fake cannot remove statuses or users, so the store holds a row Jira never had (as if
    # it had been deleted since the last refresh), and a real row is marked deleted (as if it
    # had been missing from Jira then).
    pipeline = pipeline_factory(issues=20, days=2)
    pipeline.run("jira_dimensions_job")
    spec = entity_spec(asset)
    connection = site_connection_id(pipeline.fake.base_url)
    real = sorted(stored(pipeline, asset))
    phantom = PHANTOMS[asset].model_copy(update={"connection_id": connection})
    upsert_records(pipeline.db, spec.name, [phantom])
    phantom_id = phantom.model_dump()[spec.id_field]
    revived = real[0]
    mark_deleted_except(pipeline.db, spec.name, connection, [*real[1:], phantom_id])
    started = datetime.now(UTC)

    result = pipeline.run("jira_dimensions_job")

    rows = stored(pipeline, asset)
    assert rows[phantom_id]["is_deleted"] is True
    assert rows[phantom_id]["deleted_at"] >= started - timedelta(seconds=1)
    assert (rows[revived]["is_deleted"], rows[revived]["deleted_at"]) == (False, None)
    assert set(stored(pipeline, asset, is_deleted=False)) == set(real)
    assert materializations(result, asset)[0]["marked_deleted"] == 1


def test_an_empty_answer_from_jira_marks_nothing_deleted(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=2)
    pipeline.run("jira_dimensions_job")
    keys = [doc["key"] for doc in stored(pipeline, "jira_projects").values()]

    # Every project hidden: far likelier a permission change than a site emptied of projects.
    pipeline.fake.admin.configure(forbidden_projects=keys)
    result = pipeline.run("jira_dimensions_job")

    assert len(stored(pipeline, "jira_projects", is_deleted=False)) == len(keys)
    [meta] = materializations(result, "jira_projects")
    assert (meta["records_fetched"], meta["marked_deleted"]) == (0, 0)


# The small listings' paths (`Dimension.prefetch`).
SMALL_LISTINGS = ("/project/search", "/statuses/search", "/field", "/issuetype",
                  "/priority/search", "/resolution/search", "/statuscategory", "/board")


def prefetch_against(
    fake: FakeJiraHandle, transport: InFlight
) -> tuple[dict[str, Prefetched], dict[str, list[dict]]]:
    """The small dimensions' listings prefetched at once, and each walked alone after."""
    settings = PipelineSettings.model_construct(projects=())
    small = [d for d in (PROJECTS, STATUSES, USERS, FIELDS, *REFERENCE_DATA, *AGILE_DIMENSIONS,
                         *PROJECT_PARTS) if d.prefetch]

    async def walk() -> tuple[dict[str, Prefetched], dict[str, list[dict]]]:
        auth = BasicAuth(fake.config.email, fake.config.api_token)
        async with JiraClient(auth, fake.base_url, limiter=RateLimiter(0.0, 4),
                              transport=transport) as client:
            fetched = await prefetch_listings(
                client, {d.asset_name: d.listing(settings) for d in small})
            alone: dict[str, list[dict]] = {}
            for d in small:
                if fetched[d.asset_name].error is None:
                    alone[d.asset_name] = [r async for r in d.listing(settings)(client)]
            return fetched, alone

    return asyncio.run(walk())


def test_the_small_listings_are_asked_at_once_each_counting_its_own_requests(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(projects=9, issues=20, latency_ms=40)
    transport = InFlight(*SMALL_LISTINGS)

    fetched, alone = prefetch_against(fake, transport)

    assert set(fetched) == {"jira_projects", "jira_statuses", "jira_fields", "jira_issue_types",
                            "jira_priorities", "jira_resolutions", "jira_status_categories",
                            "jira_boards"}
    # The users (a site's activity, unbounded) are never held whole.
    assert "jira_users" not in fetched
    assert transport.peak == 4  # as many at once as the limiter allows
    requests = fake.admin.stats()["requests"]
    for name, prefetched in fetched.items():
        assert prefetched.error is None and prefetched.rows == alone[name], name
        # Each listing's own requests, though eight were under way together: the same as
        # the walk of it alone sent afterwards.
        assert prefetched.spent.api_calls >= 1, name
    by_path = {"jira_projects": "GET /rest/api/3/project/search",
               "jira_priorities": "GET /rest/api/3/priority/search"}
    for name, path in by_path.items():
        assert sum(requests[path].values()) == 2 * fetched[name].spent.api_calls, name
    assert sum(p.spent.api_calls for p in fetched.values()) == sum(
        n for path, counts in requests.items() for n in counts.values()
        if path.endswith(SMALL_LISTINGS)) // 2


def test_a_listing_that_fails_keeps_its_error_for_its_dimension_and_the_others_arrive(
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    fake = fake_jira_factory(projects=3, issues=10)

    fetched, alone = prefetch_against(fake, InFlight(*SMALL_LISTINGS,
                                                     forbidden="/priority/search"))

    assert isinstance(fetched["jira_priorities"].error, JiraPermissionError)
    assert fetched["jira_priorities"].rows == []
    for name, prefetched in fetched.items():
        if name != "jira_priorities":
            assert prefetched.error is None and prefetched.rows == alone[name], name

    async def replay() -> list[dict]:
        return [row async for row in fetched["jira_priorities"].replay()]

    with pytest.raises(JiraPermissionError):
        asyncio.run(replay())  # raised when the priorities are written, as if asked then
