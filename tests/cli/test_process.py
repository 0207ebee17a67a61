"""Failure modes (unreachable services, usage errors) and the installed console script."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from app.models import Caller
from app.services import templates
from app.settings import PROJECT_ROOT
from tests.cli.conftest import NEUTRAL_ENV, Cli

SCRIPT = Path(sys.executable).parent / "notifications"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_database_is_one_line(cli: Cli) -> None:
    url = f"postgresql://notif:secret@127.0.0.1:{closed_port()}/notifications"
    for args in (("template", "list"), ("stats", "overview", "--json"), ("gdpr", "delete",
                 "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "--yes")):  # fmt: skip
        result = await cli(*args, DATABASE_URL=url)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: database unreachable")
        assert "secret" not in lines[0] and "***" in lines[0]  # password redacted


async def test_unreachable_redis_is_one_line(cli: Cli) -> None:
    result = await cli("template", "list", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: redis unreachable")


async def test_usage_errors_exit_2(cli: Cli) -> None:
    assert (await cli("template")).exit_code == 2  # no subcommand: help, usage status
    assert (await cli("stats", "hourly", "many")).exit_code == 2
    bad_setting = await cli("template", "list", PORT="not-a-port")
    assert bad_setting.exit_code == 2 and "PORT" in bad_setting.stderr


async def test_hasura_export_writes_metadata(cli: Cli, tmp_path: Path) -> None:
    result = await cli("hasura", "export", str(tmp_path / "metadata"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "metadata" / "actions.graphql").read_text().strip()
    assert "sendNotification" in (tmp_path / "metadata" / "actions.yaml").read_text()


async def test_console_script(cli_env: dict[str, Any], make_rt: Any) -> None:
    """The installed `notifications` entry point, as a real process."""
    rt = await make_rt()
    await templates.create(rt, Caller.system(), "from_script", {"body_text": "Hi {{name}}"})
    env = {k: v for k, v in os.environ.items() if k not in NEUTRAL_ENV}
    env.update({k: v for k, v in cli_env.items() if v is not None})
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "template", "list", "--json", env=env, cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    listed = json.loads(stdout)
    assert [t["name"] for t in listed] == ["from_script"]
    assert b"\x1b[" not in stdout  # plain JSON, no colour codes

    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "template", "show", "missing", env=env, cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert stderr.decode().strip() == "error: template 'missing' does not exist"
