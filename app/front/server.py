"""The front's server: accept, cap per address, read a whole request, relay it upstream."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

import h11

from app.front.guard import (
    CHUNK,
    HOP_BY_HOP,
    RESPONSE_HOP_BY_HOP,
    ClientSide,
    ConnectionCounter,
    FrontLimits,
    Refused,
    error_bytes,
)
from app.front.spool import SpoolBudget

log = logging.getLogger(__name__)


def proxy_line(peer, local) -> bytes:
    """PROXY protocol v1: how gunicorn learns the client's address over a Unix socket."""
    family = "TCP6" if ipaddress.ip_address(peer[0]).version == 6 else "TCP4"
    return f"PROXY {family} {peer[0]} {local[0]} {peer[1]} {local[1]}\r\n".encode()


class FrontServer:
    def __init__(self, limits: FrontLimits, upstream_path: str):
        self.limits = limits
        self.upstream_path = upstream_path
        self.counter = ConnectionCounter(limits.per_address, limits.total)
        self.spool = SpoolBudget(limits.spool_per_address, limits.spool_total)
        self.server: asyncio.base_events.Server | None = None
        self.busy: set[asyncio.Task] = set()   # connections in a request
        self.idle: set[asyncio.Task] = set()   # connections between requests

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, host, port, limit=CHUNK,
                                                 reuse_address=True, backlog=1024)

    async def stop(self, timeout: float) -> None:
        """Stop accepting; drop idle connections; let requests in flight finish."""
        if self.server is not None:  # None: start() never ran
            self.server.close()
        for task in list(self.idle):
            task.cancel()
        pending = list(self.busy | self.idle)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def handle(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")[:2]
        local = writer.get_extra_info("sockname")[:2]
        task = asyncio.current_task()
        if not self.counter.acquire(peer[0]):
            writer.write(error_bytes(429, "too_many_connections",
                                     "too many open connections from this address",
                                     [("Retry-After", "1")]))
            await self._close(writer)
            return
        try:
            client = ClientSide(reader, writer, self.limits, self.spool, peer[0])
            await self._serve(client, peer, local, task)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away or stopped reading: nothing left to tell it
        except Exception:
            log.exception("front: unexpected error serving %s", peer[0])
        finally:
            self.busy.discard(task)
            self.idle.discard(task)
            self.counter.release(peer[0])
            await self._close(writer)

    async def _serve(self, client: ClientSide, peer, local, task) -> None:
        while True:
            self.idle.add(task)
            self.busy.discard(task)
            try:
                request = await client.request()
                self.idle.discard(task)
                self.busy.add(task)
                if request is None:
                    return
                body, size = await client.body(request)
            except Refused as refused:
                client.writer.write(error_bytes(refused.status, refused.code, refused.message,
                                                refused.headers))
                return
            except h11.RemoteProtocolError as exc:
                client.writer.write(error_bytes(exc.error_status_hint, "bad_request",
                                                "malformed HTTP request"))
                return
            try:
                with body:
                    await self._relay(client, request, body, size, proxy_line(peer, local))
            finally:
                client.release_body()
            if client.conn.our_state is h11.MUST_CLOSE or self.server is None \
                    or not self.server.is_serving():
                return
            client.conn.start_next_cycle()

    async def _relay(self, client: ClientSide, request: h11.Request, body, size: int,
                     proxy: bytes) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream_path,
                                                                      limit=CHUNK)
        except OSError:
            client.writer.write(error_bytes(503, "unavailable",
                                            "the application is starting or stopped",
                                            [("Retry-After", "2")]))
            raise ConnectionError("upstream unavailable") from None
        try:
            up = h11.Connection(h11.CLIENT)
            headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
            headers.append((b"content-length", str(size).encode()))
            up_writer.write(proxy + up.send(h11.Request(method=request.method,
                                                        target=request.target,
                                                        headers=headers)))
            # The body goes up while the answer is read: the application may answer
            # (401, 413) without reading it. No "Connection: close" upstream, so gunicorn
            # drains rather than resets; the front closes once the answer is relayed.
            sending = asyncio.create_task(self._send_body(up, up_writer, body))
            try:
                await self._relay_response(client, up, up_reader)
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
        finally:
            up_writer.close()

    @staticmethod
    async def _send_body(up: h11.Connection, up_writer, body) -> None:
        while chunk := body.read(CHUNK):
            up_writer.write(up.send(h11.Data(data=chunk)))
            await up_writer.drain()
        up_writer.write(up.send(h11.EndOfMessage()))
        await up_writer.drain()

    async def _relay_response(self, client: ClientSide, up: h11.Connection, up_reader) -> None:
        while True:
            event = up.next_event()
            if event is h11.NEED_DATA:
                up.receive_data(await up_reader.read(CHUNK))
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                headers = [(k, v) for k, v in event.headers
                           if k.lower() not in RESPONSE_HOP_BY_HOP]
                await client.send(client.conn.send(h11.Response(
                    status_code=event.status_code, headers=headers, reason=event.reason)))
            elif isinstance(event, h11.Data):
                await client.send(client.conn.send(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await client.send(client.conn.send(h11.EndOfMessage()))
                return
            else:
                raise ConnectionError("upstream closed mid-response")

    @staticmethod
    async def _close(writer) -> None:
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (TimeoutError, OSError, ConnectionError):
            pass


def serve(limits: FrontLimits, host: str, port: int, upstream_path: str,
          stop_timeout: float = 30.0) -> None:
    """Run until SIGTERM or SIGINT, then stop as FrontServer.stop does."""
    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        front = FrontServer(limits, upstream_path)
        await front.start(host, port)
        log.info("front listening on %s:%d for %s", host, port, upstream_path)
        await stop.wait()
        await front.stop(stop_timeout)

    asyncio.run(main())
