"""JiraClient against the fake Jira over HTTP: auth modes, paging, limits, faults, safety."""

import asyncio
import logging
import math
from datetime import timedelta

import httpx
import pytest

from jira_pipeline.jira import (
    BasicAuth,
    BearerPAT,
    EventLoopThread,
    IssueRecord,
    IssueWindow,
    JiraAuthError,
    JiraClient,
    JiraNotFound,
    JiraResponseError,
    JiraServerError,
    JiraTokenError,
    JiraTransportError,
    JqlError,
    OAuth3LO,
    OAuthEndpoints,
    RateLimiter,
    RetryPolicy,
    build_issue_jql,
    iterate_blocking,
    run_sync,
)
from jira_pipeline.settings import load_settings
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW

FAST_RETRY = RetryPolicy(attempts=6, base=0.01, cap=0.05)
WHOLE_DATASET = IssueWindow(FAKE_JIRA_NOW - timedelta(days=100), FAKE_JIRA_NOW + timedelta(days=1))
REDIRECT = "http://127.0.0.1:9/callback"


def basic_client(fake, *, limiter=None, retry=FAST_RETRY, **kwargs):
    auth = BasicAuth(fake.config.email, fake.config.api_token)
    return JiraClient(auth, fake.base_url, limiter=limiter or RateLimiter(0.0, 4), retry=retry,
                      **kwargs)


def requests_to(fake, suffix, status=None):
    """How many requests the fake saw on endpoints ending with `suffix` (optionally one status)."""
    seen = 0
    for endpoint, by_status in fake.admin.stats()["requests"].items():
        if endpoint.endswith(suffix):
            seen += sum(n for s, n in by_status.items() if status is None or int(s) == status)
    return seen


async def all_issues(client, jql=None, **kwargs):
    return [issue async for issue in client.search_issues(jql or build_issue_jql(WHOLE_DATASET),
                                                          **kwargs)]


def assert_records_match_the_fake(fake, issues, *, cloud_user_ids=True):
    expected = {row["id"]: row for row in fake.admin.issues()}
    records = [IssueRecord.from_raw(issue, "conn") for issue in issues]
    assert sorted(r.issue_id for r in records) == sorted(expected)
    for record in records:
        row = expected[record.issue_id]
        assert (record.key, record.project_key, record.status_id) == (
            row["key"], row["project_key"], row["status_id"])
        assert record.updated == parse_jira_datetime(row["updated"])
        if cloud_user_ids:  # Data Center names users by key, the admin dump by account id
            assert record.assignee_account_id == row["assignee_account_id"]


async def authorize(fake, saved, **kwargs):
    """The whole 3LO dance against the fake: consent URL, code, exchange, cloud id discovery."""
    auth = OAuth3LO(
        client_id=fake.config.oauth_client_id,
        client_secret=fake.config.oauth_client_secret,
        endpoints=OAuthEndpoints.at_origin(fake.base_url),
        on_tokens=saved.append,
        **kwargs,
    )
    url = auth.authorize_url(state="state-42", redirect_uri=REDIRECT)
    assert "offline_access" in httpx.URL(url).params["scope"]
    async with httpx.AsyncClient() as http:
        consent = await http.get(url)
        assert consent.status_code == 302
        back = httpx.URL(consent.headers["location"])
        assert back.params["state"] == "state-42"
        await auth.exchange_code(back.params["code"], REDIRECT, http)
        assert await auth.discover_cloud_id(http) == fake.cloud_id
    return auth


# --- auth modes -----------------------------------------------------------------------------


