"""Settings, /health, and the embedded services' life cycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient

from app.embedded import EmbeddedServices, pid_alive
from app.main import create_app
from app.settings import SettingsError, load_settings


def test_settings_take_the_spec_defaults(make_settings: Any) -> None:
    s = make_settings()
    assert s.port == 3102 and s.email_provider == "resend" and s.email_from == "noreply@example.com"
    assert s.queue_backend == "redis" and s.worker_concurrency == 5
    assert (s.retry_attempts, s.retry_delay, s.max_retry_delay) == (3, 1000, 300000)
    assert s.batch_interval == 86400 and s.dry_run is False and s.webhook_verify is False
    assert (s.circuit_breaker_threshold, s.circuit_breaker_timeout) == (10, 300)
    assert s.provider_rate("resend") == (10, 1) and s.provider_rate("sendgrid") == (600, 60)
    assert s.provider_rate("mailgun") == (1000, 3600) and s.provider_rate("twilio") == (100, 1)
    assert s.user_limits == {"email": 100, "push": 200, "sms": 20}
    assert s.template_cache_ttl == 3600 and s.log_level == "info"


def test_settings_read_the_spec_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PORT": "4000",
        "NOTIFICATIONS_EMAIL_PROVIDER": "sendgrid",
        "WORKER_CONCURRENCY": "10",
        "NOTIFICATIONS_QUEUE_BACKEND": "postgres",
        "NOTIFICATIONS_DRY_RUN": "true",
        "NOTIFICATIONS_SMS_PROVIDER": "twilio",
        "LOG_LEVEL": "DEBUG",
        "NOTIFICATIONS_RESEND_RATE_LIMIT": "5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings(_env_file=None)
    assert (s.port, s.email_provider, s.worker_concurrency) == (4000, "sendgrid", 10)
    assert s.queue_backend == "postgres" and s.dry_run and s.sms_provider == "twilio"
    assert s.log_level == "debug" and s.provider_rate("resend") == (5, 1)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "abc", "PORT"),
        ("PORT", "70000", "PORT"),
        ("NOTIFICATIONS_EMAIL_PROVIDER", "pigeon", "NOTIFICATIONS_EMAIL_PROVIDER"),
        ("NOTIFICATIONS_QUEUE_BACKEND", "kafka", "NOTIFICATIONS_QUEUE_BACKEND"),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY"),
        ("NOTIFICATIONS_JWT_SECRET", "not-json", "NOTIFICATIONS_JWT_SECRET"),
        ("NOTIFICATIONS_ENCRYPT_CONFIG", "true", "NOTIFICATIONS_ENCRYPTION_KEY"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_cli_exits_2_with_one_line_on_bad_settings() -> None:
    env = {**os.environ, "PORT": "nope"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PORT" in result.stderr and "Traceback" not in result.stderr


async def test_health_ok(clean: None, db_settings: Any, aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(create_app(db_settings()))
    ok = await client.get("/health")
    assert ok.status == 200
    body = await ok.json()
    assert body["database"] == "ok" and body["redis"] == "ok" and body["status"] == "ok"


async def test_health_503_when_redis_stops(
    clean: None, db_settings: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    """A Redis of our own, stopped under a running app: /health says 503 with details."""
    services = EmbeddedServices(tmp_path / "data")
    services.start(want_postgres=False, want_redis=True)
    assert services.redis is not None
    try:
        client: TestClient = await aiohttp_client(
            create_app(db_settings(redis_url=services.redis.url))
        )
        assert (await client.get("/health")).status == 200
        services.redis.stop()
        response = await client.get("/health")
        body = await response.json()
        assert response.status == 503
        assert body["database"] == "ok" and body["redis"].startswith("error")
    finally:
        services.stop()


def test_embedded_services_start_recover_after_kill_9_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = EmbeddedServices(data)
    first.start(want_postgres=True, want_redis=True)
    assert first.postgres is not None and first.redis is not None
    pg_pid, redis_pid = first.postgres.pid, first.redis.pid
    assert pid_alive(pg_pid) and pid_alive(redis_pid)
    # a crash: both servers die by SIGKILL, the owner never cleans up
    os.kill(pg_pid, signal.SIGKILL)  # type: ignore[arg-type]
    os.kill(redis_pid, signal.SIGKILL)  # type: ignore[arg-type]
    _wait_dead(pg_pid)
    _wait_dead(redis_pid)
    second = EmbeddedServices(data)
    second.start(want_postgres=True, want_redis=True)
    assert second.postgres is not None and second.redis is not None
    assert second.postgres.pid != pg_pid and pid_alive(second.postgres.pid)
    new_pids = [second.postgres.pid, second.redis.pid]
    first.owner = False  # the crashed process never stops anything
    second.stop()
    for pid in new_pids:
        _wait_dead(pid)
    assert not any(
        p.info["name"] == "postgres" and str(data) in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
    )


def test_a_second_user_keeps_the_servers_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = EmbeddedServices(data)
    first.start(want_postgres=False, want_redis=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        users = data / "users"
        users.write_text(users.read_text() + f"\n{child.pid}")
        assert first.redis is not None
        pid = first.redis.pid
        first.stop()
        assert pid_alive(pid)  # another live user is registered
        child.kill()
        child.wait()
        last = EmbeddedServices(data)
        last.start(want_postgres=False, want_redis=True)
        assert last.redis is not None and last.redis.pid == pid  # adopted, not restarted
        last.stop()
        _wait_dead(pid)
    finally:
        if child.poll() is None:
            child.kill()


def _wait_dead(pid: int | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), f"pid {pid} still alive"
