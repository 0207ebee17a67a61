"""Shared plumbing of the benchmarks: servers, fresh databases, processes, wrk, RSS, results.

Every benchmark:
- uses DATABASE_URL / REDIS_URL when set, else the embedded servers under .data/bench
  (`services()`), and a fresh database that is dropped afterwards (`fresh_database()`);
- talks to 127.0.0.1 only;
- stops every process it started by PID (`stop_process`: SIGTERM, then SIGKILL), in
  `finally` blocks, so an error or Ctrl-C leaves nothing running;
- writes bench/results/NAME.json with the machine's details and a timestamp (`write_result`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from app.settings import PROJECT_ROOT

BENCH_DIR = Path(__file__).parent
RESULTS_DIR = BENCH_DIR / "results"
WRK_DIR = BENCH_DIR / "wrk"
DATA_DIR = PROJECT_ROOT / ".data" / "bench"
WORK_DIR = DATA_DIR / "work"  # scratch files (pre-signed requests, profiles)
API_KEY = "bench-api-key-0123456789"
ACTION_SECRET = "bench-action-secret-0123456789"


# --------------------------------------------------------------------------- results


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    data = {
        **data,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# --------------------------------------------------------------------------- servers, database


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str]]:
    """(server DSN, Redis URL): the environment's, or embedded servers under .data/bench."""
    from app.embedded import ensure_services

    with ensure_services(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), DATA_DIR) as (
        db,
        redis,
        _,
    ):
        yield db, redis


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new, migrated database on the server; dropped (FORCE) on the way out."""
    from app.store.migrate import migrate

    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_dsn.rpartition("/")[0] + "/" + name
    try:
        await migrate(url)
        yield url
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def flush_redis(redis_url: str) -> None:
    """A clean ARQ queue for the run (the bench Redis is the bench's own)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def bench_settings(database_url: str, redis_url: str, **overrides: Any) -> Any:
    from app.settings import Settings

    base: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "database_pool_min": 2,
        "database_pool_max": 20,
        "worker_metrics_port": 0,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of an API/worker subprocess: only what the benchmark decides."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "NOTIFICATIONS_API_PROCESSES")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "NOTIFICATIONS_DATA_DIR": str(DATA_DIR),
            "NOTIFICATIONS_WORKER_METRICS_PORT": "0",
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_process(
    args: Sequence[str], env: dict[str, str], log_name: str, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    """A Python module (`-m ...`) in a subprocess, output to .data/bench/work/<log_name>.log;
    under cProfile when `profile` is given (written when the process exits on SIGTERM)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += list(args)
    log = (WORK_DIR / f"{log_name}.log").open("wb")
    try:
        return subprocess.Popen(
            command,
            env=env,
            cwd=str(PROJECT_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM this process (by its PID), wait, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def log_tail(log_name: str, lines: int = 20) -> str:
    path = WORK_DIR / f"{log_name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(port: int, proc: subprocess.Popen[bytes], path: str = "/health", timeout: float = 60):
    """Wait until GET path answers (any status) on 127.0.0.1:port."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}{path} within {timeout:.0f}s")


class RssSampler:
    """Peak RSS of some processes, sampled every `interval` seconds in a thread."""

    def __init__(self, pids: Sequence[int], interval: float = 0.1) -> None:
        self.interval = interval
        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def peak_mb(self) -> dict[int, float]:
        return {pid: round(rss / 1_048_576, 1) for pid, rss in self.peak.items()}


def _cpu_seconds(procs: Sequence[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def _postgres_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def profile_summary(prof: Path) -> dict[str, Any]:
    """What a `--profile` run keeps in its result (read back by `print_profile`)."""
    return {
        "profile_top_own_time": profile_top(prof, 30),
        "profile_app_cumulative": profile_cumulative(prof, "/app/", 30),
    }


def print_profile(result: dict[str, Any], who: str) -> None:
    """The profile summary a `--profile` run keeps in its result."""
    print(f"\n{who}, top functions by own time:")
    for row in result.get("profile_top_own_time", []):
        print(f"  {row['own_s']:8.2f}s {row['own_pct']:5.1f}% {row['calls']:>9}  {row['function']}")
    print(f"\n{who}, app functions by cumulative time:")
    for line in result.get("profile_app_cumulative", []):
        print("  " + line)


class CpuMeter:
    """CPU seconds a process (and its children) used over a block, what PostgreSQL used,
    and the whole machine's busy share."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)

    def _tree(self) -> list[psutil.Process]:
        return [self.proc, *self.proc.children(recursive=True)]

    def __enter__(self) -> CpuMeter:
        self.wall = time.perf_counter()
        self.start = _cpu_seconds(self._tree())
        self.pg_start = _cpu_seconds(_postgres_processes())
        psutil.cpu_percent(None)
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        end = _cpu_seconds(self._tree())
        self.cpu = sum(v - self.start.get(pid, 0.0) for pid, v in end.items())
        pg_end = _cpu_seconds(_postgres_processes())
        self.pg_cpu = sum(v - self.pg_start.get(pid, 0.0) for pid, v in pg_end.items())
        self.machine_busy = psutil.cpu_percent(None)

    def report(self, requests: int) -> dict[str, float]:
        return {
            "process_cpu_seconds": round(self.cpu, 2),
            "process_cores_used": round(self.cpu / self.wall, 2),
            "process_cpu_ms_per_request": round(1000 * self.cpu / requests, 3) if requests else 0,
            "postgres_cores_used": round(self.pg_cpu / self.wall, 2),
            "machine_busy_percent": self.machine_busy,
        }


# --------------------------------------------------------------------------- wrk


def ensure_wrk() -> str:
    """Path of wrk; installs the Debian package when it is missing (root + apt only)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: apt-get install -y wrk", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    return found


_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_DONE = re.compile(r"^WRK_DONE (\{.*\})$", re.MULTILINE)


def run_wrk(
    url: str,
    script: str,
    *,
    duration: float,
    connections: int = 32,
    threads: int = 2,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run wrk with one of bench/wrk/*.lua; its done() prints `WRK_DONE {json}`."""
    wrk = ensure_wrk()
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    proc = subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    found = _DONE.search(proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    data: dict[str, Any] = json.loads(found.group(1))
    non_2xx = _NON_2XX.search(proc.stdout)
    data["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    data["command"] = " ".join(command[1:])
    seconds = data["duration_us"] / 1e6
    data["seconds"] = round(seconds, 3)
    data["requests_per_second"] = round(data["requests"] / seconds, 1)
    errors = data["errors"]
    data["socket_errors"] = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    data["ok_per_second"] = round(
        (data["requests"] - data["non_2xx"] - data["socket_errors"]) / seconds, 1
    )
    for key in ("p50_us", "p90_us", "p95_us", "p99_us", "max_us", "mean_us"):
        data[key.replace("_us", "_ms")] = round(data[key] / 1000, 2)
    return data


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def profile_top(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    """Top functions of a cProfile file by own time and by cumulative time."""
    import pstats

    if not path.exists():
        return []
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({func})",
                "calls": calls,
                "own_s": round(tottime, 3),
                "own_pct": round(100 * tottime / total, 1) if total else 0.0,
                "cum_s": round(cumtime, 3),
                "cum_pct": round(100 * cumtime / total, 1) if total else 0.0,
            }
        )
    return sorted(rows, key=lambda r: -r["own_s"])[:limit]


def profile_cumulative(path: Path, contains: str = "/app/", limit: int = 25) -> list[str]:
    """Cumulative-time lines of functions whose file path contains `contains`."""
    import pstats

    if not path.exists():
        return []
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = [
        (cumtime, calls, f"{_short(fn)}:{line}({func})")
        for (fn, line, func), (_cc, calls, _tt, cumtime, _c) in stats.stats.items()  # type: ignore[attr-defined]
        if contains in fn
    ]
    rows.sort(reverse=True)
    return [
        f"{cum:8.2f}s {100 * cum / total:5.1f}% {calls:>8} {name}"
        for cum, calls, name in rows[:limit]
    ]


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(PROJECT_ROOT) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
