"""Query resolvers: thin calls into the service layer, which holds every rule."""

from __future__ import annotations

from uuid import UUID

import strawberry

from app.errors import InvalidInput, NotFound
from app.graphql.context import Info
from app.graphql.types import (
    DeliveryStats,
    EngagementStats,
    HourlyVolume,
    Notification,
    NotificationEvent,
    NotificationFilter,
    NotificationPage,
    Preference,
    ProviderHealth,
    QueueBacklog,
    Template,
    UserSummary,
    to_stat,
    to_stats,
)
from app.services import notifications, preferences, stats, templates

MAX_PAGE = 500


@strawberry.type(
    description="Analytics over the spec's views; service-wide ones need admin/service"
)
class Stats:
    @strawberry.field
    async def delivery(self, info: Info, days: int | None = 30) -> list[DeliveryStats]:
        stats.authorise(info.context.caller)
        return to_stats(DeliveryStats, await stats.delivery(info.context.rt.db, days))

    @strawberry.field
    async def engagement(self, info: Info, days: int | None = 7) -> list[EngagementStats]:
        stats.authorise(info.context.caller)
        return to_stats(EngagementStats, await stats.engagement(info.context.rt.db, days))

    @strawberry.field
    async def providers(self, info: Info) -> list[ProviderHealth]:
        stats.authorise(info.context.caller)
        return to_stats(ProviderHealth, await stats.providers(info.context.rt.db))

    @strawberry.field
    async def queue(self, info: Info) -> QueueBacklog:
        stats.authorise(info.context.caller)
        return to_stat(QueueBacklog, await stats.queue(info.context.rt.db))  # type: ignore[no-any-return]

    @strawberry.field
    async def hourly(self, info: Info, hours: int = 24) -> list[HourlyVolume]:
        stats.authorise(info.context.caller)
        return to_stats(HourlyVolume, await stats.hourly(info.context.rt.db, hours))

    @strawberry.field(description="Defaults to the caller's own user id")
    async def user_summary(self, info: Info, user_id: UUID | None = None) -> UserSummary:
        caller = info.context.caller
        target = user_id or caller.user_id
        if target is None:
            raise NotFound("give a userId")
        stats.authorise(caller, target)
        row = await stats.user_summary(info.context.rt.db, target)
        return to_stat(UserSummary, row)  # type: ignore[no-any-return]


@strawberry.type
class Query:
    @strawberry.field(description="One notification; null when it does not exist or is not yours")
    async def notification(self, info: Info, id: UUID) -> Notification | None:
        try:
            row = await notifications.get(info.context.rt, info.context.caller, id)
        except NotFound:
            return None
        return Notification.from_row(row)

    @strawberry.field(description="Newest first; a user sees only its own")
    async def notifications(
        self,
        info: Info,
        filter: NotificationFilter | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> NotificationPage:
        f = filter or NotificationFilter()
        if not 1 <= limit <= MAX_PAGE:  # the service reads limit=0 as "default"
            raise InvalidInput(
                f"limit must be between 1 and {MAX_PAGE}", details={"field": "limit"}
            )
        probe = limit + 1 if 1 <= limit < MAX_PAGE else limit
        rows = await notifications.list_for(
            info.context.rt, info.context.caller,
            user_id=f.user_id, status=f.status.value if f.status else None,
            channel=f.channel.value if f.channel else None, template_name=f.template,
            campaign_id=f.campaign_id, since=f.since, until=f.until,
            limit=probe, offset=offset,
        )  # fmt: skip
        items = [Notification.from_row(r) for r in rows[:limit]]
        return NotificationPage(items=items, limit=limit, offset=offset, has_more=len(rows) > limit)

    @strawberry.field
    async def notification_events(
        self, info: Info, notification_id: UUID
    ) -> list[NotificationEvent]:
        await notifications.get(info.context.rt, info.context.caller, notification_id)
        rows = await info.context.loaders.events.load(notification_id)
        return [NotificationEvent.from_row(r) for r in rows]

    @strawberry.field
    async def templates(self, info: Info, active: bool | None = None) -> list[Template]:
        return [Template.from_row(r) for r in await templates.list_all(info.context.rt, active)]

    @strawberry.field
    async def template(self, info: Info, name: str) -> Template | None:
        try:
            return Template.from_row(await templates.get(info.context.rt, name))
        except NotFound:
            return None

    @strawberry.field(description="Defaults to the caller's own user id")
    async def preferences(self, info: Info, user_id: UUID | None = None) -> list[Preference]:
        caller = info.context.caller
        target = user_id or caller.user_id
        if target is None:
            raise NotFound("give a userId")
        rows = await preferences.get_for_user(info.context.rt.db, caller, target)
        return [Preference.from_row(r) for r in rows]

    @strawberry.field
    def stats(self) -> Stats:
        return Stats()
