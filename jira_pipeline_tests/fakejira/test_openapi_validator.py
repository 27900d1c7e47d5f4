"""The OpenAPI response validator catches what matters, so a passing schema test means something.

Valid bodies are Atlassian's own documented examples, read from the document; broken bodies
are those examples with one deliberate defect each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from jira_pipeline_tests.openapi import (
    SPEC_ENV_VAR,
    assert_valid_response,
    assert_valid_schema,
    load_spec,
    read_document,
    response_schema_pointer,
    spec_path,
)


def documented_example(method: str, path: str, status: int = 200) -> Any:
    content = load_spec()["paths"][path][method]["responses"][str(status)]["content"]
    example = content["application/json"]["example"]
    return json.loads(example) if isinstance(example, str) else example


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/rest/api/3/project/search"),
        ("get", "/rest/api/3/statuses/search"),
        ("get", "/rest/api/3/status"),
        ("get", "/rest/api/3/users/search"),
        ("get", "/rest/api/3/search/jql"),
        ("post", "/rest/api/3/search/jql"),
        ("post", "/rest/api/3/search/approximate-count"),
        ("get", "/rest/api/3/field"),
        ("get", "/rest/api/3/myself"),
    ],
)
def test_documented_example_is_valid(method: str, path: str) -> None:
    assert_valid_response(method, path, 200, documented_example(method, path))


def statuses_page() -> dict[str, Any]:
    return copy.deepcopy(documented_example("get", "/rest/api/3/statuses/search"))


def test_missing_required_field_fails() -> None:
    body = statuses_page()
    del body["values"][0]["scope"]["type"]
    with pytest.raises(AssertionError, match=r"values/0/scope: 'type' is a required property"):
        assert_valid_response("GET", "/rest/api/3/statuses/search", 200, body)


def test_wrong_type_fails() -> None:
    body = statuses_page()
    body["values"][0]["id"] = 1000  # Jira ids are strings
    with pytest.raises(AssertionError, match=r"values/0/id: 1000 is not of type 'string'"):
        assert_valid_response("GET", "/rest/api/3/statuses/search", 200, body)


def test_invented_field_fails_where_additional_properties_are_closed() -> None:
    body = statuses_page()
    body["nextPageToken"] = "abc"
    with pytest.raises(AssertionError, match="'nextPageToken' was unexpected"):
        assert_valid_response("GET", "/rest/api/3/statuses/search", 200, body)


def test_value_outside_enum_fails() -> None:
    body = statuses_page()
    body["values"][0]["statusCategory"] = "Done"
    with pytest.raises(AssertionError, match="values/0/statusCategory"):
        assert_valid_response("GET", "/rest/api/3/statuses/search", 200, body)


def test_null_fails_where_not_nullable() -> None:
    body = copy.deepcopy(documented_example("get", "/rest/api/3/search/jql"))
    body["nextPageToken"] = None  # Jira omits the token on the last page; it never sends null
    with pytest.raises(AssertionError, match="nextPageToken: None is not of type 'string'"):
        assert_valid_response("GET", "/rest/api/3/search/jql", 200, body)


def test_null_passes_where_nullable() -> None:
    assert_valid_schema("GroupName", {"name": "jira-users", "groupId": None})
    with pytest.raises(AssertionError, match="name: None"):
        assert_valid_schema("GroupName", {"name": None, "groupId": None})


def test_int64_overflow_fails() -> None:
    body = statuses_page()
    body["total"] = 2**63
    with pytest.raises(AssertionError, match="is not a 'int64'"):
        assert_valid_response("GET", "/rest/api/3/statuses/search", 200, body)


@pytest.mark.parametrize(
    ("server_time", "valid"),
    [
        ("2020-03-31T16:43:50.000+0000", True),
        ("2020-03-31T16:43:50.000+05:30", True),
        ("2020-03-31T16:43:50Z", True),
        ("2020-03-31T16:43:50.000", False),  # no zone: ambiguous
        ("2020-03-31 16:43", False),
        ("2020-13-31T16:43:50.000+0000", False),
    ],
)
def test_date_time_format_accepts_jira_timestamps_only(server_time: str, valid: bool) -> None:
    body = copy.deepcopy(documented_example("get", "/rest/api/3/serverInfo"))
    # The documented example carries `defaultLocale`, which the schema does not list.
    body.pop("defaultLocale", None)
    body["serverTime"] = server_time
    if valid:
        assert_valid_response("GET", "/rest/api/3/serverInfo", 200, body)
    else:
        with pytest.raises(AssertionError, match="serverTime"):
            assert_valid_response("GET", "/rest/api/3/serverInfo", 200, body)


def test_relative_uri_fails_where_uri_format_is_declared() -> None:
    body = copy.deepcopy(documented_example("get", "/rest/api/3/myself"))
    body["self"] = "/rest/api/3/user?accountId=1"
    with pytest.raises(AssertionError, match=r"self: .* is not a 'uri'"):
        assert_valid_response("GET", "/rest/api/3/myself", 200, body)


def test_undocumented_4xx_body_is_checked_as_error_collection() -> None:
    assert response_schema_pointer("GET", "/rest/api/3/myself", 401).endswith("/ErrorCollection")
    assert_valid_response("GET", "/rest/api/3/myself", 401, {"errorMessages": ["x"], "errors": {}})
    with pytest.raises(AssertionError, match="errorMessages: 'x' is not of type 'array'"):
        assert_valid_response("GET", "/rest/api/3/myself", 401, {"errorMessages": "x"})


def test_concrete_and_gateway_paths_find_their_template() -> None:
    assert response_schema_pointer(
        "GET", "/ex/jira/1a2b/rest/api/3/search/jql?jql=x", 200
    ) == response_schema_pointer("GET", "/rest/api/3/search/jql", 200)
    assert "{issueIdOrKey}" in response_schema_pointer("GET", "/rest/api/3/issue/ABC-1", 200)


def test_undocumented_operation_is_refused() -> None:
    with pytest.raises(KeyError, match="no operation"):
        response_schema_pointer("GET", "/rest/api/3/no-such-thing", 200)


def test_the_vendored_document_is_read_from_inside_the_repository(monkeypatch):
    monkeypatch.delenv(SPEC_ENV_VAR, raising=False)
    tests_folder = Path(__file__).resolve().parents[1]
    assert spec_path() == tests_folder / "data" / "jira-platform-v3.json.xz"
    document = read_document()
    assert document["openapi"].startswith("3.0")
    assert document["info"]["title"] == "The Jira Cloud platform REST API"
    # The data README names the version it vendors; a refreshed document must update it.
    readme = (tests_folder / "data" / "README.md").read_text()
    assert document["info"]["version"] in readme


def test_the_spec_override_reads_a_plain_json_copy(monkeypatch, tmp_path):
    copy_path = tmp_path / "spec.json"
    copy_path.write_text(json.dumps({"openapi": "3.0.1", "info": {"version": "override"}}))
    monkeypatch.setenv(SPEC_ENV_VAR, str(copy_path))
    assert spec_path() == copy_path
    assert read_document()["info"]["version"] == "override"


def test_a_missing_override_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(SPEC_ENV_VAR, str(tmp_path / "absent.json"))
    with pytest.raises(FileNotFoundError, match=SPEC_ENV_VAR):
        read_document()
