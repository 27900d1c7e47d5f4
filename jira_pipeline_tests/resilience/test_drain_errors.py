"""A Jira error raised while the IO manager drains an asset's stream (the walk runs inside
`handle_output`) fails the step as that error, with its retry classification, never as Dagster's
generic "Error occurred while handling output"."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import STEP_RETRY_MODULES, SyncTarget, this_hour

GENERIC_HEADLINE = "Error occurred while handling output"


def issue_step_events(result: dg.ExecuteInProcessResult) -> list[dg.DagsterEvent]:
    return [event for event in result.all_events if event.step_key == "jira_issues"]


def failure_of(events: list[dg.DagsterEvent]) -> tuple[str, dict]:
    """The step failure's headline and its user metadata."""
    [failure] = [event for event in events if event.is_step_failure]
    data = failure.step_failure_data
    assert data.error is not None
    user = data.user_failure_data
    metadata = {k: getattr(v, "value", v) for k, v in (user.metadata if user else {}).items()}
    return data.error.message, metadata


def serving_faults(fake: FakeJiraHandle) -> None:
    """Every answer from now on a 500, 502 or 503 (the fake's fault knob picks among them)."""
    fake.admin.configure(fault_rate=1.0)


def test_a_server_error_during_the_walk_fails_the_step_as_itself(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour())
    target = point_at(fake)
    monkeypatch.setenv("JIRA_RETRY_ATTEMPTS", "2")
    serving_faults(fake)

    result = target.sync("jira_issues_job")

    assert not result.success
    headline, metadata = failure_of(issue_step_events(result))
    assert GENERIC_HEADLINE not in headline
    assert "JiraServerError: " in headline or "JiraGatewayError: " in headline, headline
    assert "HTTP 50" in headline and "/rest/api/3/search" in headline
    assert metadata["cause"] in ("JiraServerError", "JiraGatewayError")
    assert metadata["http_status"] in (500, 502, 503)
    assert fake.admin.stats()["faults"] >= 2  # the client's own retries came first


def test_an_auth_error_during_the_walk_fails_the_step_as_itself(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour())
    target = point_at(fake)
    monkeypatch.setenv("JIRA_API_TOKEN", "a-revoked-token")

    result = target.sync("jira_issues_job")

    assert not result.success
    headline, metadata = failure_of(issue_step_events(result))
    assert GENERIC_HEADLINE not in headline
    assert "JiraAuthError" in headline and "HTTP 401" in headline
    assert (metadata["cause"], metadata["http_status"]) == ("JiraAuthError", 401)


def test_the_step_retry_policy_retries_a_server_error_and_not_an_auth_error(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real policy waits 30 s and more between attempts: the same shape without the wait.
    for module in STEP_RETRY_MODULES:
        monkeypatch.setattr(f"{module}.NETWORK_RETRY_POLICY", dg.RetryPolicy(max_retries=1))
    monkeypatch.setenv("JIRA_RETRY_ATTEMPTS", "1")
    faulty = fake_jira_factory(issues=20, days=2, now=this_hour())
    serving_faults(faulty)
    revoked = fake_jira_factory(issues=20, days=2, now=this_hour())

    server_error = point_at(faulty, "faulty").sync("jira_issues_job")
    auth_error = point_at(revoked, "revoked")
    monkeypatch.setenv("JIRA_API_TOKEN", "a-revoked-token")
    refused = auth_error.sync("jira_issues_job")

    retried = [e.event_type for e in issue_step_events(server_error)]
    assert retried.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert retried.count(dg.DagsterEventType.STEP_RESTARTED) == 1
    not_retried = [e.event_type for e in issue_step_events(refused)]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in not_retried
    headline, _ = failure_of(issue_step_events(refused))
    assert "JiraAuthError" in headline and GENERIC_HEADLINE not in headline
