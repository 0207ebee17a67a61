"""A private stack per fault test: embedded PostgreSQL and Redis in a tmp data dir.

Killing, flushing or restarting these servers never disturbs the other tests
(they use the session's servers under .data/test). Worker and API processes are
real `python -m app.cli worker|server` subprocesses; each one's output goes to a
log file in the tmp dir, which a failing test prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app import embedded
from app.embedded import EmbeddedServices
from app.runtime import Runtime, open_runtime
from app.settings import PROJECT_ROOT, Settings
from app.store.migrate import migrate

# Environment of every worker/API subprocess: small timeouts so recovery is quick.
FAST_ENV = {
    "NOTIFICATIONS_LOCK_TIMEOUT": "3",
    "NOTIFICATIONS_SWEEP_INTERVAL": "2",
    "NOTIFICATIONS_WORKER_METRICS_PORT": "0",
    "NOTIFICATIONS_RETRY_DELAY": "200",
    "NOTIFICATIONS_MAX_RETRY_DELAY": "1000",
    "NOTIFICATIONS_DEDUP_WINDOW": "0",
    "NOTIFICATIONS_API_RATE_LIMIT": "0",
    "NOTIFICATIONS_USER_EMAIL_LIMIT": "0",
    "LOG_LEVEL": "warning",
}
STRIPPED = ("DATABASE_URL", "REDIS_URL", "PORT", "NOTIFICATIONS_DATA_DIR")


@dataclass
class Proc:
    kind: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@dataclass
class Stack:
    root: Path
    services: EmbeddedServices
    make_settings: Callable[..., Settings]
    procs: list[Proc] = field(default_factory=list)
    managers: list[Any] = field(default_factory=list)

    @property
    def pg(self) -> embedded.EmbeddedPostgres:
        assert self.services.postgres is not None
        return self.services.postgres

    @property
    def redis(self) -> embedded.EmbeddedRedis:
        assert self.services.redis is not None
        return self.services.redis

    @property
    def database_url(self) -> str:
        return self.pg.url

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "database_pool_min": 1,
            "database_pool_max": 10,
            "worker_metrics_port": 0,
            "dedup_window": 0,
            "user_email_limit": 0,
            "lock_timeout": 3,
            "sweep_interval": 2,
        }
        base.update(overrides)
        return self.make_settings(**base)

    async def runtime(self, **overrides: Any) -> Runtime:
        manager = open_runtime(self.settings(**overrides))
        rt = await manager.__aenter__()
        self.managers.append(manager)
        return rt

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
        env.update(FAST_ENV)
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            NOTIFICATIONS_DATA_DIR=str(self.root / "cli-data"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def spawn(self, kind: str, *args: str, **extra_env: str) -> Proc:
        """`python -m app.cli <kind> <args>`, output to a log file under the tmp dir."""
        log = self.root / f"{kind}-{len(self.procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "app.cli", kind, *args],
            cwd=PROJECT_ROOT,
            env=self.env(**extra_env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        proc = Proc(kind, popen, log)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.kind} pid {p.pid}:\n{p.output()}" for p in self.procs)

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[Stack]:
    # not pytest's tmp_path: its 0700 parents keep the unprivileged postgres user out
    root = Path(tempfile.mkdtemp(prefix="notif-fault-"))
    root.chmod(0o755)
    services = EmbeddedServices(root / "data")
    st = Stack(root, services, make_settings)
    try:
        services.start(want_postgres=True, want_redis=True)
        assert services.postgres is not None
        await migrate(services.postgres.url)
        yield st
    finally:
        for proc in st.procs:  # only the processes this test started, by pid
            with contextlib.suppress(Exception):
                proc.kill9()
        for manager in reversed(st.managers):
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)
        _discard(services)
        shutil.rmtree(root, ignore_errors=True)


def _discard(services: EmbeddedServices) -> None:
    """Stop this test's throwaway servers at once (immediate shutdown), then unregister."""
    if services.postgres is not None and services.postgres.running() and services.postgres.pid:
        embedded.stop_pid(services.postgres.pid, signal.SIGQUIT, timeout=10)
    if services.redis is not None and services.redis.running() and services.redis.pid:
        embedded.stop_pid(services.redis.pid, signal.SIGKILL, timeout=10)
    services.stop()


def same_port(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """Make the next embedded server start on `port` (a restart in place, as in production)."""
    monkeypatch.setattr(embedded, "free_port", lambda: port)


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    stack: Stack | None = None,
    interval: float = 0.2,
) -> float:
    """Poll `check` until true; return the seconds it took, or fail with the process logs."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if await check():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            logs = stack.logs() if stack is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        await asyncio.sleep(interval)


def http_status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except Exception:
        return 0
