"""Validate response bodies against Atlassian's OpenAPI document for Jira Cloud REST v3.

The document is OpenAPI 3.0, whose schema dialect is not plain JSON Schema, so it is adapted
once per session before validation (see `_as_response_dialect`):
- `nullable: true` becomes "or null" (Draft 4 has no `nullable`; without this, documented nulls
  would fail and undocumented ones would pass unnoticed);
- `writeOnly` properties are dropped from `required` lists, because they are request-only;
- `readOnly` needs nothing: every readOnly property may appear in a response;
- `format` is asserted with checkers that accept what Jira actually sends (`date-time` is
  Jira's `2025-01-15T09:30:12.345+0100`, which RFC 3339 would reject; int32/int64 ranges;
  absolute `uri`; `uuid`).
`additionalProperties: false`, which most schemas declare, is kept: an invented field fails.
Schemas are never copied: each validation is a `$ref` into the loaded document, resolved with
`referencing`.

Most operations document their 4xx answers without a body schema; the ones that do document a
body all use `ErrorCollection`, so that is the schema for an undocumented 4xx body.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT4

from jira_pipeline.timeutil import parse_jira_datetime

SPEC_ENV_VAR = "JIRA_OPENAPI_SPEC"
# Vendored with the tests (source and version: data/README.md), so a plain clone can validate.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parent / "data" / "jira-platform-v3.json.xz"
_SPEC_URI = "urn:jira-platform-v3"
_ERROR_COLLECTION = "#/components/schemas/ErrorCollection"
_CLOUD_GATEWAY_PREFIX = re.compile(r"^/ex/jira/[^/]+(?=/rest/)")


def spec_path() -> Path:
    """Where the OpenAPI document is read from: $JIRA_OPENAPI_SPEC, else the vendored copy."""
    override = os.environ.get(SPEC_ENV_VAR)
    return Path(override) if override else DEFAULT_SPEC_PATH


def read_document(path: Path | None = None) -> dict[str, Any]:
    """The OpenAPI document as published (`.json`, or xz-compressed `.json.xz`), unadapted."""
    path = spec_path() if path is None else path
    if not path.is_file():
        raise FileNotFoundError(
            f"Jira OpenAPI document not found at {path}; set {SPEC_ENV_VAR} to its location"
        )
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rb") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


@lru_cache(maxsize=4)
def _load_document(path: Path) -> dict[str, Any]:
    adapted: dict[str, Any] = _as_response_dialect(read_document(path))
    return adapted


def load_spec() -> dict[str, Any]:
    """The OpenAPI document, adapted for response validation; loaded once per session."""
    return _load_document(spec_path())


def _as_response_dialect(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 schema keywords that Draft 4 would misread (see module docstring)."""
    if isinstance(node, list):
        return [_as_response_dialect(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _as_response_dialect(value) for key, value in node.items()}
    properties = converted.get("properties")
    required = converted.get("required")
    if isinstance(properties, dict) and isinstance(required, list):
        converted["required"] = [
            name
            for name in required
            if not (isinstance(properties.get(name), dict) and properties[name].get("writeOnly"))
        ]
        if not converted["required"]:
            del converted["required"]  # Draft 4 forbids an empty `required`
    if converted.get("nullable") is True:
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _is_int_in_bits(value: object, bits: int) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return True  # `format` constrains only values of its own type
    return -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def _jira_format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return _is_int_in_bits(value, 32)

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return _is_int_in_bits(value, 64)

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        # A time zone is mandatory: a timestamp without one is ambiguous to every client.
        return bool(_DATE_TIME.match(value)) and parse_jira_datetime(value) is not None

    @checker.checks("date", raises=ValueError)
    def _date(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(parse_jira_datetime(value))

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or bool(_URI_SCHEME.match(value))

    @checker.checks("uuid", raises=ValueError)
    def _uuid(value: object) -> bool:
        return not isinstance(value, str) or bool(uuid.UUID(value))

    return checker


@lru_cache(maxsize=4)
def _registry(path: Path) -> Registry:
    resource = DRAFT4.create_resource(_load_document(path))
    return Registry().with_resource(_SPEC_URI, resource)


def _pointer(*segments: str) -> str:
    return "#/" + "/".join(s.replace("~", "~0").replace("/", "~1") for s in segments)


def _find_path_template(paths: dict[str, Any], path: str) -> str:
    """Map a template or a concrete request path (also behind /ex/jira/{cloudId}) to a template."""
    path = _CLOUD_GATEWAY_PREFIX.sub("", path.split("?", 1)[0])
    if path in paths:
        return path
    for template in paths:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    raise KeyError(f"no operation for path {path!r} in the Jira OpenAPI document")


def response_schema_pointer(method: str, path_template: str, status: int) -> str:
    """JSON pointer (within the document) to the schema of this operation's `status` answer."""
    paths = load_spec()["paths"]
    template = _find_path_template(paths, path_template)
    operation = paths[template].get(method.lower())
    if operation is None:
        raise KeyError(f"{method.upper()} {template} is not in the Jira OpenAPI document")
    responses = operation.get("responses", {})
    for code in (str(status), "default"):
        schema = responses.get(code, {}).get("content", {}).get("application/json", {})
        if schema.get("schema"):  # an empty `{}` schema documents nothing
            return _pointer("paths", template, method.lower(), "responses", code, "content",
                            "application/json", "schema")
    if 400 <= status < 500:
        return _ERROR_COLLECTION
    raise KeyError(f"{method.upper()} {template} documents no JSON body for status {status}")


@lru_cache(maxsize=512)
def _validator(path: Path, pointer: str) -> Draft4Validator:
    return Draft4Validator(
        {"$ref": _SPEC_URI + pointer},
        registry=_registry(path),
        format_checker=_jira_format_checker(),
    )


def _errors(pointer: str, body: Any) -> Iterator[ValidationError]:
    return _validator(spec_path(), pointer).iter_errors(body)


def _describe(errors: list[ValidationError]) -> str:
    lines = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))[:10]:
        where = "/".join(map(str, error.absolute_path)) or "<body>"
        lines.append(f"  at {where}: {error.message[:300]}")
    more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
    return "\n".join(lines) + more


