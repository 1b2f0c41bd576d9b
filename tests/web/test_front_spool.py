"""The front's cap on request-body bytes held at once, per client address and in all.

A real FrontServer on a TCP port in front of a small upstream on a Unix socket (it
stands in for gunicorn and answers with the size of the body it got); clients are raw
sockets, some bound to 127.0.0.2 to be a second address. The same path through
start_with_celery.py and gunicorn is in tests/e2e/test_slow_clients_e2e.py.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading

import h11
import pytest

from app.front.guard import FrontLimits
from app.front.server import FrontServer
from app.front.spool import SpoolBudget

MB = 1024 * 1024
pytestmark = pytest.mark.backends("sqlite")  # the front keeps no records


def test_budget_caps_each_address_and_the_total():
    budget = SpoolBudget(per_address=6, total=10)
    assert budget.take("a", 4) is None
    assert budget.take("a", 3) == "address"
    assert budget.take("b", 6) is None
    assert budget.take("c", 1) == "total"
    budget.give_back("a", 4)
    assert budget.take("c", 1) is None
    budget.give_back("b", 6)
    budget.give_back("c", 1)
    assert budget.held == 0 and not budget.by_address


async def _upstream(reader, writer) -> None:
    """Reads the PROXY line and one whole request; answers {"size": <body bytes>}."""
    await reader.readline()
    conn, size = h11.Connection(h11.SERVER), 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Data):
            size += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            break
    body = json.dumps({"size": size}).encode()
    writer.write(conn.send(h11.Response(status_code=200, headers=[
        ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])))
    writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    writer.close()


@pytest.fixture
def front(tmp_path):
    limits = FrontLimits(max_body=4 * MB, spool_per_address=6 * MB, spool_total=8 * MB,
                         body_timeout=30)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream_path = str(tmp_path / "up.sock")
    server = FrontServer(limits, upstream_path)

    async def start():
        up = await asyncio.start_unix_server(_upstream, upstream_path)
        await server.start("127.0.0.1", 0)
        return up
    up = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield server
    finally:
        async def stop():
            await server.stop(5)
            up.close()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _upload(front, length: int | None, source: str = "127.0.0.1") -> socket.socket:
    """A connection that sent the head of a POST (Content-Length, or chunked when None)."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", front.server.sockets[0].getsockname()[1]))
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST /up HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _held(front) -> int:
    return front.spool.held


def _wait_held(front, expected: int) -> None:
    for _ in range(200):
        if _held(front) == expected:
            return
        threading.Event().wait(0.02)
    assert _held(front) == expected


def test_uploads_past_an_address_cap_are_refused_before_they_send(front):
    first = _upload(front, 4 * MB)
    first.sendall(b"x" * 1000)
    _wait_held(front, 4 * MB)
    second = _upload(front, 3 * MB)  # 4 + 3 > 6 for this address: refused at its head
    status, headers, body = _answer(second)
    assert status == 429 and body["error"]["code"] == "uploads_in_flight"
    assert headers["Retry-After"] == "2"
    other = _upload(front, 3 * MB, source="127.0.0.2")  # another address: 7 of 8 in all
    other.sendall(b"y" * 1000)
    _wait_held(front, 7 * MB)
    third = _upload(front, 2 * MB, source="127.0.0.3")  # 7 + 2 > 8 in all
    status, _headers, body = _answer(third)
    assert status == 503 and body["error"]["code"] == "server_busy"

    first.sendall(b"x" * (4 * MB - 1000))
    assert _answer(first)[2] == {"size": 4 * MB}
    _wait_held(front, 3 * MB)  # given back once the answer was relayed
    again = _upload(front, 3 * MB)
    again.sendall(b"z" * 3 * MB)
    assert _answer(again)[2] == {"size": 3 * MB}
    other.close()
    _wait_held(front, 0)  # a client that goes away mid-body gives its bytes back too
    for sock in (first, second, third, again):
        sock.close()


def test_chunked_bodies_are_counted_as_they_arrive(front):
    holder = _upload(front, 4 * MB)
    holder.sendall(b"x")
    _wait_held(front, 4 * MB)
    chunked = _upload(front, None)
    chunk = b"c" * MB
    for _ in range(2):  # 4 + 2 = 6: still within this address's cap
        chunked.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    _wait_held(front, 6 * MB)
    # The third chunk's first bytes pass the cap. (Only those are sent: the front closes
    # after its answer, and unread bytes would turn that close into a reset.)
    chunked.sendall(b"%x\r\n" % len(chunk) + b"c" * 100)
    status, _headers, body = _answer(chunked)
    assert status == 429 and body["error"]["code"] == "uploads_in_flight"
    _wait_held(front, 4 * MB)
    holder.close()
    chunked.close()
    _wait_held(front, 0)
