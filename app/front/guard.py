"""An asyncio HTTP/1.1 front that reads whole requests before gunicorn sees them.

Why: gunicorn's threads read request heads and bodies with blocking calls, so each
client that sends a byte every few seconds holds one thread for as long as it likes;
twenty such connections stopped all HTTP service. Deadlines inside the threads would
only shorten the outage. Here one event loop holds every slow connection for the cost
of a coroutine, enforces deadlines (idle, whole head, body at a minimum rate, each
write of the answer) and caps connections per client address and in total. A request
reaches gunicorn only when it is complete (its body spooled), over a private Unix
socket, with the client's address in a PROXY protocol v1 line, so gunicorn's threads
only ever wait for the application. This is what nginx does in front of gunicorn
(`client_header_timeout`, request buffering, `limit_conn`); deploy/nginx.conf is the
equivalent when a proxy is used instead. HTTP framing is h11's (the sans-I/O HTTP/1.1
state machine httpx and uvicorn build on), not parsed by hand.
"""
from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import IO

import h11

from app.front.spool import UPLOADS_IN_ALL, UPLOADS_PER_ADDRESS, SpoolBudget
from app.security_headers import DEFAULT_CSP, FIXED_HEADERS

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
# Request headers that describe this hop, not the request: the front sets its own.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
              b"upgrade", b"expect", b"transfer-encoding", b"content-length"}
RESPONSE_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"upgrade"}


@dataclass(frozen=True)
class FrontLimits:
    keepalive_timeout: float = 5.0   # idle before the next request's first byte
    header_timeout: float = 10.0     # first byte to the end of the head
    body_timeout: float = 30.0       # a body may take this long, plus size / min rate
    body_min_rate: int = 32 * 1024   # bytes per second
    send_timeout: float = 60.0       # each write of the answer
    max_body: int = 256 * 1024 * 1024
    max_head: int = 64 * 1024
    per_address: int = 32
    total: int = 1024
    spool_per_address: int = UPLOADS_PER_ADDRESS * 256 * 1024 * 1024  # app/front/spool.py
    spool_total: int = UPLOADS_IN_ALL * 256 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings) -> FrontLimits:
        return cls(keepalive_timeout=settings.FRONT_KEEPALIVE_TIMEOUT,
                   header_timeout=settings.FRONT_HEADER_TIMEOUT,
                   body_timeout=settings.FRONT_BODY_TIMEOUT,
                   body_min_rate=settings.FRONT_BODY_MIN_RATE_KB * 1024,
                   send_timeout=settings.FRONT_SEND_TIMEOUT,
                   max_body=settings.MAX_UPLOAD_MB * 1024 * 1024,
                   per_address=settings.FRONT_MAX_CONNECTIONS_PER_ADDRESS,
                   total=settings.FRONT_MAX_CONNECTIONS,
                   spool_per_address=_spool_cap(settings.FRONT_MAX_SPOOL_PER_ADDRESS_MB,
                                                UPLOADS_PER_ADDRESS, settings.MAX_UPLOAD_MB),
                   spool_total=_spool_cap(settings.FRONT_MAX_SPOOL_MB, UPLOADS_IN_ALL,
                                          settings.MAX_UPLOAD_MB))


def _spool_cap(chosen_mb: int | None, uploads: int, max_upload_mb: int) -> int:
    """Bytes: the operator's choice, else `uploads` largest uploads; never below one
    largest upload, which the application allows and so must always fit alone."""
    return max(chosen_mb or uploads * max_upload_mb, max_upload_mb) * 1024 * 1024


class Refused(Exception):
    """The request ends here with this status; the connection is closed after it."""

    def __init__(self, status: int, code: str, message: str, headers=()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ConnectionCounter:
    """Open connections per client address and in total (one event loop: no lock)."""

    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self.by_address: Counter[str] = Counter()

    def acquire(self, address: str) -> bool:
        if sum(self.by_address.values()) >= self.total \
                or self.by_address[address] >= self.per_address:
            return False
        self.by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


def error_bytes(status: int, code: str, message: str, headers=()) -> bytes:
    """A complete JSON error response (the API's shape) that closes the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = _REASONS.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close",
             f"Content-Security-Policy: {DEFAULT_CSP}"]
    lines += [f"{name}: {value}" for name, value in FIXED_HEADERS.items()]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            429: "Too Many Requests", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 503: "Service Unavailable"}


# Which SpoolBudget cap refused a body, and how the client hears it.
_SPOOL_REFUSALS = {
    "address": (429, "uploads_in_flight",
                "too many bytes of uploads in flight from this address; retry when they end"),
    "total": (503, "server_busy", "the server holds too many uploads at once; retry shortly"),
}


class ClientSide:
    """One client connection: h11 state plus reads under a deadline."""

    def __init__(self, reader, writer, limits: FrontLimits, budget: SpoolBudget,
                 address: str):
        self.reader, self.writer, self.limits = reader, writer, limits
        self.budget, self.address = budget, address
        self.held = 0  # bytes of `budget` this connection's current body holds
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
        self.loop = asyncio.get_running_loop()

    async def event(self, deadline: float, timeout_code: str):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise Refused(408, timeout_code, "the request was not sent in time")
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), remaining)
            except TimeoutError:
                raise Refused(408, timeout_code, "the request was not sent in time") from None
            self.conn.receive_data(data)

    async def request(self) -> h11.Request | None:
        """The next request's head; None when the client closed or stayed idle."""
        limits = self.limits
        if not self.conn.trailing_data[0]:
            try:
                first = await asyncio.wait_for(self.reader.read(CHUNK),
                                               limits.keepalive_timeout)
            except TimeoutError:
                return None
            self.conn.receive_data(first)
            if not first:
                return None
        event = await self.event(self.loop.time() + limits.header_timeout, "header_timeout")
        if isinstance(event, h11.ConnectionClosed):
            return None
        return event

    async def body(self, request: h11.Request) -> tuple[IO[bytes], int]:
        """The whole body, spooled (memory, then a private temp file), and its size; its
        bytes stay held in the budget until `release_body`."""
        limits = self.limits
        declared = dict(request.headers).get(b"content-length")
        if declared is not None and int(declared) > limits.max_body:
            raise Refused(413, "request_too_large", "the request body is too large")
        self._hold(int(declared or 0))
        if self.conn.client_is_waiting_for_100_continue:
            await self.send(self.conn.send(h11.InformationalResponse(
                status_code=100, headers=[], reason=b"Continue")))
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        size, started = 0, self.loop.time()
        try:
            while True:
                deadline = started + limits.body_timeout + size / limits.body_min_rate
                event = await self.event(deadline, "body_timeout")
                if isinstance(event, h11.EndOfMessage):
                    spool.seek(0)
                    return spool, size
                if not isinstance(event, h11.Data):
                    raise Refused(400, "bad_request", "the request body ended early")
                size += len(event.data)
                if size > limits.max_body:
                    raise Refused(413, "request_too_large", "the request body is too large")
                self._hold(size - self.held)
                spool.write(event.data)
        except BaseException:
            spool.close()
            self.release_body()
            raise

    def _hold(self, more: int) -> None:
        if more <= 0:
            return
        refused_by = self.budget.take(self.address, more)
        if refused_by is not None:
            status, code, message = _SPOOL_REFUSALS[refused_by]
            raise Refused(status, code, message, [("Retry-After", "2")])
        self.held += more

    def release_body(self) -> None:
        self.budget.give_back(self.address, self.held)
        self.held = 0

    async def send(self, data: bytes | None) -> None:
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.limits.send_timeout)
