"""Fixtures for the fake Jira's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jira_pipeline_tests.fakejira.jira_pages import basic_client


@pytest.fixture
def jira(fake_jira: Any) -> Iterator[httpx.Client]:
    """The default fake (200 issues, seed 1, clock pinned), as its Cloud user over basic auth."""
    with basic_client(fake_jira) as client:
        yield client

