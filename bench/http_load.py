"""HTTP benchmark: the public health probe under load, and job submission latency.

    python bench/http_load.py                      # starts start_with_celery.py itself
    python bench/http_load.py --url http://127.0.0.1:5000 --username admin --password ...

1. GET /api/celery/health for --duration seconds over --connections keep-alive
   connections (asyncio, raw HTTP/1.1), closed loop: each connection sends its next
   request as soon as the previous answer arrived. Reports throughput, p50, p99, max and
   errors (non-200 or broken connections).
2. The same at fixed total rates (--rates, spread over the connections, latency measured
   from the scheduled send time so a stall is not hidden), which is how a load balancer's
   probes and monitoring actually arrive.
3. POST /api/jobs/sheets with --cards card images (multipart), --uploads times: the
   latency until the 202, and until the job has succeeded.

The load generator runs on the same machine as the server and competes for its CPUs;
the figures are therefore pessimistic for the server.
"""
from __future__ import annotations

import os
import sys

import argparse
import asyncio
import io
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- load loop

async def _connection(host: str, port: int, path: str, deadline: float, interval: float | None,
                      start: float, latencies: list[float], errors: list[str]) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    reader = writer = None
    scheduled = start
    while True:
        now = time.perf_counter()
        if interval is not None:
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            sent_at = scheduled  # constant rate: measure from when it should have gone out
            scheduled += interval
        else:
            sent_at = now
        if time.perf_counter() >= deadline:
            break
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent_at)
            if status != 200:
                errors.append(f"HTTP {status}")
            if b"connection: close" in head.lower():
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(type(exc).__name__)
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _load(url: str, path: str, connections: int, duration: float,
                rate: float | None) -> tuple[list[float], list[str], float]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    latencies: list[float] = []
    errors: list[str] = []
    interval = connections / rate if rate else None
    start = time.perf_counter()
    deadline = start + duration
    tasks = [
        _connection(host, port, path, deadline, interval,
                    start + (interval * i / connections if interval else 0), latencies, errors)
        for i in range(connections)
    ]
    await asyncio.gather(*tasks)
    return latencies, errors, time.perf_counter() - start


def load(url: str, path: str, connections: int, duration: float,
         rate: float | None = None) -> dict:
    latencies, errors, elapsed = asyncio.run(_load(url, path, connections, duration, rate))
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": pct(50),
            "p99_ms": pct(99), "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "errors": len(errors), "error_kinds": sorted(set(errors))}


# --------------------------------------------------------------------------- uploads

def card_images(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """`count` distinct card-sized PNGs (744 x 1039 px, like a 2.5 x 3.5 in card at 300 ppi)."""
    from PIL import Image, ImageDraw

    files = []
    for i in range(count):
        image = Image.new("RGB", (744, 1039), ((i * 53) % 256, (i * 97) % 256, (i * 31) % 256))
        draw = ImageDraw.Draw(image)
        for y in range(0, 1039, 40):
            draw.line([(0, y), (743, (y * 7 + i * 13) % 1039)], fill=(255 - i, i * 3 % 256, 90),
                      width=3)
        draw.text((40, 40), f"card {i}", fill=(255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        files.append(("fronts", (f"card{i:03d}.png", buffer.getvalue(), "image/png")))
    return files


def uploads(url: str, username: str, password: str, cards: int, repeat: int) -> dict:
    session = requests.Session()
    login = session.post(url + "/api/auth/login",
                         json={"username": username, "password": password}, timeout=30)
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    files = card_images(cards)
    size = sum(len(item[1][1]) for item in files)
    accepted, finished, modes = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = session.post(url + "/api/jobs/sheets", headers=headers, files=files,
                                data={"card_size": "standard", "paper_size": "letter"},
                                timeout=300)
        accepted.append(time.perf_counter() - t0)
        if response.status_code != 202:
            raise SystemExit(f"upload failed: {response.status_code} {response.text[:300]}")
        status_url = url + response.json()["status_url"]
        while True:
            job = session.get(status_url, headers=headers, timeout=30).json()
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        finished.append(time.perf_counter() - t0)
        modes.append(f"{job['mode']}:{job['status']}")
    return {"cards": cards, "upload_mb": size / 1e6, "accepted_ms": accepted,
            "finished_s": finished, "modes": sorted(set(modes))}


# --------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """start_with_celery.py on a private instance folder and a free port."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = "bench-password-1"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("REDIS_", "CELERY_", "JWT_", "ADMIN_", "GUNICORN_"))}
        env.update(PORT=str(self.port), HOST="127.0.0.1", INSTANCE_PATH=str(workdir / "instance"),
                   ADMIN_USERNAME="bench", ADMIN_PASSWORD=self.password, APP_ENV="development",
                   LOG_LEVEL="WARNING")
        self.log = open(workdir / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "start_with_celery.py")],
                                     cwd=workdir, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            try:
                body = requests.get(self.url + "/api/celery/health", timeout=2).json()
                if body["workers"]["running"] == body["workers"]["expected"] > 0:
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.3)
        raise SystemExit("server did not become healthy")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self.log.close()


# --------------------------------------------------------------------------- report

def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--username", default="bench")
    parser.add_argument("--password")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rates", default="200,1000",
                        help="comma list of total requests/s for fixed-rate runs ('' skips)")
    parser.add_argument("--cards", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=5)
    args = parser.parse_args(argv)

    server = None
    workdir = tempfile.TemporaryDirectory(prefix="scm-bench-http-")
    try:
        if args.url:
            url, password = args.url.rstrip("/"), args.password
        else:
            server = LocalServer(Path(workdir.name))
            server.wait_ready()
            url, password = server.url, server.password
        print(f"target {url}; {os.cpu_count()} CPUs shared by server and load generator\n")

        rows = [("run", "connections", "requests", "req/s", "p50 ms", "p99 ms", "max ms",
                 "errors")]
        runs = [("health, closed loop", None)]
        for rate in (float(r) for r in args.rates.split(",") if r.strip()):
            runs.append((f"health, fixed {rate:.0f} req/s", rate))
        for label, rate in runs:
            result = load(url, "/api/celery/health", args.connections, args.duration, rate)
            rows.append((label, str(args.connections), str(result["requests"]),
                         f"{result['rps']:.0f}", f"{result['p50_ms']:.2f}",
                         f"{result['p99_ms']:.2f}", f"{result['max_ms']:.1f}",
                         f"{result['errors']} {','.join(result['error_kinds'])}".strip()))
        print(table(rows))

        if password and args.cards:
            up = uploads(url, args.username, password, args.cards, args.uploads)
            accepted = sorted(up["accepted_ms"])
            finished = sorted(up["finished_s"])
            print()
            print(table([
                ("job submission", "cards", "upload MB", "202 p50 ms", "202 max ms",
                 "done p50 s", "done max s", "mode"),
                (f"POST /api/jobs/sheets x{len(accepted)}", str(up["cards"]),
                 f"{up['upload_mb']:.1f}", f"{statistics.median(accepted) * 1000:.0f}",
                 f"{accepted[-1] * 1000:.0f}", f"{statistics.median(finished):.1f}",
                 f"{finished[-1]:.1f}", ",".join(up["modes"])),
            ]))
    except BaseException:
        if server is not None:  # the server's side of the story
            log = Path(workdir.name) / "server.log"
            print("--- server log (tail) ---\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise
    finally:
        if server is not None:
            code = server.stop()
            print(f"\nserver stopped with exit code {code}")
        workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
