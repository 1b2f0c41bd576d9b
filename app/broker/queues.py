"""Reading and changing queues on the broker's own data (kombu's Redis layout).

Plain functions over a kombu channel (or a Celery app), shared by the supervisor
(depths, purge, restore of a dead worker's unacked messages) and the jobs
reconciler (which messages wait, taking one back).
"""
from __future__ import annotations

import base64
import json
import logging

log = logging.getLogger(__name__)

PRIORITY_STEPS = (0, 3, 6, 9)   # kombu's default; each step is its own Redis list
PRIORITY_SEP = "\x06\x16"


def queue_size(channel, name: str) -> int:
    # kombu's Redis channel: LLEN over the queue's priority lists (and any key prefix).
    return int(channel._size(name))


def passive_queue_size(connection, name: str) -> int:
    """Ready messages in `name` on AMQP: a passive queue_declare answers with the count
    (no management plugin). A queue nobody declared yet holds nothing: 0. Each query
    gets its own channel because a NOT_FOUND closes the channel it was asked on."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or "404" in str(exc):
            return 0
        raise
    finally:
        try:
            channel.close()
        except Exception:  # closed by the broker after a NOT_FOUND
            pass


def purge_queue(channel, name: str) -> int:
    try:
        return int(channel.queue_purge(name) or 0)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or "404" in str(exc):
            return 0
        raise


def restore_unacked(channel, queue: str, delivered_after: float | None,
                   delivered_before: float | None) -> int:
    client = channel.client
    index = dict(client.zrange(channel.unacked_index_key, 0, -1, withscores=True) or [])
    restored = 0
    for tag, raw in (client.hgetall(channel.unacked_key) or {}).items():
        tag = tag.decode() if isinstance(tag, bytes) else tag
        delivered = index.get(tag.encode(), index.get(tag))
        if delivered is not None and (
                (delivered_after is not None and delivered < delivered_after) or
                (delivered_before is not None and delivered > delivered_before)):
            continue
        try:
            _payload, exchange, routing_key = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if queue not in channel._lookup(exchange, routing_key):
            continue
        channel.qos.restore_by_tag(tag, client=client, leftmost=True)
        restored += 1
    if restored:
        log.info("restored %d unacked message(s) of queue %s", restored, queue)
    return restored


def priority_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def waiting_ids(celery_app, queues: list[str]) -> set[str]:
    """Task ids and job ids of the messages waiting in `queues` (Redis brokers)."""
    found: set[str] = set()
    with celery_app.connection_for_write() as conn:
        client = conn.default_channel.client
        for name in queues:
            for key in priority_keys(name):
                for raw in client.lrange(key, 0, -1):
                    found.update(message_ids(raw))
    return found


def unacked_ids(celery_app) -> set[str]:
    """Task ids and job ids of messages kombu keeps for redelivery (delivered to a
    consumer, not acknowledged yet): in the broker still, though in no queue list."""
    found: set[str] = set()
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        for raw in (channel.client.hvals(channel.unacked_key) or []):
            try:
                payload = json.loads(raw)[0]
            except (TypeError, ValueError, IndexError):
                continue
            found.update(message_ids(json.dumps(payload)))
    return found


def take_back(celery_app, queue: str, ids: set[str]) -> set[str]:
    """Remove from `queue` the waiting messages whose task or job id is in `ids`;
    returns the ids of the messages removed (LREM: a worker can no longer get them)."""
    removed: set[str] = set()
    with celery_app.connection_for_write() as conn:
        client = conn.default_channel.client
        for key in priority_keys(queue):
            for raw in client.lrange(key, 0, -1):
                found = message_ids(raw) & ids
                if found and client.lrem(key, 1, raw):
                    removed |= found
    return removed


def message_ids(raw: bytes | str) -> set[str]:
    """The task id and job id of one kombu Redis message (JSON envelope, base64 body)."""
    try:
        envelope = json.loads(raw)
    except (TypeError, ValueError):
        return set()
    ids = set()
    headers = envelope.get("headers") or {}
    if headers.get("id"):
        ids.add(str(headers["id"]))
    try:
        body = envelope.get("body") or ""
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        if args:
            ids.add(str(args[0]))
    except (TypeError, ValueError, IndexError, KeyError):
        pass
    return ids
