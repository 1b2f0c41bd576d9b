"""A datagram socket the test owns, standing in for systemd's NOTIFY_SOCKET."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """Receives sd_notify datagrams on a thread; every message kept with its arrival time."""

    def __init__(self, path: Path | None = None, *, abstract_name: str | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract_name is not None:
            self.sock.bind("\0" + abstract_name)
            self.env_value = "@" + abstract_name
        else:
            assert path is not None and len(str(path)) < 100, path
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def first(self, key: str, value: str | None = None) -> tuple[float, dict[str, str]] | None:
        for stamp, fields in self.snapshot():
            if key in fields and (value is None or fields[key] == value):
                return stamp, fields
        return None

    def times(self, key: str, value: str) -> list[float]:
        return [stamp for stamp, fields in self.snapshot() if fields.get(key) == value]

    def wait(self, key: str, value: str | None = None, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first(key, value)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.snapshot()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        name = self.sock.getsockname()
        self.sock.close()
        if isinstance(name, str) and name and not name.startswith("\0"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
