"""A Jira site declared in a `defs.yaml` (`type: jira_pipeline.JiraSite`) loads beside the
environment's site and the registered connections, syncs its own projects, and keeps its
credentials as `{{ env.VAR }}` references."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from jira_pipeline.component import JiraSite
from jira_pipeline.definitions import load_project
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.resources import MongoResource

ACME_SITE = """\
type: jira_pipeline.JiraSite
attributes:
  name: {name}
  base_url: "{{{{ env.ACME_JIRA_URL }}}}"
  email: "{{{{ env.ACME_JIRA_EMAIL }}}}"
  api_token: {token}
  projects: [CORE, OPS]
"""
ENV_TOKEN = '"{{ env.ACME_JIRA_TOKEN }}"'


def write_project(root: Path, sites: dict[str, str]) -> Path:
    """A dg project `acme_sites` under `root` whose definitions are jira_pipeline's, with one
    defs.yaml per entry of `sites` (folder name -> YAML); returns its package folder."""
    package = root / "acme_sites"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "acme-sites"
        version = "0.0.1"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "acme_sites"
        code_location_name = "acme_sites"
        """))
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        import dagster as dg

        from jira_pipeline.definitions import load_project


        @dg.definitions
        def defs() -> dg.Definitions:
            return load_project(Path(__file__).parent)
        """))
    for folder, yaml in sites.items():
        (package / "defs" / folder).mkdir()
        (package / "defs" / folder / "defs.yaml").write_text(yaml)
    return package


@pytest.fixture
def acme_env(
    fake_jira: FakeJiraHandle, site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[FakeJiraHandle]:
    """Only the component's variables name a site; the project is importable."""
    site_env(fake_jira, days=3)
    for name in ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("ACME_JIRA_URL", fake_jira.base_url)
    monkeypatch.setenv("ACME_JIRA_EMAIL", fake_jira.config.email)
    monkeypatch.setenv("ACME_JIRA_TOKEN", fake_jira.config.api_token)
    monkeypatch.syspath_prepend(str(tmp_path / "project"))
    yield fake_jira
    # Each test writes its own `acme_sites`: forget the one this test imported.
    for module in [m for m in sys.modules if m == "acme_sites" or m.startswith("acme_sites.")]:
        del sys.modules[module]


def test_a_site_declared_in_defs_yaml_materializes_its_projects(
    acme_env: FakeJiraHandle, tmp_path: Path
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})

    defs = load_project(package)

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {f"acme/{name}" for name in (
        "jira_projects", "jira_statuses", "jira_users", "jira_issues", "jira_issue_daily_summary",
        "jira_fields", "jira_issue_comments", "jira_issue_changelogs", "jira_worklogs",
        "jira_issue_field_history", "jira_issue_status_transitions", "jira_time_in_status_daily",
        "jira_issue_types", "jira_priorities", "jira_resolutions", "jira_status_categories",
        "jira_boards", "jira_sprints",
        "jira_project_versions", "jira_project_components", "jira_issue_links",
        "jira_sprint_issues", "jira_sprint_report",
    )}  # fmt: skip
    assert graph.get(dg.AssetKey(["acme", "jira_projects"])).group_name == "jira_acme"
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(["acme", "jira_projects"])],
    )
    assert result.success
    projects = MongoResource().get_database()["jira_projects"]
    documents = list(projects.find({}, {"key": 1, "connection_id": 1}))
    assert sorted(d["key"] for d in documents) == ["CORE", "OPS"]  # the declared projects only
    site = JiraSite(name="acme", base_url='{{ env.ACME_JIRA_URL }}')
    assert {d["connection_id"] for d in documents} == {site.connection_id()}


DC_SITE = """\
type: jira_pipeline.JiraSite
attributes:
  name: dc
  base_url: "{{ env.DC_JIRA_URL }}"
  pat: "{{ env.DC_JIRA_PAT }}"
"""


def test_a_data_center_site_with_a_pat_materializes_its_projects(
    acme_env: FakeJiraHandle, fake_jira_factory: Callable[..., FakeJiraHandle], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dc = fake_jira_factory(mode="datacenter", issues=10, projects=2)
    monkeypatch.setenv("DC_JIRA_URL", dc.base_url)
    monkeypatch.setenv("DC_JIRA_PAT", dc.config.pat)
    package = write_project(tmp_path / "project", {"dc": DC_SITE})

    defs = load_project(package)

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(["dc", "jira_projects"])],
    )
    assert result.success
    projects = MongoResource().get_database()["jira_projects"]
    assert projects.count_documents({}) == 2
    assert dc.admin.stats()["requests"], "the site's requests went to the Data Center fake"


