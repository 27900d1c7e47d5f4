"""Custom fields moved to Jira's trash and restored: `/field` stops and resumes listing them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jira_pipeline.fakejira.dataset import FIELDS

if TYPE_CHECKING:
    from jira_pipeline.fakejira.site import FakeJiraSite

_JSON = "application/json;charset=UTF-8"


def field_trash_routes(site: FakeJiraSite) -> list[Route]:
    """`DELETE /_fake/fields/{id}` trashes a custom field, `POST .../restore` brings it back."""

    async def trash(request: Request) -> Response:
        field_id = request.path_params["id"]
        if not any(f.id == field_id and f.custom for f in FIELDS):
            body = {"errorMessages": [f"No custom field {field_id}"], "errors": {}}
            return Response(orjson.dumps(body), status_code=404, media_type=_JSON)
        if request.method == "DELETE":
            site.data.trashed_fields.add(field_id)
        else:
            site.data.trashed_fields.discard(field_id)
        site.data.version += 1
        return Response(orjson.dumps({"trashed": sorted(site.data.trashed_fields)}),
                        media_type=_JSON)

    return [
        Route("/_fake/fields/{id}", trash, methods=["DELETE"]),
        Route("/_fake/fields/{id}/restore", trash, methods=["POST"]),
    ]
