"""The repository is a dg project: `dg check defs` and `dagster definitions validate` load its
one code location (`jira_pipeline`) against a fake Jira, a malformed setting fails both naming
the variable, and `dg list components` offers the JiraSite component."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import yaml

from jira_pipeline.demo_dev import DEFINITIONS_MODULE, LOCATION_NAME
from jira_pipeline.fakejira import FakeJiraHandle

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMMANDS = {
    # --log-level info: dg names the code location it validated only at INFO
    "dg check defs": [str(BIN / "dg"), "check", "defs", "--log-level", "info"],
    "dagster definitions validate": [str(BIN / "dagster"), "definitions", "validate", "-w",
                                     "workspace.yaml"],
}


def run_in_project(command: list[str]) -> subprocess.CompletedProcess[str]:
    """`command` in the repository, as a user with this virtualenv activated runs it."""
    env = {**os.environ, "VIRTUAL_ENV": str(BIN.parent),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONHOME", None)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240, check=False)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_loads_the_code_location_against_a_fake_jira(
    fake_jira: FakeJiraHandle, site_env: Callable[..., date], name: str
) -> None:
    site_env(fake_jira, days=3)
    before = fake_jira.admin.stats()["requests"]

    done = run_in_project(COMMANDS[name])

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Validation successful for code location jira_pipeline." in output, output[-3000:]
    assert fake_jira.admin.stats()["requests"] == before, "loading sent Jira a request"


@pytest.mark.parametrize("name", COMMANDS)
def test_a_malformed_jira_base_url_fails_each_command_naming_it(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    site_env(None, days=3)
    monkeypatch.setenv("JIRA_BASE_URL", "acme.atlassian.net")  # no scheme

    done = run_in_project(COMMANDS[name])

    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Validation failed for code location jira_pipeline" in output, output[-3000:]
    assert ("JIRA_BASE_URL must be an http(s) URL such as https://acme.atlassian.net, "
            "got 'acme.atlassian.net'") in output, output[-3000:]


def test_dg_lists_the_jira_site_component() -> None:
    done = run_in_project([str(BIN / "dg"), "list", "components", "--json"])

    assert done.returncode == 0, done.stderr[-3000:]
    assert '"jira_pipeline.JiraSite"' in done.stdout


def test_dg_and_workspace_yaml_name_one_code_location_and_module() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    [from_workspace] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert project["directory_type"] == "project"
    assert project["project"]["code_location_name"] == LOCATION_NAME == "jira_pipeline"
    assert project["project"]["defs_module"] == "jira_pipeline.defs"
    # dg loads `<root_module>.definitions`, the module workspace.yaml names
    assert f"{project['project']['root_module']}.definitions" == DEFINITIONS_MODULE
    assert from_workspace["python_module"] == {
        "module_name": DEFINITIONS_MODULE, "location_name": LOCATION_NAME,
    }
