"""What an empty run costs beyond Dagster's own, checked without timing anything: the garbage
collector kept off what a process holds once loaded and at exit, what a load imports, and the
requests an empty partition sends (`benchmarks/sync_bench.py --phases overhead` prints the
seconds)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import date

import pytest

from jira_pipeline import heap
from jira_pipeline.definitions import PROJECT_PATH, load_project
from jira_pipeline_tests.assets.conftest import Pipeline, materializations
from jira_pipeline_tests.conftest import python_output


def test_importing_the_package_freezes_the_heap_before_the_interpreter_tears_it_down() -> None:
    # An exit handler registered before the import runs after ours (atexit is last in, first
    # out): by then every object alive is in the generation the teardown's collections skip.
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "import jira_pipeline\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    lines = python_output(code).split("\n")[:2]
    assert lines == ["frozen before exit: False", "frozen at exit: True"]


def test_loading_the_code_location_imports_neither_pandas_nor_cryptography(
    site_env: Callable[..., date],
) -> None:
    # pandas (and numpy) only for a DataFrame input, cryptography only for stored OAuth
    # tokens: an API-token site's load (each run worker's, each CLI command's) needs neither.
    site_env(None, days=3)
    code = (
        "import sys\n"
        "from jira_pipeline.definitions import PROJECT_PATH, load_project\n"
        "load_project(PROJECT_PATH)\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'cryptography') if m in sys.modules))\n"
    )
    assert python_output(code).strip() == "[]"


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
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    site_env(None, days=3)
    catalog = "plugin_component_types_json"
    # No state storage: an earlier test of this worker may have left the current one bound to
    # an instance since collected (a load context reads it at construction).
    with set_defs_state_storage(None):
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


def test_an_empty_partition_run_sends_three_requests_and_no_count(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3)
    first = pipeline.start_date.isoformat()  # a day before the fake's oldest issue
    before = pipeline.fake.admin.stats()["requests"]

    result = pipeline.run("jira_issues_job", first, lookback_minutes=0)

    assert result.success
    meta = materializations(result, "jira_issues")[0]
    assert meta["records_fetched"] == 0 and meta["api_calls"] == 1
    sent = {
        endpoint: sum(by_status.values()) - sum(before.get(endpoint, {}).values())
        for endpoint, by_status in pipeline.fake.admin.stats()["requests"].items()
    }
    # The window's one page (no count: it says it is the last), the count check's fields=id
    # page, and the `fresh` check's newest issue. (The job's jira_worklogs reads the site-wide
    # worklog feeds, whatever the partition: its own requests, counted in its tests.)
    assert {endpoint: n for endpoint, n in sent.items() if n and "/worklog/" not in endpoint} == {
        "POST /rest/api/3/search/jql": 3
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["matches_jira_count"] and checks["no_duplicate_keys"]
