"""The code location is built when Dagster asks for it, never at import; a load sends Jira
nothing and reads `jira_connections` once, however many passes the loading command makes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from click.testing import CliRunner
from dagster._cli import cli as dagster_cli
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext

from jira_pipeline.assets.site_template import TEMPLATE_NAME
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.resources import MongoResource

MODULE = "jira_pipeline.definitions"


@pytest.fixture
def fresh_load_context() -> Iterator[None]:
    """Each command starts as a new process would: no load context left by another test."""
    with DefinitionsLoadContext.scoped(None):  # type: ignore[arg-type]
        yield


@pytest.fixture
def connection_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per read of `jira_connections` (`ConnectionRepository.list` is its only
    reader at load time); each entry counts the `find` calls that read made."""
    reads: list[int] = []
    original_list = ConnectionRepository.list

    def counted_list(self: ConnectionRepository) -> list:
        collection = self._collection
        finds = [0]
        original_find = collection.find

        def counted_find(*args: object, **kwargs: object) -> object:
            finds[0] += 1
            return original_find(*args, **kwargs)

        monkeypatch.setattr(collection, "find", counted_find)
        try:
            return original_list(self)
        finally:
            reads.append(finds[0])

    monkeypatch.setattr(ConnectionRepository, "list", counted_list)
    return reads


@pytest.fixture
def site_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each site whose definitions are built."""
    from jira_pipeline.assets import factory
    from jira_pipeline.assets.site_template import SiteTemplate

    built: list[str] = []
    original = factory.site_assets_and_checks
    original_copies = SiteTemplate.copies_for

    # The builders run here for the environment's site (with its own jobs) and, once, for the
    # template the registered sites' definitions are copied from (site_template.py).
    def counted(site, partitions, settings):
        built.append(site.name)
        return original(site, partitions, settings)

    def copied(self, site):
        built.append(site.name)
        return original_copies(self, site)

    monkeypatch.setattr(factory, "site_assets_and_checks", counted)
    monkeypatch.setattr(SiteTemplate, "copies_for", copied)
    return built


def test_importing_the_definitions_builds_nothing(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_env(None, days=3)
    # No site at all: building would fail naming JIRA_BASE_URL; importing must not build.
    for name in ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delitem(sys.modules, MODULE, raising=False)

    module = importlib.import_module(MODULE)

    assert callable(module.defs)
    assert "jira_pipeline.assets.factory" not in vars(module)


@pytest.mark.parametrize(
    "command",
    [["definitions", "validate", "-m", MODULE], ["asset", "list", "-m", MODULE]],
    ids=["definitions-validate", "asset-list"],
)
def test_a_load_reads_jira_connections_once_builds_each_site_once_and_sends_jira_nothing(
    fake_jira: FakeJiraHandle, site_env: Callable[..., date], connection_reads: list[int],
    site_builds: list[str], fresh_load_context: None, command: list[str],
) -> None:
    site_env(fake_jira, days=3)
    ConnectionRepository(MongoResource().get_database()).add(
        "acme", fake_jira.base_url, auth_type="api_token", email=fake_jira.config.email,
    )
    before = fake_jira.admin.stats()["requests"]

    result = CliRunner().invoke(dagster_cli, command, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    if command[0] == "asset":  # the registered connection's site is in the code location
        assert "acme/jira_issues" in result.output and "jira_issues" in result.output
    assert connection_reads == [1], "one read of jira_connections, one find()"
    # The command's later passes rebuild from the first one's record: each site is built once.
    assert sorted(site_builds) == ["acme", "default", TEMPLATE_NAME]
    assert fake_jira.admin.stats()["requests"] == before, "the load sent Jira a request"
