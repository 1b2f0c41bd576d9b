"""Queue and node names: which queues exist, how a queue list is written, and what a node
name or a queue prefix may contain (they become broker queue names and Celery node names)."""
from __future__ import annotations

import re
from typing import Literal, get_args

QueueName = Literal["pdf_generation", "pdf_offset", "default"]
KNOWN_QUEUES: tuple[str, ...] = get_args(QueueName)

# A node name goes into Celery node names (`<queue>@NODE_NAME`), runner names
# (`<node>/<pid>`) and the host registry: no `@`, `/`, spaces or control characters.
NODE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# A queue prefix becomes part of broker queue names (Redis keys, AMQP queues, SQS queues).
QUEUE_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{0,48}$")



def queue_names(queues) -> tuple[str, ...]:
    """The one queue-list parser: names (list or comma string), validated, repeats kept.

    Used by CELERY_QUEUES, the admin API's start/purge, and celery_worker.py;
    ValueError names what is wrong.
    """
    if isinstance(queues, str):
        queues = [part.strip() for part in queues.split(",") if part.strip()]
    if not isinstance(queues, (list, tuple)) or not queues or \
            not all(isinstance(q, str) for q in queues):
        raise ValueError("must name at least one queue")
    unknown = sorted(set(queues) - set(KNOWN_QUEUES))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(KNOWN_QUEUES)}")
    return tuple(queues)


def parse_queues(queues) -> dict[str, int]:
    """A queue list -> {queue: weight} (repeats are weight), in first-seen order."""
    weights: dict[str, int] = {}
    for name in queue_names(queues):
        weights[name] = weights.get(name, 0) + 1
    return weights


def split_concurrency(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Pool size per queue: proportional to weight (largest remainder), at least 1 each."""
    if not weights:
        return {}
    if total <= len(weights):
        return dict.fromkeys(weights, 1)
    weight_sum = sum(weights.values())
    ideal = {q: total * w / weight_sum for q, w in weights.items()}
    sizes = {q: max(1, int(ideal[q])) for q in weights}
    # Raising a tiny share to 1 may overshoot: take it back from the largest pools.
    while sum(sizes.values()) > total:
        biggest = max(sizes, key=lambda q: (sizes[q], -ideal[q]))
        sizes[biggest] -= 1
    by_remainder = sorted(weights, key=lambda q: ideal[q] - sizes[q], reverse=True)
    for queue in by_remainder[:total - sum(sizes.values())]:
        sizes[queue] += 1
    return sizes
