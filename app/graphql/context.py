"""The typed per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry
from aiohttp import web

from app.graphql.loaders import Loaders
from app.models import Caller
from app.runtime import Runtime


@dataclass
class Context:
    rt: Runtime
    caller: Caller
    request: web.Request | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.rt)


Info = strawberry.Info[Context, None]
