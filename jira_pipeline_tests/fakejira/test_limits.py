"""The fake's hostile knobs behave as Jira Cloud does: 429 rate limits, server faults, latency."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira.limits import RateLimiter
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json
from jira_pipeline_tests.fakejira.oauth_flow import bearer, exchange_code

RATE_LIMIT_HEADERS = (
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Reason",
)


# One token per 1,000 s: no token refills while a test runs, so which request is refused does
# not depend on how fast the machine is. How refills behave in time is proven on the bucket
# itself, with the clock it accepts (the `test_the_bucket_*` tests).
NO_REFILL = 0.001


def burst_of_requests(client: httpx.Client, count: int) -> list[httpx.Response]:
    return [client.get("/rest/api/3/myself") for _ in range(count)]


def test_requests_beyond_the_burst_answer_429_with_jira_headers(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=NO_REFILL, burst=3)
    with basic_client(fake) as client:
        responses = burst_of_requests(client, 8)
    assert [r.status_code for r in responses] == [200] * 3 + [429] * 5
    limited = responses[3:]
    for response in limited:
        missing = [h for h in RATE_LIMIT_HEADERS if h not in response.headers]
        assert not missing, f"429 without {missing}"
        # A token takes 1,000 s to refill: Jira says how long, never less than a second.
        assert 1 <= int(response.headers["Retry-After"]) <= 1000
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        datetime.fromisoformat(response.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    assert [r.headers["X-RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    stats = fake.admin.stats()
    assert stats["rate_limited"] == 5
    # Every 429 after the first arrived while its credential was told to wait.
    assert stats["requests_in_retry_after_window"] == 4


def test_impatience_inside_the_retry_after_window_is_counted(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=NO_REFILL, burst=1)
    with basic_client(fake) as client:
        first, refused, impatient = burst_of_requests(client, 3)
    assert (first.status_code, refused.status_code, impatient.status_code) == (200, 429, 429)
    stats = fake.admin.stats()
    assert stats["rate_limited"] == 2
    assert stats["requests_in_retry_after_window"] == 1  # the refused one was not yet told


def test_the_bucket_serves_whoever_waits_out_retry_after() -> None:
    for rate, burst in ((0.2, 3), (0.5, 1), (1.0, 1), (3.0, 5)):
        patient, impatient = RateLimiter(rate, burst), RateLimiter(rate, burst)
        for bucket in (patient, impatient):
            assert all(bucket.check("me", now=0.0).allowed for _ in range(burst))
            refused = bucket.check("me", now=0.1)
            assert not refused.allowed and not refused.inside_retry_window
        early = impatient.check("me", now=0.1 + refused.reset_in_s / 2)  # before the refill
        assert not early.allowed and early.inside_retry_window, (rate, burst)
        on_time = patient.check("me", now=0.1 + refused.retry_after_s)
        assert on_time.allowed and not on_time.inside_retry_window, (rate, burst)


def test_the_bucket_refills_at_the_configured_rate_up_to_the_burst() -> None:
    bucket = RateLimiter(rate=2.0, burst=3)
    assert [bucket.check("me", now=0.0).allowed for _ in range(4)] == [True] * 3 + [False]
    # Half a second at 2 tokens/s is one request; an hour idle saves up only the burst.
    assert [bucket.check("me", now=0.5).allowed for _ in range(2)] == [True, False]
    assert [bucket.check("me", now=3600.0).allowed for _ in range(4)] == [True] * 3 + [False]
    refused = bucket.check("me", now=3600.0)
    assert refused.retry_after_s == 1 and refused.reset_in_s == pytest.approx(0.5)


def test_each_credential_has_its_own_bucket(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=NO_REFILL, burst=2)
    with basic_client(fake) as client:
        responses = burst_of_requests(client, 3)
    assert responses[-1].status_code == 429
    with httpx.Client(base_url=fake.base_url) as client:
        tokens = exchange_code(client, fake)
        gateway = f"/ex/jira/{fake.cloud_id}/rest/api/3/myself"
        assert client.get(gateway, headers=bearer(tokens["access_token"])).status_code == 200


def test_rate_limit_can_be_switched_off_at_runtime(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=NO_REFILL, burst=1)
    with basic_client(fake) as client:
        responses = burst_of_requests(client, 3)
        assert [r.status_code for r in responses] == [200, 429, 429]
        fake.admin.configure(rate_limit=0)
        responses = burst_of_requests(client, 10)
    assert {r.status_code for r in responses} == {200}


def test_fault_rate_one_answers_every_request_with_a_server_error(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, fault_rate=1.0)
    with basic_client(fake) as client:
        responses = [client.get("/rest/api/3/serverInfo") for _ in range(30)]
    assert {r.status_code for r in responses} <= {500, 502, 503}
    assert len({r.status_code for r in responses}) > 1, "faults vary between 500, 502 and 503"
    for response in responses:
        if response.status_code == 503:
            assert response.headers["content-type"].startswith("text/html")
            assert "<html" in response.text.lower()
    assert fake.admin.stats()["faults"] == 30


def test_fault_rate_answers_about_that_share_of_requests(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, fault_rate=0.3)
    with basic_client(fake) as client:
        statuses = [client.get("/rest/api/3/myself").status_code for _ in range(200)]
    faults = sum(1 for s in statuses if s >= 500)
    assert set(statuses) <= {200, 500, 502, 503}
    # 200 draws at p=0.3: mean 60, sd 6.5; the band is over six sd wide either side.
    assert 20 <= faults <= 100


def test_faults_can_be_switched_off_at_runtime(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, fault_rate=1.0)
    assert fake.admin.configure(fault_rate=0.0)["fault_rate"] == 0.0
    with basic_client(fake) as client:
        assert ok_json(client.get("/rest/api/3/myself"))


# Latency is proven by the fake's own count of what it waited (a timer around a request would
# pass with no latency at all on a machine slow enough).
def test_every_answer_waits_the_configured_latency_first(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=10, latency_ms=150)
    with basic_client(fake) as client:
        for path in ("/rest/api/3/myself", "/rest/api/3/field"):
            assert client.get(path).status_code == 200
    with httpx.Client(base_url=fake.base_url) as anonymous:
        assert anonymous.get("/rest/api/3/myself").status_code == 401
    assert fake.admin.stats()["latency_waited_ms"] == 3 * 150


def test_latency_can_be_raised_at_runtime(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0)
    with basic_client(fake) as client:
        assert client.get("/rest/api/3/serverInfo").status_code == 200
        assert fake.admin.stats()["latency_waited_ms"] == 0
        assert fake.admin.configure(latency_ms=120)["latency_ms"] == 120
        assert client.get("/rest/api/3/serverInfo").status_code == 200
    assert fake.admin.stats()["latency_waited_ms"] == 120


def test_malformed_json_is_served_exactly_the_configured_number_of_times(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=0)
    fake.admin.configure(malformed_json_next=2)
    with basic_client(fake) as client:
        answers = [client.get("/rest/api/3/myself") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    for broken in answers[:2]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.text)
    assert json.loads(answers[2].text)["accountId"]
