"""Mutation resolvers: map inputs to the domain models, call the services, shape the result."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import strawberry

from app import models
from app.errors import InvalidInput, NotificationError
from app.graphql.context import Info
from app.graphql.types import (
    DeleteTemplatePayload,
    Preference,
    PreferenceInput,
    SendNotificationInput,
    SendNotificationPayload,
    SendNotificationResult,
    SendNotificationsInput,
    SendNotificationsPayload,
    Template,
    TemplateInput,
    TemplatePatch,
)
from app.services import notifications, preferences, templates

MAX_RECIPIENTS = 10_000


def _result(index: int, outcome: Any) -> SendNotificationResult:
    return SendNotificationResult(
        index=index, success=outcome.success, notification_id=outcome.notification_id,
        status=outcome.status, message=outcome.message,
        error_code=outcome.error.code if outcome.error is not None else None,
    )  # fmt: skip


def _rejected(index: int, error: NotificationError) -> SendNotificationResult:
    return SendNotificationResult(
        index=index, success=False, notification_id=None, status="rejected",
        message=error.message, error_code=error.code,
    )  # fmt: skip


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Send one notification (a user may only send to itself)")
    async def send_notification(
        self, info: Info, input: SendNotificationInput
    ) -> SendNotificationPayload:
        request = input.to_request()
        outcome = await notifications.send(info.context.rt, request, info.context.caller)
        return SendNotificationPayload.from_outcome(outcome)

    @strawberry.mutation(description="One template, many recipients; each gets its own result")
    async def send_notifications(
        self, info: Info, input: SendNotificationsInput
    ) -> SendNotificationsPayload:
        if not 1 <= len(input.recipients) <= MAX_RECIPIENTS:
            raise InvalidInput(
                f"recipients: give 1 to {MAX_RECIPIENTS}", details={"field": "input.recipients"}
            )
        shared = input.shared()
        results: list[SendNotificationResult | None] = [None] * len(input.recipients)
        valid: list[tuple[int, Any]] = []
        for index in range(len(input.recipients)):
            try:
                valid.append((index, input.to_request(shared, index)))
            except NotificationError as exc:
                results[index] = _rejected(index, exc)
        if valid:
            outcomes = await notifications.send_many(
                info.context.rt, [r for _, r in valid], info.context.caller
            )
            for (index, _), outcome in zip(valid, outcomes, strict=True):
                results[index] = _result(index, outcome)
        done = [r for r in results if r is not None]
        accepted = sum(1 for r in done if r.success)
        return SendNotificationsPayload(
            total=len(done), accepted=accepted, rejected=len(done) - accepted, results=done
        )

    @strawberry.mutation(description="Cancel a notification that was not sent yet")
    async def cancel_notification(self, info: Info, id: UUID) -> SendNotificationPayload:
        outcome = await notifications.cancel(info.context.rt, info.context.caller, id)
        return SendNotificationPayload.from_outcome(outcome)

    @strawberry.mutation(description="Create or change one (user, channel, category) preference")
    async def upsert_preference(self, info: Info, input: PreferenceInput) -> Preference:
        row = await preferences.upsert(
            info.context.rt.db, info.context.caller, input.user_id, models.Channel(input.channel).value,
            input.category, input.fields(),
        )  # fmt: skip
        return Preference.from_row(row)

    @strawberry.mutation(description="Admin only")
    async def create_template(self, info: Info, input: TemplateInput) -> Template:
        row = await templates.create(
            info.context.rt, info.context.caller, input.name, input.fields()
        )
        return Template.from_row(row)

    @strawberry.mutation(description="Admin only")
    async def update_template(self, info: Info, name: str, input: TemplatePatch) -> Template:
        row = await templates.update(info.context.rt, info.context.caller, name, input.fields())
        return Template.from_row(row)

    @strawberry.mutation(description="Admin only")
    async def delete_template(self, info: Info, name: str) -> DeleteTemplatePayload:
        await templates.delete(info.context.rt, info.context.caller, name)
        return DeleteTemplatePayload(success=True, name=name)
