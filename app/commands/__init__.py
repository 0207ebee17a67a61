"""Typer sub-commands owned by feature modules; app.cli mounts them."""
