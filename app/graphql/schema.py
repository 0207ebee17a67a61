"""The Strawberry schema: served at /graphql and executed by the Hasura action route."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError

from app.graphql.errors import ErrorCodes
from app.graphql.mutations import Mutation
from app.graphql.queries import Query


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Client errors (app.errors, bad input) are answers, not server faults: log only
        the unexpected ones (app.graphql.errors logs those with their traceback)."""


schema = Schema(query=Query, mutation=Mutation, extensions=[ErrorCodes])


def print_schema() -> str:
    return schema.as_str() + "\n"
