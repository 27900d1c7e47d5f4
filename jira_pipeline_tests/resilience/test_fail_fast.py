"""Errors that no retry can fix fail the run at once, with the cause as its headline, although
the assets keep their step RetryPolicy."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import SyncTarget, this_hour


@pytest.fixture(autouse=True)
def without_step_retries() -> None:
    """Unlike the rest of this folder, these runs keep the real step RetryPolicy."""


def step_events(result: dg.ExecuteInProcessResult, step: str) -> list[dg.DagsterEvent]:
    return [event for event in result.all_events if event.step_key == step]


def test_401_fails_at_once_without_step_retries(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour())
    target = point_at(fake)
    monkeypatch.setenv("JIRA_API_TOKEN", "a-revoked-token")
    policy = target.definitions().resolve_assets_def("jira_issues").op.retry_policy
    assert policy is not None and policy.max_retries >= 1  # the real policy is in force

    result = target.sync("jira_issues_job")

    assert not result.success
    events = step_events(result, "jira_issues")
    kinds = [event.event_type for event in events]
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    assert dg.DagsterEventType.STEP_RESTARTED not in kinds
    [failure] = [event for event in events if event.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None
    headline = error.message
    assert "JiraAuthError" in headline and "HTTP 401" in headline
    assert "max_retries" not in headline
    assert "a-revoked-token" not in headline
    # The client did not retry it either: one request, answered 401, and nothing after it.
    answers = fake.admin.stats()["requests"]
    assert sum(by_status.get("401", 0) for by_status in answers.values()) == 1
    assert sum(sum(by_status.values()) for by_status in answers.values()) == 1


def test_403_fails_at_once_without_step_retries(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour())
    target = point_at(fake)
    project = fake.admin.issues()[0]["project_key"]
    monkeypatch.setenv("JIRA_PROJECTS", project)
    fake.admin.configure(forbidden_projects=[project])

    result = target.sync("jira_issues_job")

    assert not result.success
    kinds = [event.event_type for event in step_events(result, "jira_issues")]
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    [failure] = [e for e in step_events(result, "jira_issues") if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None
    headline = error.message
    assert "JiraPermissionError" in headline and "HTTP 403" in headline and project in headline


def test_400_fails_at_once_without_step_retries(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour())
    target = point_at(fake)
    monkeypatch.setenv("JIRA_PROJECTS", "NOSUCHPROJECT")  # a well-formed key Jira refuses

    result = target.sync("jira_issues_job")

    assert not result.success
    kinds = [event.event_type for event in step_events(result, "jira_issues")]
    assert kinds.count(dg.DagsterEventType.STEP_START) == 1
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    [failure] = [e for e in step_events(result, "jira_issues") if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None
    assert "JiraBadRequest" in error.message and "NOSUCHPROJECT" in error.message
