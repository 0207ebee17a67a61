"""`make run`'s command, as a new user runs it: health within 60 s, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from app.embedded import free_port

pytestmark = pytest.mark.slow


def _leftovers(data_dir: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] in ("postgres", "redis-server") and str(data_dir) in cmd:
            found.append(proc.info["pid"])
    return found


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return int(response.status)
    except Exception:
        return None


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dev_serves_health_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        PORT=str(port),
        NOTIFICATIONS_DATA_DIR=str(tmp_path / "data"),
        NOTIFICATIONS_WORKER_METRICS_PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _health(port) != 200:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.5)
        assert _health(port) == 200
        assert (tmp_path / "data" / "dev-secrets.env").exists()
        assert _leftovers(tmp_path / "data")
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    deadline = time.monotonic() + 20
    while _leftovers(tmp_path / "data") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(tmp_path / "data") == []
