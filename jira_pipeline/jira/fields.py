"""`FieldRecord`: one entry of Jira's field catalog (`GET /field`), system or custom."""

from __future__ import annotations

from typing import Any, Self

from jira_pipeline.jira.models import JiraRecord, RecordRejected


class FieldRecord(JiraRecord):
    field_id: str
    key: str | None
    name: str | None
    custom: bool | None
    schema_type: str | None  # "string", "array", "option", ...
    schema_items: str | None  # what an array holds
    schema_custom: str | None  # a custom field's type, e.g. com.pyxis.greenhopper.jira:gh-sprint
    clause_names: list[str]

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        field_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(field_id, str) or not field_id:
            raise RecordRejected(
                "field without a usable `id`: cannot store it",
                raw=raw, connection_id=connection_id, jira_id=None, key=None,
            )
        sent = raw.get("schema")
        schema: dict[str, Any] = sent if isinstance(sent, dict) else {}
        clauses = raw.get("clauseNames")
        return cls(
            connection_id=connection_id,
            raw=raw,
            field_id=field_id,
            key=_text(raw.get("key")),
            name=_text(raw.get("name")),
            custom=raw["custom"] if isinstance(raw.get("custom"), bool) else None,
            schema_type=_text(schema.get("type")),
            schema_items=_text(schema.get("items")),
            schema_custom=_text(schema.get("custom")),
            clause_names=[str(c) for c in clauses] if isinstance(clauses, list) else [],
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
