"""The OpenAPI 3.1 document, assembled from the pydantic models in app.rest.schemas.

Component schemas come from `models_json_schema` (validation mode for request
bodies, serialization mode for responses); each operation below names its
models, so the document cannot drift from what the handlers validate.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.models import SendRequest
from app.rest import schemas as s

REF = "#/components/schemas/{model}"
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}, {"adminSecret": []}]

UUID_PARAM = {"type": "string", "format": "uuid"}
NAME_PARAM = {"type": "string", "minLength": 1, "maxLength": 255}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False,
           description: str = "") -> dict[str, Any]:  # fmt: skip
    out = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if description:
        out["description"] = description
    return out


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        _param(name, "query", prop, name in required, prop.get("description", ""))
        for name, prop in schema.get("properties", {}).items()
    ]


# (method, path, operationId, summary, tag, body model, (status, response model), params, auth)
Operation = tuple[str, str, str, str, str, type[BaseModel] | None, tuple[int, Any],
                  list[dict[str, Any]], bool]  # fmt: skip

ID = [_param("id", "path", UUID_PARAM)]
NAME = [_param("name", "path", NAME_PARAM)]
USER = [_param("user_id", "path", UUID_PARAM)]


def _operations() -> list[Operation]:
    from app.rest.campaigns import CampaignIn, SequenceIn
    from app.rest.routes import _TemplateQuery

    return [
        ("post", "/api/notifications/send", "sendNotification", "Send a notification",
         "notifications", SendRequest, (200, s.SendResponse), [], True),
        ("post", "/api/notifications/send-batch", "sendNotificationBatch",
         "Send one template to many recipients (per-item results)", "notifications",
         s.BatchSendRequest, (200, s.BatchSendResponse), [], True),
        ("get", "/api/notifications", "listNotifications", "List notifications (paginated)",
         "notifications", None, (200, s.NotificationList), _query_params(s.ListQuery), True),
        ("get", "/api/notifications/{id}", "getNotification", "Get notification status",
         "notifications", None, (200, s.NotificationOut), ID, True),
        ("post", "/api/notifications/{id}/cancel", "cancelNotification",
         "Cancel a notification that has not been sent", "notifications", None,
         (200, s.SendResponse), ID, True),
        ("get", "/api/notifications/{id}/events", "listNotificationEvents",
         "Provider events of a notification", "notifications", None, (200, s.EventList), ID,
         True),
        ("get", "/api/templates", "listTemplates", "List all templates", "templates", None,
         (200, s.TemplateList), _query_params(_TemplateQuery), True),
        ("post", "/api/templates", "createTemplate", "Create a template (admin/service)",
         "templates", s.TemplateCreate, (201, s.TemplateOut), [], True),
        ("get", "/api/templates/{name}", "getTemplate", "Get template by name", "templates",
         None, (200, s.TemplateOut), NAME, True),
        ("put", "/api/templates/{name}", "updateTemplate", "Update a template (admin/service)",
         "templates", s.TemplateUpdate, (200, s.TemplateOut), NAME, True),
        ("delete", "/api/templates/{name}", "deleteTemplate", "Delete a template (admin/service)",
         "templates", None, (204, None), NAME, True),
        ("post", "/api/preferences", "setPreference", "Update user preferences", "preferences",
         s.PreferenceIn, (200, s.PreferenceOut), [], True),
        ("get", "/api/preferences/{user_id}", "getPreferences", "Get user preferences",
         "preferences", None, (200, s.PreferenceList), USER, True),
        ("get", "/api/stats/delivery", "deliveryStats", "Delivery statistics", "stats", None,
         (200, s.StatsResponse), _query_params(s.StatsQuery), True),
        ("get", "/api/stats/engagement", "engagementStats", "Engagement metrics", "stats", None,
         (200, s.StatsResponse), _query_params(s.StatsQuery), True),
        ("get", "/api/stats/providers", "providerStats", "Provider health", "stats", None,
         (200, s.StatsResponse), [], True),
        ("get", "/api/stats/queue", "queueStats", "Queue backlog", "stats", None,
         (200, s.QueueStats), [], True),
        ("get", "/api/stats/hourly", "hourlyStats", "Hourly volume", "stats", None,
         (200, s.StatsResponse), _query_params(s.HourlyQuery), True),
        ("get", "/api/stats/users/{user_id}", "userStats", "One user's summary", "stats", None,
         (200, {"type": "object"}), USER, True),
        ("post", "/api/campaigns", "createCampaign",
         "Accept a campaign (recipients staged, then expanded by the workers)", "campaigns",
         CampaignIn, (202, {"type": "object"}), [], True),
        ("get", "/api/campaigns", "listCampaigns", "Recent campaigns", "campaigns", None,
         (200, {"type": "object"}), [], True),
        ("get", "/api/campaigns/{id}", "getCampaign", "Campaign progress and statistics",
         "campaigns", None, (200, {"type": "object"}), ID, True),
        ("post", "/api/campaigns/{id}/cancel", "cancelCampaign", "Cancel a running campaign",
         "campaigns", None, (200, {"type": "object"}), ID, True),
        ("post", "/api/sequences", "startSequence", "Start a drip sequence", "campaigns",
         SequenceIn, (201, {"type": "object"}), [], True),
        ("get", "/api/sequences/{id}", "getSequence", "A drip sequence and its steps",
         "campaigns", None, (200, {"type": "object"}), ID, True),
        ("post", "/api/sequences/{id}/cancel", "cancelSequence",
         "Cancel the remaining steps of a sequence", "campaigns", None,
         (200, {"type": "object"}), ID, True),
    ]  # fmt: skip


ERRORS = {
    "400": "Malformed JSON",
    "401": "Missing or invalid credentials",
    "403": "Not allowed for this caller",
    "404": "Not found",
    "409": "Conflict",
    "413": "Body too large",
    "422": "Invalid input",
    "429": "Rate limited (see Retry-After)",
}


def _schemas(ops: list[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(s.Problem, "serialization")]
    for op in ops:
        if op[5] is not None:
            models.append((op[5], "validation"))
        response = op[6][1]
        if isinstance(response, type) and issubclass(response, BaseModel):
            models.append((response, "serialization"))
    seen: set[tuple[type[BaseModel], Any]] = set()
    unique = [m for m in models if not (m in seen or seen.add(m))]  # type: ignore[func-returns-value]
    _, top = models_json_schema(unique, ref_template=REF)
    return dict(top.get("$defs", {}))


def _content(model: Any) -> dict[str, Any]:
    schema = model if isinstance(model, dict) else {"$ref": REF.format(model=model.__name__)}
    return {"application/json": {"schema": schema}}


@cache
def document() -> dict[str, Any]:
    ops = _operations()
    paths: dict[str, dict[str, Any]] = {}
    problem = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
    for method, path, op_id, summary, tag, body, (status, response), params, auth in ops:
        operation: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "tags": [tag],
            "responses": {
                str(status): {"description": "OK"}
                if response is None
                else {"description": "OK", "content": _content(response)},
                **{
                    code: {"description": text, "content": problem} for code, text in ERRORS.items()
                },
            },
        }
        if params:
            operation["parameters"] = params
        if body is not None:
            operation["requestBody"] = {"required": True, "content": _content(body)}
        if auth:
            operation["security"] = SECURITY
        paths.setdefault(path, {})[method] = operation
    paths["/health"] = {"get": {"operationId": "health", "summary": "Health check",
                                "tags": ["infrastructure"], "security": [],
                                "responses": {"200": {"description": "healthy"},
                                              "503": {"description": "unhealthy"}}}}  # fmt: skip
    paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "tags": ["infrastructure"],
                                 "responses": {"200": {"description": "text exposition",
                                               "content": {"text/plain": {"schema":
                                                           {"type": "string"}}}}}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hasura notifications service",
            "version": "1.0.0",
            "description": "REST API of the notification service. Errors are RFC 9457 "
            "application/problem+json with a stable `code`.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": t}
            for t in (
                "notifications",
                "templates",
                "preferences",
                "stats",
                "campaigns",
                "infrastructure",
            )
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(ops),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API key or Hasura-style JWT",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "adminSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Notifications-Admin-Secret",
                },
            },
        },
    }