def test_cloud_basic_auth_walks_every_issue_with_the_fakes_key_fields(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            me = await client.myself()
            return me, await all_issues(client, fields=("*all",), expand=("changelog",))

    me, issues = asyncio.run(scenario())
    assert me["emailAddress"] == fake_jira.config.email
    assert_records_match_the_fake(fake_jira, issues)
    assert all("changelog" in issue for issue in issues)


def test_dimensions_are_walked_completely(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            projects = [p async for p in client.projects()]
            statuses = [s async for s in client.statuses()]
            users = [u async for u in client.users(page_size=7)]  # forces bare-array paging
            return projects, statuses, users, await client.fields()

    projects, statuses, users, fields = asyncio.run(scenario())
    assert len(projects) == fake_jira.config.projects == len({p["id"] for p in projects})
    assert len(users) == fake_jira.config.users == len({u["accountId"] for u in users})
    assert len(statuses) == len({s["id"] for s in statuses}) > 0
    assert any(field["id"] == "summary" for field in fields)


def test_priorities_and_resolutions_are_walked_over_their_search_pages(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            priorities = [p async for p in client.priorities(page_size=2)]
            resolutions = [r async for r in client.resolutions(page_size=3)]
            return priorities, resolutions, await client.issue_types(), \
                await client.status_categories()

    priorities, resolutions, types, categories = asyncio.run(scenario())
    assert [p["id"] for p in priorities] == ["1", "2", "3", "4", "5"]
    assert [r["name"] for r in resolutions] == ["Done", "Won't Do", "Duplicate",
                                                 "Cannot Reproduce"]
    assert requests_to(fake_jira, "/rest/api/3/priority/search", 200) == 3
    assert requests_to(fake_jira, "/rest/api/3/resolution/search", 200) == 2
    assert len(types) == 5 and len(categories) == 4


def test_versions_and_components_are_walked_over_pages_smaller_than_their_count(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            versions = [v async for v in client.project_versions("CORE", page_size=2)]
            components = [c async for c in client.project_components("10000", page_size=1)]
            with pytest.raises(JiraNotFound):
                [v async for v in client.project_versions("NOPE")]
            return versions, components

    versions, components = asyncio.run(scenario())
    assert [v["name"] for v in versions] == ["core-1.0", "core-1.1", "core-1.2"]
    assert [c["id"] for c in components] == ["10000", "10001", "10002"]
    assert requests_to(fake_jira, "/project/{key}/version", 200) == 2
    assert requests_to(fake_jira, "/project/{key}/component", 200) == 3


def test_data_center_pat_uses_rest_api_2_and_start_at_paging(fake_jira_factory):
    fake = fake_jira_factory(issues=150, mode="datacenter")

    async def scenario():
        async with JiraClient(BearerPAT(fake.config.pat), fake.base_url,
                              limiter=RateLimiter(0.0, 4), retry=FAST_RETRY) as client:
            assert client.deployment == "datacenter"
            jql = build_issue_jql(WHOLE_DATASET)
            issues = await all_issues(client, jql, page_size=40)
            count = await client.count_issues(jql)
            projects = [p async for p in client.projects()]
            users = [u async for u in client.users(page_size=20)]
            return issues, count, projects, users

    issues, count, projects, users = asyncio.run(scenario())
    assert_records_match_the_fake(fake, issues, cloud_user_ids=False)
    assert count == 150
    assert len(projects) == fake.config.projects and len(users) == fake.config.users
    assert requests_to(fake, "/rest/api/2/search", 200) == math.ceil(150 / 40) + 1
    assert requests_to(fake, "/rest/api/3/search/jql") == 0


def test_oauth_3lo_authorizes_discovers_the_cloud_id_and_calls_under_ex_jira(fake_jira):
    saved = []

    async def scenario():
        auth = await authorize(fake_jira, saved)
        async with JiraClient(auth, limiter=RateLimiter(0.0, 4), retry=FAST_RETRY) as client:
            assert client.api_base.endswith(f"/ex/jira/{fake_jira.cloud_id}")
            return await all_issues(client, fields=("summary", "updated", "project", "status",
                                                    "assignee"))

    issues = asyncio.run(scenario())
    assert_records_match_the_fake(fake_jira, issues)
    assert len(saved) == 1  # the code exchange's tokens were handed over for saving
    assert requests_to(fake_jira, "/ex/jira/{cloud_id}/rest/api/3/search/jql", 200) > 0


def test_wrong_credentials_fail_once_with_a_clear_error_and_no_retry_storm(fake_jira):
    async def scenario():
        auth = BasicAuth(fake_jira.config.email, "wrong-token")
        async with JiraClient(auth, fake_jira.base_url, retry=FAST_RETRY) as client:
            await client.myself()

    with pytest.raises(JiraAuthError) as raised:
        asyncio.run(scenario())
    assert raised.value.status == 401 and "GET /rest/api/3/myself" in str(raised.value)
    assert "check JIRA_EMAIL and JIRA_API_TOKEN" in str(raised.value)
    assert requests_to(fake_jira, "/rest/api/3/myself") == 1


def test_access_token_expiring_mid_pagination_is_refreshed_once_and_the_walk_completes(
    fake_jira,
):
    saved = []

    async def scenario():
        auth = await authorize(fake_jira, saved)
        async with JiraClient(auth, limiter=RateLimiter(0.0, 1), retry=FAST_RETRY) as client:
            issues = []
            async for page in client.search_pages(build_issue_jql(WHOLE_DATASET),
                                                  fields=("updated", "project", "status",
                                                          "assignee"), page_size=50):
                issues.extend(page)
                if len(issues) == 50:
                    # Jira's clock passes the token's expiry while ours still thinks it valid.
                    fake_jira.admin.advance_clock(fake_jira.config.token_ttl + 60)
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert_records_match_the_fake(fake_jira, issues)
    assert counters.token_refreshes == 1 and len(saved) == 2
    assert requests_to(fake_jira, "/search/jql", 401) == 1


def test_refresh_shortly_before_expiry_avoids_the_401(fake_jira):
    saved = []
    offset = [timedelta(0)]

    async def scenario():
        auth = await authorize(fake_jira, saved,
                               clock=lambda: FAKE_JIRA_NOW + offset[0])
        async with JiraClient(auth, limiter=RateLimiter(0.0, 1), retry=FAST_RETRY) as client:
            await client.myself()
            # 30 s before expiry by our clock: inside the refresh margin.
            offset[0] = timedelta(seconds=fake_jira.config.token_ttl - 30)
            await client.myself()
            return client.counters

    counters = asyncio.run(scenario())
    assert counters.token_refreshes == 1
    assert requests_to(fake_jira, "/rest/api/3/myself", 401) == 0


def test_concurrent_refreshes_make_one_token_request(fake_jira):
    saved = []

    async def scenario():
        auth = await authorize(fake_jira, saved)
        async with JiraClient(auth, limiter=RateLimiter(0.0, 8), retry=FAST_RETRY) as client:
            await client.myself()
            fake_jira.admin.advance_clock(fake_jira.config.token_ttl + 60)
            await asyncio.gather(*(client.myself() for _ in range(8)))
            return client.counters

    counters = asyncio.run(scenario())
    assert counters.token_refreshes == 1
    # One code exchange and one refresh: the eight 401s shared a single token request.
    assert requests_to(fake_jira, "/oauth/token", 200) == 2


def test_rotated_refresh_token_is_rejected_when_reused(fake_jira):
    saved = []

    async def scenario():
        auth = await authorize(fake_jira, saved)
        first = auth.tokens
        await auth.refresh()
        stale = OAuth3LO(client_id=auth.client_id, client_secret=auth.client_secret,
                         tokens=first, cloud_id=auth.cloud_id, endpoints=auth.endpoints)
        await stale.refresh()

    with pytest.raises(JiraTokenError, match="refused the refresh_token grant: HTTP 403"):
        asyncio.run(scenario())
    assert len(saved) == 2
    # Each rotation names the refresh token it replaced, for compare-and-set saves.
    assert saved[0].previous_refresh_token is None
    assert saved[1].previous_refresh_token == saved[0].refresh_token


def test_tokens_rotated_by_another_process_are_adopted_instead_of_spending_a_dead_one(
    fake_jira,
):
    store = []  # what the shared token store holds: the last saved grant is store[-1]

    async def scenario():
        first = await authorize(fake_jira, store)

        def second_process(clock):
            return OAuth3LO(client_id=first.client_id, client_secret=first.client_secret,
                            tokens=first.tokens, cloud_id=first.cloud_id,
                            endpoints=first.endpoints, on_tokens=store.append,
                            load_tokens=lambda: store[-1], clock=clock)

        fresh_reader = second_process(clock=lambda: FAKE_JIRA_NOW)
        late_reader = second_process(
            clock=lambda: first.tokens.expires_at - timedelta(seconds=10))
        await first.refresh()  # "process one" rotates; the others still hold the old grant
        exchanged = requests_to(fake_jira, "/oauth/token", 200)
        # A live grant in the store is adopted without any token request...
        await fresh_reader.refresh(stale=fresh_reader.tokens)
        assert fresh_reader.tokens == store[-1] and fresh_reader.refreshes == 0
        assert requests_to(fake_jira, "/oauth/token", 200) == exchanged
        # ...and one about to expire is refreshed with the store's (live) refresh token.
        async with JiraClient(late_reader, limiter=RateLimiter(0.0, 1),
                              retry=FAST_RETRY) as client:
            await client.myself()
        return late_reader

    late_reader = asyncio.run(scenario())
    assert late_reader.refreshes == 1 and late_reader.tokens == store[-1]
    assert requests_to(fake_jira, "/oauth/token", 403) == 0


def test_a_failing_persistence_callback_stops_the_new_access_token_from_being_used(fake_jira):
    saved = []
    handed_over = []

    def broken_store(tokens):
        handed_over.append(tokens)
        raise OSError("connection store is read-only")

    async def scenario():
        auth = await authorize(fake_jira, saved)
        auth.on_tokens = broken_store
        old = auth.tokens
        async with JiraClient(auth, limiter=RateLimiter(0.0, 1), retry=FAST_RETRY) as client:
            fake_jira.admin.advance_clock(fake_jira.config.token_ttl + 60)
            try:
                await client.myself()
            finally:
                assert auth.tokens is old

    with pytest.raises(JiraTokenError) as raised:
        asyncio.run(scenario())
    message = str(raised.value)
    assert "could not be saved" in message and "connection store is read-only" in message
    assert "not used" in message
    assert len(handed_over) == 1
    # The only API request was the one that got the 401: the new token never reached Jira.
    assert requests_to(fake_jira, "/rest/api/3/myself") == 1
    assert requests_to(fake_jira, "/rest/api/3/myself", 401) == 1


# --- paging, counting, windows ----------------------------------------------------------------


def test_count_issue_ids_and_concurrent_windows_agree_with_a_plain_walk(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            jql = build_issue_jql(WHOLE_DATASET)
            count = await client.count_issues(jql)
            ids = [i async for i in client.issue_ids(jql)]
            id_calls = client.counters.search_calls
            windowed = [i async for i in client.search_window(WHOLE_DATASET, fields=("updated",),
                                                              parallelism=4, page_size=30)]
            return count, ids, id_calls, windowed, client.counters

    count, ids, id_calls, windowed, counters = asyncio.run(scenario())
    expected = sorted(row["id"] for row in fake_jira.admin.issues())
    assert count == len(expected) and sorted(ids) == expected
    assert id_calls == 1  # 200 ids fit one 5,000-id page
    assert sorted(issue["id"] for issue in windowed) == expected
    window_pages = counters.search_calls - id_calls
    assert window_pages <= math.ceil(len(expected) / 30) + 3


def test_a_window_of_one_page_costs_one_request_and_no_count(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            day = IssueWindow(FAKE_JIRA_NOW - timedelta(days=1), FAKE_JIRA_NOW)
            issues = [i async for i in client.search_window(day, fields=("updated",))]
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert 0 < len(issues) < 100  # one page of the default size
    assert counters.search_calls == 1 and counters.count_calls == 0
    assert all(
        FAKE_JIRA_NOW - timedelta(days=1) <= parse_jira_datetime(i["fields"]["updated"])
        < FAKE_JIRA_NOW for i in issues
    )


def test_an_empty_window_costs_one_request(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            before_data = IssueWindow(FAKE_JIRA_NOW - timedelta(days=400),
                                      FAKE_JIRA_NOW - timedelta(days=399))
            issues = [i async for i in client.search_window(before_data, fields=("updated",),
                                                            parallelism=4)]
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert issues == []
    assert counters.api_calls == 1 and counters.search_calls == 1


def test_a_window_split_after_its_first_page_walks_every_issue_once(fake_jira):
    # The first page holds the window's lowest ids; the sub-windows walk the ids above it.
    async def scenario():
        async with basic_client(fake_jira) as client:
            issues = [i async for i in client.search_window(WHOLE_DATASET, fields=("updated",),
                                                            parallelism=4, page_size=20)]
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    walked = [issue["id"] for issue in issues]
    assert sorted(walked) == sorted(row["id"] for row in fake_jira.admin.issues())
    assert len(walked) == len(set(walked)) == 200
    assert counters.count_calls == 1
    assert counters.search_calls <= 1 + math.ceil(180 / 20) + 4  # a short last page a walk


def test_a_delta_whose_issues_cluster_at_its_end_is_walked_in_sequential_full_pages(fake_jira):
    # Today's delta: the issues touched this morning all sit in one slice of the day, so equal
    # time slices would cost a near-empty page each on top of the clustered ones.
    today = IssueWindow(FAKE_JIRA_NOW.replace(hour=0), FAKE_JIRA_NOW.replace(hour=0)
                        + timedelta(days=1))
    untouched = [row["key"] for row in fake_jira.admin.issues()
                 if parse_jira_datetime(row["updated"]) < today.start]
    for key in untouched[:34]:
        fake_jira.admin.touch_issue(key)
    expected = sorted(row["id"] for row in fake_jira.admin.issues()
                      if today.start <= parse_jira_datetime(row["updated"]) < today.end)
    page_size = 10
    assert 2 * page_size < len(expected) < 4 * page_size  # more than a page, under two each
    assert len(expected) % page_size  # a full last page would need one more (empty) request

    async def scenario():
        async with basic_client(fake_jira) as client:
            issues = [i async for i in client.search_window(today, fields=("updated",),
                                                            parallelism=4,
                                                            page_size=page_size)]
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert sorted(issue["id"] for issue in issues) == expected
    assert counters.count_calls == 1
    assert counters.search_calls == math.ceil(len(expected) / page_size)


def test_stopping_a_window_walk_early_cancels_the_other_sub_windows(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            walk = client.search_window(WHOLE_DATASET, fields=("updated",), page_size=10)
            first = await anext(walk)
            await walk.aclose()
            calls = client.counters.search_calls
            await asyncio.sleep(0.2)
            return first, calls, client.counters.search_calls

    first, calls_at_close, calls_later = asyncio.run(scenario())
    assert first["id"]
    assert calls_later == calls_at_close < math.ceil(200 / 10)


def test_window_bounds_ignore_the_searching_users_time_zone(fake_jira_factory):
    window = IssueWindow(FAKE_JIRA_NOW - timedelta(days=3, hours=5),
                         FAKE_JIRA_NOW - timedelta(days=1, hours=7))
    found = []
    for zone in ("America/Los_Angeles", "Pacific/Auckland"):
        fake = fake_jira_factory(issues=300, seed=3, user_timezone=zone)

        async def scenario(fake=fake):
            async with basic_client(fake) as client:
                return sorted([i async for i in client.issue_ids(build_issue_jql(window))])

        found.append(asyncio.run(scenario()))
        expected = sorted(
            row["id"] for row in fake.admin.issues()
            if window.start <= parse_jira_datetime(row["updated"]) < window.end
        )
        assert found[-1] == expected
    assert found[0] == found[1] and found[0]


# --- rate limits, faults, broken answers --------------------------------------------------------


def test_rate_limited_full_walk_completes_without_requests_inside_retry_after(fake_jira_factory):
    fake = fake_jira_factory(issues=2000, seed=2, rate_limit=2, burst=2)

    async def scenario():
        async with basic_client(fake, limiter=RateLimiter(0.2, 4)) as client:
            issues = await all_issues(client, fields=("updated", "project", "status",
                                                      "assignee"), page_size=100)
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert_records_match_the_fake(fake, issues)
    stats = fake.admin.stats()
    assert stats["rate_limited"] > 0  # the limit was really hit...
    assert stats["requests_in_retry_after_window"] == 0  # ...and every Retry-After honoured
    assert counters.rate_limit_waits == stats["rate_limited"]
    assert counters.wait_seconds > 0


def test_concurrent_sub_windows_under_a_rate_limit_send_nothing_inside_retry_after(
    fake_jira_factory,
):
    fake = fake_jira_factory(issues=1000, seed=2, rate_limit=2, burst=2)

    async def scenario():
        # No spacing and four in flight: only the limiter's reading of 429s and of the
        # remaining budget keeps requests out of the Retry-After windows.
        async with basic_client(fake, limiter=RateLimiter(0.0, 4)) as client:
            issues = [i async for i in client.search_window(
                WHOLE_DATASET, fields=("updated", "project", "status", "assignee"),
                parallelism=4, page_size=100)]
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert_records_match_the_fake(fake, issues)
    stats = fake.admin.stats()
    assert stats["rate_limited"] > 0
    assert stats["requests_in_retry_after_window"] == 0
    assert counters.rate_limit_waits == stats["rate_limited"]


def test_walk_under_twenty_percent_faults_yields_exactly_the_clean_records(fake_jira_factory):
    fake = fake_jira_factory(issues=300, seed=4)

    async def walk():
        async with basic_client(fake, retry=RetryPolicy(attempts=8, base=0.01, cap=0.05)) as c:
            return await all_issues(c, expand=("changelog",), page_size=50), c.counters

    clean, _ = asyncio.run(walk())
    fake.admin.configure(fault_rate=0.2)
    faulty, counters = asyncio.run(walk())
    assert faulty == clean
    assert counters.retries == fake.admin.stats()["faults"] > 0


def test_permanent_server_error_ends_after_the_configured_attempts_with_bounded_wait(fake_jira):
    fake_jira.admin.configure(fault_rate=1.0)
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.05)

    async def scenario():
        async with basic_client(fake_jira, retry=policy) as client:
            try:
                await client.myself()
            finally:
                counters = client.counters
        return counters

    with pytest.raises(JiraServerError) as raised:
        asyncio.run(scenario())
    assert raised.value.status in (500, 502, 503)
    assert requests_to(fake_jira, "/rest/api/3/myself") == 3
    assert "GET /rest/api/3/myself" in str(raised.value)


def test_backoff_waits_double_up_to_the_cap_scaled_by_the_jitter(fake_jira):
    fake_jira.admin.configure(fault_rate=1.0)
    # The jitter's largest draw: backoffs 0.01, 0.02, then capped at 0.02.
    policy = RetryPolicy(attempts=4, base=0.01, cap=0.02, jitter=lambda: 1.0)

    async def scenario():
        async with basic_client(fake_jira, retry=policy) as client:
            with pytest.raises(JiraServerError):
                await client.myself()
            return client.counters

    counters = asyncio.run(scenario())
    assert counters.retries == 3
    assert counters.wait_seconds == pytest.approx(0.01 + 0.02 + 0.02)
    assert policy.max_total_wait() == pytest.approx(0.05)


def test_one_malformed_json_answer_is_retried_and_the_call_succeeds(fake_jira):
    fake_jira.admin.configure(malformed_json_next=1)

    async def scenario():
        async with basic_client(fake_jira) as client:
            return await client.myself(), client.counters

    me, counters = asyncio.run(scenario())
    assert me["emailAddress"] == fake_jira.config.email
    assert counters.retries == 1
    assert requests_to(fake_jira, "/rest/api/3/myself") == 2


def test_json_malformed_on_every_attempt_fails_naming_the_endpoint(fake_jira):
    fake_jira.admin.configure(malformed_json_next=1_000)
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.05)

    async def scenario():
        async with basic_client(fake_jira, retry=policy) as client:
            try:
                await client.myself()
            finally:
                assert client.counters.retries == 2

    with pytest.raises(JiraResponseError, match=r"GET /rest/api/3/myself: .*malformed or trunc"):
        asyncio.run(scenario())
    assert requests_to(fake_jira, "/rest/api/3/myself") == 3


def test_a_body_truncated_mid_walk_is_retried_and_the_walk_completes(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            issues = []
            async for page in client.search_pages(build_issue_jql(WHOLE_DATASET),
                                                  fields=("updated",), page_size=50):
                if not issues:
                    fake_jira.admin.configure(malformed_json_next=1)
                issues += page
            return issues, client.counters

    issues, counters = asyncio.run(scenario())
    assert sorted(i["id"] for i in issues) == sorted(r["id"] for r in fake_jira.admin.issues())
    assert counters.retries == 1


def test_a_body_truncated_on_every_attempt_mid_walk_names_the_search_endpoint(fake_jira):
    async def scenario():
        async with basic_client(fake_jira, retry=RetryPolicy(attempts=2, base=0.01)) as client:
            async for _page in client.search_pages(build_issue_jql(WHOLE_DATASET),
                                                   fields=("updated",), page_size=50):
                fake_jira.admin.configure(malformed_json_next=1_000)

    with pytest.raises(JiraResponseError, match=r"POST /rest/api/3/search/jql: .*JSON"):
        asyncio.run(scenario())


def test_an_html_503_page_is_a_response_error_naming_the_endpoint(fake_jira):
    fake_jira.admin.configure(fault_rate=1.0)

    async def scenario():
        async with basic_client(fake_jira, retry=RetryPolicy(attempts=1)) as client:
            for _ in range(50):  # the fake draws 500, 502 or 503 from a seeded sequence
                try:
                    await client.myself()
                except JiraServerError as error:
                    if error.status == 503:
                        return error
        raise AssertionError("the fake never answered 503")

    error = asyncio.run(scenario())
    assert isinstance(error, JiraResponseError)
    assert "GET /rest/api/3/myself" in str(error) and "HTML" in str(error)


def test_a_read_timeout_is_retried_then_reported_as_a_transport_error(fake_jira):
    fake_jira.admin.configure(latency_ms=500)

    async def scenario():
        async with basic_client(fake_jira, timeout=0.05,
                                retry=RetryPolicy(attempts=2, base=0.01)) as client:
            try:
                await client.myself()
            finally:
                assert client.counters.retries == 1

    with pytest.raises(JiraTransportError, match="GET /rest/api/3/myself"):
        asyncio.run(scenario())


def test_refused_connection_names_host_and_port():
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        auth = BasicAuth("someone@example.com", "made-up-token")
        async with JiraClient(auth, f"http://127.0.0.1:{port}", limiter=RateLimiter(0.0, 4),
                              retry=RetryPolicy(attempts=2, base=0.0)) as client:
            await client.myself()

    with pytest.raises(JiraTransportError) as raised:
        asyncio.run(scenario())
    assert (raised.value.host, raised.value.port) == ("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "GET /rest/api/3/myself" in str(raised.value)
    assert "made-up-token" not in str(raised.value)


# --- JQL injection and secrets ------------------------------------------------------------------


def test_injected_project_keys_never_reach_jira(fake_jira):
    async def scenario():
        async with basic_client(fake_jira) as client:
            async for _ in client.search_window(WHOLE_DATASET,
                                                projects=['CORE" OR project != "CORE']):
                pass

    with pytest.raises(JqlError):
        asyncio.run(scenario())
    assert requests_to(fake_jira, "/search/jql") == 0
    assert requests_to(fake_jira, "/approximate-count") == 0


def test_user_jql_cannot_widen_the_project_restriction(fake_jira):
    projects = sorted({row["project_key"] for row in fake_jira.admin.issues()})
    mine, other = projects[0], projects[1]

    async def scenario():
        async with basic_client(fake_jira) as client:
            jql = build_issue_jql(WHOLE_DATASET, projects=[mine],
                                  user_jql=f"project = {other} OR updated > 0")
            return await all_issues(client, jql, fields=("project",))

    issues = asyncio.run(scenario())
    assert issues and {i["fields"]["project"]["key"] for i in issues} == {mine}


def test_no_credential_appears_in_errors_reprs_or_logs(fake_jira_factory, caplog):
    fake = fake_jira_factory(issues=20)
    dc = fake_jira_factory(issues=20, mode="datacenter")
    caplog.set_level(logging.DEBUG)
    texts = []
    saved = []

    async def scenario():
        basic = BasicAuth(fake.config.email, fake.config.api_token)
        pat = BearerPAT(dc.config.pat)
        oauth = await authorize(fake, saved)
        async with (JiraClient(basic, fake.base_url, retry=FAST_RETRY) as c1,
                    JiraClient(pat, dc.base_url, retry=FAST_RETRY) as c2,
                    JiraClient(oauth, retry=FAST_RETRY) as c3):
            for client in (c1, c2, c3):
                texts.extend([repr(client), repr(client.auth), str(client.counters)])
                await client.myself()
                try:
                    await client.request_json("GET", f"{client.api_prefix}/issue/NOPE-1")
                except Exception as error:  # any error type: its text is what we scan
                    texts.extend([str(error), repr(error)])
        fake.admin.advance_clock(fake.config.token_ttl + 60)
        oauth.on_tokens = lambda tokens: (_ for _ in ()).throw(RuntimeError(
            f"cannot save {tokens.refresh_token.get_secret_value()}"))
        async with JiraClient(oauth, retry=FAST_RETRY) as c3:
            try:
                await c3.myself()
            except JiraTokenError as error:
                texts.extend([str(error), repr(error)])
        for wrong, site in ((BasicAuth(fake.config.email, "wrong-" + fake.config.api_token), fake),
                            (BearerPAT("wrong-" + dc.config.pat), dc)):
            async with JiraClient(wrong, site.base_url, retry=FAST_RETRY) as client:
                try:
                    await client.myself()
                except JiraAuthError as error:
                    texts.extend([str(error), repr(error)])
        return oauth

    oauth = asyncio.run(scenario())
    texts.extend(record.getMessage() for record in caplog.records)
    texts.extend(str(record.args) for record in caplog.records)
    secrets = [fake.config.api_token, dc.config.pat, fake.config.oauth_client_secret]
    secrets += [t.access_token.get_secret_value() for t in saved]
    secrets += [t.refresh_token.get_secret_value() for t in saved]
    secrets += BasicAuth(fake.config.email, fake.config.api_token).secrets()
    assert oauth.tokens is not None and len(texts) > 10
    leaks = [(secret, text) for secret in secrets for text in texts if secret in text]
    assert leaks == []


# --- from settings, and from synchronous code -----------------------------------------------


def test_a_client_built_from_environment_settings_talks_to_the_site(fake_jira):
    settings = load_settings({
        "JIRA_BASE_URL": fake_jira.base_url,
        "JIRA_EMAIL": fake_jira.config.email,
        "JIRA_API_TOKEN": fake_jira.config.api_token,
        "JIRA_MIN_REQUEST_INTERVAL_MS": "0",
    })

    async def scenario():
        async with JiraClient.from_settings(settings) as client:
            assert client.limiter.min_interval == 0 and client.retry.attempts == 6
            return await client.myself()

    assert asyncio.run(scenario())["emailAddress"] == fake_jira.config.email


def test_sync_code_walks_issues_through_the_blocking_bridge_and_can_stop_early(fake_jira):
    client = basic_client(fake_jira)
    loop = EventLoopThread()
    try:
        walked = list(iterate_blocking(
            lambda: client.search_window(WHOLE_DATASET, fields=("updated", "project", "status",
                                                               "assignee"), page_size=50),
            max_buffered=20, loop=loop))
        assert_records_match_the_fake(fake_jira, walked)

        first_ten = []
        for issue in iterate_blocking(lambda: client.search_issues(
                build_issue_jql(WHOLE_DATASET), fields=("updated",), page_size=10), loop=loop):
            first_ten.append(issue)
            if len(first_ten) == 10:
                break
        # The same client (and its pooled connections) keeps working on the same loop.
        assert run_sync(client.count_issues(build_issue_jql(WHOLE_DATASET)), loop=loop) == 200
        assert len(first_ten) == 10
    finally:
        run_sync(client.aclose(), loop=loop)
        loop.close()
