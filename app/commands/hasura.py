"""`notifications hasura export`: write the Hasura metadata."""

from __future__ import annotations

from pathlib import Path

import typer

from app.commands.common import (
    console,
    fail,
)

# =========================================================================== hasura

hasura_app = typer.Typer(help="Hasura integration.", no_args_is_help=True)


@hasura_app.command("export")
def hasura_export(
    path: Path = typer.Argument(Path("hasura/metadata"), help="metadata directory to write"),
) -> None:
    """Write the Hasura metadata (actions generated from the GraphQL schema, tables)."""
    try:
        from app.graphql.hasura import write_metadata
    except ImportError as exc:
        raise fail(f"Hasura metadata export is not available in this build ({exc})") from None
    written = write_metadata(path)
    console.print(f"wrote Hasura metadata to {path}", highlight=False)
    for item in written or []:
        console.print(f"  {item}", highlight=False)
