"""What an empty run costs beyond Dagster's own, checked without timing anything: the garbage
collector kept off what a process holds once loaded and at exit, what a load imports, and the
requests an empty partition sends (`benchmarks/sync_bench.py --phases overhead` prints the
seconds)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from datetime import date

import pytest

from jira_pipeline import heap
from jira_pipeline.definitions import PROJECT_PATH, load_project


def test_importing_the_package_freezes_the_heap_before_the_interpreter_tears_it_down() -> None:
    # An exit handler registered before the import runs after ours (atexit is last in, first
    # out): by then every object alive is in the generation the teardown's collections skip.
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "import jira_pipeline\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["frozen before exit: False", "frozen at exit: True"]


def test_the_first_load_of_a_process_freezes_what_it_built_and_later_loads_do_not(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_env(None, days=3)
    freezes: list[int] = []
    monkeypatch.setattr(heap, "_frozen_after_load", False)
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(len(gc.get_objects())))

    defs = load_project(PROJECT_PATH)
    monkeypatch.setenv("JIRA_PROJECTS", "CORE")  # another environment: built anew
    again = load_project(PROJECT_PATH)

    assert again is not defs
    assert len(freezes) == 1, "a later build may leave the previous one as garbage: no freeze"


def test_only_a_code_servers_first_load_builds_the_component_type_catalog(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The catalog (each installed component type's JSON schema) is what the webserver's GraphQL
    # reads from the code server; a CLI command or a run worker (RECONSTRUCTION) never shows it.
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )

    site_env(None, days=3)
    catalog = "plugin_component_types_json"
    monkeypatch.setattr("jira_pipeline.definitions._last_build", None)
    with DefinitionsLoadContext.scoped(None):  # type: ignore[arg-type]
        command = load_project(PROJECT_PATH)
    monkeypatch.setattr("jira_pipeline.definitions._last_build", None)
    with DefinitionsLoadContext.scoped(
        DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)
    ):
        served = load_project(PROJECT_PATH)

    assert catalog not in (command.metadata or {})
    assert catalog in (served.metadata or {})
    assert "JiraSite" in str(served.metadata[catalog].value)
    # Both carry the same assets, checks and jobs.
    assert {k.to_user_string() for k in command.resolve_all_asset_keys()} == {
        k.to_user_string() for k in served.resolve_all_asset_keys()
    }
    assert command.resolve_all_job_defs() and len(command.resolve_all_job_defs()) == len(
        served.resolve_all_job_defs()
    )
