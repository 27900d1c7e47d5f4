"""The fake's hostile knobs behave as Jira Cloud does: 429 rate limits, server faults, latency."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json
from jira_pipeline_tests.fakejira.oauth_flow import bearer, exchange_code

RATE_LIMIT_HEADERS = (
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Reason",
)


def burst_of_requests(client: httpx.Client, count: int) -> tuple[list[httpx.Response], float]:
    started = time.monotonic()
    responses = [client.get("/rest/api/3/myself") for _ in range(count)]
    return responses, time.monotonic() - started


def test_requests_beyond_the_burst_answer_429_with_jira_headers(fake_jira_factory: Any) -> None:
    # A slow refill (one token per 5 s) keeps the outcome independent of machine speed.
    fake = fake_jira_factory(issues=0, rate_limit=0.2, burst=3)
    with basic_client(fake) as client:
        responses, elapsed = burst_of_requests(client, 8)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses[:3] == [200, 200, 200]
    # No more than the burst plus what trickled in meanwhile may pass.
    assert statuses.count(200) <= 3 + int(elapsed * 0.2) + 1
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    for response in limited:
        missing = [h for h in RATE_LIMIT_HEADERS if h not in response.headers]
        assert not missing, f"429 without {missing}"
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        datetime.fromisoformat(response.headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
    stats = fake.admin.stats()
    assert stats["rate_limited"] == len(limited)
    # Every 429 after the first arrived while its credential was told to wait.
    assert stats["requests_in_retry_after_window"] >= len(limited) - 1


def test_waiting_out_retry_after_is_served_and_impatience_is_counted(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=1.0, burst=1)
    with basic_client(fake) as client:
        first, refused = (client.get("/rest/api/3/myself") for _ in range(2))
        assert (first.status_code, refused.status_code) == (200, 429)
        impatient = client.get("/rest/api/3/myself")  # inside the Retry-After window
        assert impatient.status_code == 429
        time.sleep(int(impatient.headers["Retry-After"]))
        patient = client.get("/rest/api/3/myself")
    assert patient.status_code == 200
    stats = fake.admin.stats()
    assert stats["rate_limited"] == 2
    assert stats["requests_in_retry_after_window"] == 1


def test_each_credential_has_its_own_bucket(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=0.2, burst=2)
    with basic_client(fake) as client:
        responses, _ = burst_of_requests(client, 3)
    assert responses[-1].status_code == 429
    with httpx.Client(base_url=fake.base_url) as client:
        tokens = exchange_code(client, fake)
        gateway = f"/ex/jira/{fake.cloud_id}/rest/api/3/myself"
        assert client.get(gateway, headers=bearer(tokens["access_token"])).status_code == 200


def test_rate_limit_can_be_switched_off_at_runtime(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0, rate_limit=0.5, burst=1)
    with basic_client(fake) as client:
        responses, _ = burst_of_requests(client, 3)
        assert 429 in [r.status_code for r in responses]
        fake.admin.configure(rate_limit=0)
        responses, _ = burst_of_requests(client, 10)
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


@pytest.mark.parametrize("latency_ms", [150])
def test_every_answer_takes_at_least_the_configured_latency(
    fake_jira_factory: Any, latency_ms: int
) -> None:
    fake = fake_jira_factory(issues=10, latency_ms=latency_ms)
    with basic_client(fake) as client:
        for path in ("/rest/api/3/myself", "/rest/api/3/field"):
            started = time.monotonic()
            assert client.get(path).status_code == 200
            assert time.monotonic() - started >= latency_ms / 1000
        with httpx.Client(base_url=fake.base_url) as anonymous:
            started = time.monotonic()
            assert anonymous.get("/rest/api/3/myself").status_code == 401
            assert time.monotonic() - started >= latency_ms / 1000


def test_latency_can_be_raised_at_runtime(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=0)
    assert fake.admin.configure(latency_ms=120)["latency_ms"] == 120
    with basic_client(fake) as client:
        started = time.monotonic()
        assert client.get("/rest/api/3/serverInfo").status_code == 200
        assert time.monotonic() - started >= 0.120


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
