"""Fixtures for the fake Jira's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraConfig, FakeJiraHandle, run_fake_jira
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import basic_client


@pytest.fixture
def jira(fake_jira: Any) -> Iterator[httpx.Client]:
    """The default fake (200 issues, seed 1, clock pinned), as its Cloud user over basic auth."""
    with basic_client(fake_jira) as client:
        yield client


@pytest.fixture(scope="module")
def read_only_fake() -> Iterator[FakeJiraHandle]:
    """The default fake's twin, shared by one module's tests that only read.

    Starting and stopping a server costs more than most tests that read from it. Teardown
    proves the sharing was safe: the site must still hold exactly what it was seeded with.
    """
    with run_fake_jira(FakeJiraConfig(issues=200, seed=1, now=FAKE_JIRA_NOW)) as fake:
        seeded = fake.admin.issues()
        yield fake
        assert fake.admin.issues() == seeded, "a test sharing read_only_fake changed its data"


@pytest.fixture(scope="module")
def reader(read_only_fake: FakeJiraHandle) -> Iterator[httpx.Client]:
    """read_only_fake's Cloud user over basic auth."""
    with basic_client(read_only_fake) as client:
        yield client
