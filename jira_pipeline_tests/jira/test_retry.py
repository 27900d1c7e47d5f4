"""Retry policy: exponential backoff with full jitter, and which failures deserve a retry."""

from typing import Any

import pytest

from jira_pipeline.jira._exceptions import (
    JiraAuthError,
    JiraBadRequest,
    JiraMalformedBody,
    JiraNotFound,
    JiraPermissionError,
    JiraRateLimited,
    JiraResponseError,
    JiraServerError,
    JiraTransportError,
)
from jira_pipeline.jira.retry import RetryPolicy, is_retryable

KW: dict[str, Any] = {"method": "GET", "path": "/rest/api/3/myself"}


def test_backoff_doubles_from_the_base_up_to_the_cap():
    policy = RetryPolicy(attempts=10, base=1.0, cap=60.0, jitter=lambda: 1.0)
    assert [policy.backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_full_jitter_draws_from_zero_to_the_ceiling():
    assert RetryPolicy(base=2.0, jitter=lambda: 0.0).backoff(3) == 0.0
    assert RetryPolicy(base=2.0, jitter=lambda: 0.5).backoff(3) == 8.0


def test_default_policy_is_six_attempts_base_one_second_cap_sixty():
    policy = RetryPolicy()
    assert (policy.attempts, policy.base, policy.cap) == (6, 1.0, 60.0)
    assert policy.max_total_wait() == 1 + 2 + 4 + 8 + 16


@pytest.mark.parametrize(
    "error",
    [
        JiraTransportError("timed out", **KW),
        JiraRateLimited("Too Many Requests", status=429, **KW),
        JiraServerError("Bad Gateway", status=502, **KW),
        JiraMalformedBody("HTTP 200 with a malformed or truncated JSON body", status=200, **KW),
    ],
)
def test_429_5xx_transport_failures_and_truncated_bodies_are_retried(error):
    assert is_retryable(error)
    assert RetryPolicy(attempts=3).should_retry(error, attempt=2)
    assert not RetryPolicy(attempts=3).should_retry(error, attempt=3)


@pytest.mark.parametrize(
    "error",
    [
        JiraBadRequest("Bad Request", status=400, **KW),
        JiraAuthError("Unauthorized", status=401, **KW),
        JiraPermissionError("Forbidden", status=403, **KW),
        JiraNotFound("Not Found", status=404, **KW),
        JiraResponseError("HTTP 200 with an HTML page instead of JSON", status=200, **KW),
        JiraResponseError("expected a JSON array", **KW),
    ],
)
def test_other_failures_are_never_retried(error):
    assert not RetryPolicy(attempts=6).should_retry(error, attempt=1)
