"""The Strawberry schema: served at /graphql and executed by the Hasura action route."""

from __future__ import annotations

import strawberry

from app.graphql.errors import ErrorCodes
from app.graphql.mutations import Mutation
from app.graphql.queries import Query

schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=[ErrorCodes])


def print_schema() -> str:
    return schema.as_str() + "\n"
