"""Routes of this interface are mounted by setup(app); see DESIGN.md."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this interface's routes on the app."""
