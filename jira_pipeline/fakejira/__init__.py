"""A local Jira Cloud stand-in, served over real HTTP, for the demo, tests and benchmarks."""

from jira_pipeline.fakejira.admin import FakeJiraAdmin, FakeJiraAdminError
from jira_pipeline.fakejira.config import FakeJiraConfig
from jira_pipeline.fakejira.server import FakeJiraHandle, FakeJiraStartError, run_fake_jira

__all__ = [
    "FakeJiraAdmin",
    "FakeJiraAdminError",
    "FakeJiraConfig",
    "FakeJiraHandle",
    "FakeJiraStartError",
    "run_fake_jira",
]