def response_errors(method: str, path_template: str, status: int, body: Any) -> list[str]:
    """How `body` breaks the documented schema: `at <json path>: <message>` lines (ten at most)."""
    errors = list(_errors(response_schema_pointer(method, path_template, status), body))
    return _describe(errors).splitlines() if errors else []


def assert_valid_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Fail with every schema violation when `body` is not what Jira documents for `status`."""
    pointer = response_schema_pointer(method, path_template, status)
    errors = list(_errors(pointer, body))
    if errors:
        raise AssertionError(
            f"{method.upper()} {path_template} {status} body breaks {pointer}:\n{_describe(errors)}"
        )


def assert_valid_schema(schema_name: str, body: Any) -> None:
    """Fail when `body` is not an instance of `components/schemas/<schema_name>`."""
    pointer = _pointer("components", "schemas", schema_name)
    errors = list(_errors(pointer, body))
    if errors:
        raise AssertionError(f"body breaks {pointer}:\n{_describe(errors)}")


# --- Cloud REST v2 ------------------------------------------------------------------------
# Atlassian publishes a v2 document too (swagger-v2.v3.json), but the project's tools could not
# obtain a copy, so v2 answers are checked against their v3 twins (same operations, same
# schemas) with one difference made strict: v2 sends rich text (description, environment,
# comment and worklog bodies, textarea custom fields) as plain strings, never as ADF documents.
# The v3 schemas leave those properties untyped, so that rule is checked here, on its own.

RICH_TEXT_FIELDS = ("description", "environment")


def v3_twin(v2_path: str) -> str:
    """The v3 path of a Cloud v2 path: `/rest/api/2/...` (also behind /ex/jira/{cloudId})."""
    twin = re.sub(r"/rest/api/2(?=/)", "/rest/api/3", v2_path, count=1)
    if twin == v2_path:
        raise ValueError(f"{v2_path!r} is not a /rest/api/2 path")
    return twin


def adf_locations(body: Any, where: str = "") -> list[str]:
    """JSON paths of every Atlassian Document Format document (`type: doc`) inside `body`."""
    found: list[str] = []
    if isinstance(body, dict):
        if body.get("type") == "doc" and "content" in body:
            return [where or "<body>"]
        for key, value in body.items():
            found.extend(adf_locations(value, f"{where}/{key}"))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found.extend(adf_locations(value, f"{where}/{index}"))
    return found


def _rich_text_values(body: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of each rich-text property v2 documents as a string."""
    if isinstance(body, list):
        for index, value in enumerate(body):
            yield from _rich_text_values(value, f"{where}/{index}")
        return
    if not isinstance(body, dict):
        return
    for key, value in body.items():
        path = f"{where}/{key}"
        if key == "fields" and isinstance(value, dict):
            for name in RICH_TEXT_FIELDS:
                if name in value:
                    yield f"{path}/{name}", value[name]
        if key == "comments" and isinstance(value, list):
            for index, comment in enumerate(value):
                if isinstance(comment, dict) and "body" in comment:
                    yield f"{path}/{index}/body", comment["body"]
        if key == "worklogs" and isinstance(value, list):
            for index, worklog in enumerate(value):
                if isinstance(worklog, dict) and "comment" in worklog:
                    yield f"{path}/{index}/comment", worklog["comment"]
        yield from _rich_text_values(value, path)


def assert_valid_v2_response(method: str, v2_path: str, status: int, body: Any) -> None:
    """Fail unless `body` is its v3 twin's documented body with every rich text a string."""
    assert_valid_response(method, v3_twin(v2_path), status, body)
    adf = adf_locations(body)
    assert not adf, f"{method.upper()} {v2_path}: v2 sends plain text, ADF found at {adf[:10]}"
    wrong = [(path, type(value).__name__) for path, value in _rich_text_values(body)
             if value is not None and not isinstance(value, str)]
    assert not wrong, f"{method.upper()} {v2_path}: rich text that is not a string: {wrong[:10]}"
