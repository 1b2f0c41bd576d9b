"""What a broker transport can tell the supervisor, decided from its URL alone.

Supervision must not assume Redis (DESIGN.md, "Brokers"):
- broadcast: Celery's remote control (ping, inspect) needs a fanout exchange. kombu says
  which exchange types a transport implements; SQS has only direct, so pings and inspect
  never reach a worker there and responsiveness is judged by canary tasks instead;
- queue depth: Redis lists are counted exactly (LLEN), AMQP answers a passive
  queue_declare with the ready-message count (no management plugin needed); SQS only
  has ApproximateNumberOfMessages, eventually consistent and blind to in-flight messages,
  so it is reported as unknown (None) with `DEPTH_UNKNOWN` saying why;
- message ids: only on Redis can the waiting messages be listed (and taken back).

Nothing here connects: kombu resolves the transport class without a network call.
"""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from kombu import Connection

REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "librabbitmq")

DEPTH_UNKNOWN = {
    "sqs": "SQS reports only ApproximateNumberOfMessages (eventually consistent, blind to "
           "in-flight messages), so no exact depth is shown and stall detection is off",
    "none": "no broker is configured",
    "other": "this transport offers no way to count a queue",
}


def family(url: str | None) -> str:
    """"redis", "amqp", "sqs", "memory", "none" or "other"."""
    if not url:
        return "none"
    scheme = urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in ("sqs", "memory"):
        return scheme
    return "other"


@lru_cache(maxsize=32)
def has_broadcast(url: str | None) -> bool:
    """Whether Celery's broadcast remote control (ping, inspect) can reach workers."""
    if not url:
        return True  # nothing to supervise; keep Celery's defaults
    try:
        implements = Connection(url).transport.implements
    except Exception:  # an unknown transport: Celery will say so when it connects
        return True
    return "fanout" in (getattr(implements, "exchange_type", None) or ())


def counts_depth(url: str | None) -> bool:
    return family(url) in ("redis", "amqp")


def depth_unknown_reason(url: str | None) -> str | None:
    """None when queue depths are exact; else why they are shown as null."""
    kind = family(url)
    if kind in ("redis", "amqp", "memory"):
        return None
    return DEPTH_UNKNOWN.get(kind, DEPTH_UNKNOWN["other"])
