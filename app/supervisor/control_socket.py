"""The manager's Unix socket: one JSON line per request, one per answer.

Request ``{"op": name, "kwargs": {...}}``; answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"type": <SupervisorError subclass name>, "message": ...}}``.
Only the operations of `app.supervisor.admin_ops` can be called; only the same user
(or root) may connect.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.supervisor import errors as sup_errors
from app.supervisor.admin_ops import ADMIN_OPS
from app.supervisor.errors import SupervisorError

log = logging.getLogger(__name__)
MAX_LINE = 1 << 20
ERROR_TYPES = {cls.__name__: cls for cls in (sup_errors.InvalidRequest,
                                             sup_errors.NotFound,
                                             sup_errors.BrokerUnavailable,
                                             sup_errors.ManagerUnavailable,
                                             sup_errors.SupervisorError)}
# call(op, **kwargs): runs the operation on this process's manager.
LocalCall = Callable[..., Any]


class _Connection(socketserver.StreamRequestHandler):
    """One client connection: JSON request lines in, JSON answer lines out."""

    server: ControlSocketServer

    def handle(self) -> None:
        if not self.server.peer_allowed(self.request):
            return
        for raw in self.rfile:
            if len(raw) > MAX_LINE:
                break
            answer = self.server.dispatch(raw)
            self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")
            self.wfile.flush()


class ControlSocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, call: LocalCall):
        self.call = call
        self.uid = os.getuid()
        self.path = str(path)
        super().__init__(self.path, _Connection)

    def server_bind(self) -> None:
        super().server_bind()
        # The run directory is 0700 already; the socket itself is owner-only too.
        os.chmod(self.path, 0o600)

    def peer_allowed(self, conn: socket.socket) -> bool:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
        except OSError:
            return False
        return uid in (self.uid, 0)

    def dispatch(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
            op, kwargs = request["op"], request.get("kwargs") or {}
            if op not in ADMIN_OPS or not isinstance(kwargs, dict):
                raise SupervisorError(f"unknown operation {op!r}")
            return {"ok": True, "result": self.call(op, **kwargs)}
        except SupervisorError as exc:
            return {"ok": False, "error": {"type": type(exc).__name__, "message": exc.message}}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": {"type": "InvalidRequest",
                                           "message": f"bad request: {exc}"}}
        except Exception as exc:  # a manager bug must not kill the server thread
            log.exception("manager operation failed")
            return {"ok": False, "error": {"type": "SupervisorError",
                                           "message": f"manager error: {type(exc).__name__}"}}


def request_line(op: str, kwargs: dict) -> bytes:
    return json.dumps({"op": op, "kwargs": kwargs}).encode() + b"\n"


def read_line(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > 64 * MAX_LINE:
            break
    return b"".join(chunks)


def result_of(reply: bytes) -> Any:
    """The answer's result, or its error raised as the SupervisorError it names."""
    answer = json.loads(reply)
    if answer.get("ok"):
        return answer.get("result")
    error = answer.get("error") or {}
    raise ERROR_TYPES.get(error.get("type") or "", SupervisorError)(error.get("message", "error"))
