"""Shared pytest fixtures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from jira_pipeline.fakejira import FakeJiraConfig, FakeJiraHandle, run_fake_jira
from jira_pipeline_tests.postgres import INSTANCE_FILES, instance_overrides


def python_output(code: str) -> str:
    """What `code` prints, run in a fresh interpreter (what it imports, freezes or leaves
    behind is that process's own, not the test process's)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

# Pinned so the seeded dataset (relative to the fake's clock) is the same on every run.
FAKE_JIRA_NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake_jira_factory() -> Iterator[Callable[..., FakeJiraHandle]]:
    """Start fake Jiras with FakeJiraConfig keyword arguments; all stop at teardown."""
    with ExitStack() as stack:

        def start(**config: object) -> FakeJiraHandle:
            config.setdefault("now", FAKE_JIRA_NOW)
            return stack.enter_context(run_fake_jira(FakeJiraConfig(**config)))  # type: ignore[arg-type]

        yield start


@pytest.fixture
def fake_jira(fake_jira_factory: Callable[..., FakeJiraHandle]) -> FakeJiraHandle:
    """A small Cloud fake: 200 issues, seed 1, clock starting 2026-01-15T12:00:00Z."""
    return fake_jira_factory(issues=200, seed=1)


@pytest.fixture(params=INSTANCE_FILES)
def instance_config(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The repo's dagster.yaml, then dagster.postgres.yaml on a fresh database of the server
    DAGSTER_PG_URL names (skipped without one): instance config for `dg.instance_for_test`."""
    with instance_overrides(request.param, monkeypatch) as config:
        yield config