def test_the_api_token_stays_a_reference_in_the_component_and_what_the_ui_is_shown(
    acme_env: FakeJiraHandle, tmp_path: Path
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})

    defs = load_project(package)

    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "ACME_JIRA_TOKEN" in snapshot  # the resource points at the variable...
    assert acme_env.config.api_token not in snapshot  # ...never at its value
    [component] = dg.ComponentTree.for_project(package).get_all_components(JiraSite)
    assert component.api_token == "{{ env.ACME_JIRA_TOKEN }}"


def test_a_missing_variable_fails_the_load_naming_it(
    acme_env: FakeJiraHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})
    monkeypatch.delenv("ACME_JIRA_TOKEN")

    with pytest.raises(ConfigurationError) as raised:
        load_project(package)

    assert raised.value.variable == "ACME_JIRA_TOKEN"
    assert "ACME_JIRA_TOKEN is not set" in str(raised.value)
    assert "acme_sites/defs/acme/defs.yaml" in str(raised.value)


def test_a_token_written_in_defs_yaml_is_refused(
    acme_env: FakeJiraHandle, tmp_path: Path
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token="plain-token-123")})

    with pytest.raises(ConfigurationError, match="api_token must be written as an environment "
                       "variable reference") as raised:
        load_project(package)
    assert "plain-token-123" not in str(raised.value)


def test_a_malformed_url_fails_naming_its_variable(
    acme_env: FakeJiraHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})
    monkeypatch.setenv("ACME_JIRA_URL", "acme.atlassian.net")

    with pytest.raises(ConfigurationError) as raised:
        load_project(package)

    assert raised.value.variable == "ACME_JIRA_URL"
    assert "must be an http(s) URL" in str(raised.value)


def test_two_sites_with_one_name_fail_naming_both(
    acme_env: FakeJiraHandle, tmp_path: Path
) -> None:
    package = write_project(tmp_path / "project", {
        "acme": ACME_SITE.format(name="acme", token=ENV_TOKEN),
        "acme_again": ACME_SITE.format(name="acme", token=ENV_TOKEN),
    })

    with pytest.raises(ConfigurationError, match="'acme' is given to two Jira sites") as raised:
        load_project(package)

    message = str(raised.value)
    assert "acme_sites/defs/acme/defs.yaml" in message
    assert "acme_sites/defs/acme_again/defs.yaml" in message


def test_a_declared_site_may_not_take_a_registered_connections_name(
    acme_env: FakeJiraHandle, tmp_path: Path
) -> None:
    package = write_project(tmp_path / "project",
                            {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})
    ConnectionRepository(MongoResource().get_database()).add(
        "acme", acme_env.base_url, auth_type="api_token", email=acme_env.config.email,
    )

    with pytest.raises(ConfigurationError, match="'acme' is given to two Jira sites") as raised:
        load_project(package)

    message = str(raised.value)
    assert "a connection registered in jira_connections" in message
    assert "acme_sites/defs/acme/defs.yaml" in message


def test_dg_check_defs_loads_a_project_declaring_a_site_and_names_a_missing_variable(
    acme_env: FakeJiraHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    write_project(root, {"acme": ACME_SITE.format(name="acme", token=ENV_TOKEN)})
    bin_dir = Path(sys.executable).parent
    monkeypatch.setenv("VIRTUAL_ENV", str(bin_dir.parent))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", str(root))  # the project is not installed
    command = [str(bin_dir / "dg"), "check", "defs", "--log-level", "info"]

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240,
                              check=False)

    loaded = check()
    assert loaded.returncode == 0, (loaded.stdout + loaded.stderr)[-3000:]
    assert "Validation successful for code location acme_sites." in loaded.stdout + loaded.stderr

    monkeypatch.delenv("ACME_JIRA_TOKEN")
    failed = check()
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    missing = "ACME_JIRA_TOKEN is not set, but `api_token` of the Jira site in"
    assert missing in output, output[-3000:]


def test_import_jira_pipeline_stays_cheap_and_names_the_component() -> None:
    probe = ("import sys, jira_pipeline; cheap = 'dagster' not in sys.modules; "
             "from jira_pipeline.component import JiraSite; "
             "print(cheap, jira_pipeline.JiraSite is JiraSite, 'JiraSite' in dir(jira_pipeline))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["True", "True", "True"]
