"""The Strawberry schema: served at /graphql and executed by the Hasura action route."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache

from app.graphql.errors import ErrorCodes
from app.graphql.mutations import Mutation
from app.graphql.queries import Query


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Client errors (app.errors, bad input) are answers, not server faults: log only
        the unexpected ones (app.graphql.errors logs those with their traceback)."""


# The parser and validation caches matter: the Hasura action route runs the same few
# documents over and over, and parsing + validating one costs ~2.5 ms of CPU.
schema = Schema(
    query=Query,
    mutation=Mutation,
    extensions=[
        ErrorCodes,
        lambda: ParserCache(maxsize=256),  # the caches live at module level, shared
        lambda: ValidationCache(maxsize=256),
    ],
)


def print_schema() -> str:
    return schema.as_str() + "\n"
