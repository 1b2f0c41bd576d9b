"""The Celery application's configuration, built from `Settings` (no task bodies here).

`celery_app.py` (what workers load) and the web side's dispatcher both call
`make_celery`. They differ only in `role`: the web side ("client") gets short socket
timeouts and a tiny publish retry so a dead or frozen broker can never hang an HTTP
request; workers ("worker") get patient ones so a slow Redis does not drop consumers.
"""
from __future__ import annotations

import re

from celery import Celery
from kombu import Exchange, Queue

from app.queue_names import KNOWN_QUEUES
from app.settings import Settings, SettingsError
from app.transports import has_broadcast

TASK_GENERATE = "scm.generate_sheets"
TASK_OFFSET = "scm.offset_sheets"
TASK_CALIBRATION = "scm.calibration_sheet"
TASK_HEALTH = "scm.health_check"
TASK_CLEANUP = "scm.cleanup_outputs"

QUEUE_FOR_TASK = {
    TASK_GENERATE: "pdf_generation",
    TASK_OFFSET: "pdf_offset",
    TASK_CALIBRATION: "default",
    TASK_HEALTH: "default",
    TASK_CLEANUP: "default",
}
TASK_FOR_KIND = {
    "sheets": TASK_GENERATE,
    "offset": TASK_OFFSET,
    "calibration": TASK_CALIBRATION,
}
QUEUE_FOR_KIND = {kind: QUEUE_FOR_TASK[task] for kind, task in TASK_FOR_KIND.items()}

# Operators write rate limits with the short task name ("generate_sheets=10/m").
SHORT_TASK_NAMES = {name.split(".", 1)[1]: name for name in QUEUE_FOR_TASK}

# Publishing from the web side: one quick retry covers a stale pooled connection right
# after Redis came back; anything longer belongs to the thread fallback, not to a request.
CLIENT_PUBLISH_RETRY_POLICY = {
    "max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
}

_RATE_RE = re.compile(r"^\d+(\.\d+)?/[smh]$")


def parse_rate_limits(text: str | None) -> dict[str, str]:
    """`"generate_sheets=10/m, offset_sheets=30/m"` -> {full task name: "10/m"}.

    Raises SettingsError naming the bad part, so a typo stops the start instead of being
    silently ignored by Celery.
    """
    limits: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, rate = part.partition("=")
        name, rate = name.strip(), rate.strip()
        if not sep or not name or not rate:
            raise SettingsError(
                f"CELERY_TASK_RATE_LIMITS: {part!r} is not NAME=RATE (e.g. generate_sheets=10/m)")
        full = SHORT_TASK_NAMES.get(name) or (name if name in QUEUE_FOR_TASK else None)
        if full is None:
            raise SettingsError(
                f"CELERY_TASK_RATE_LIMITS: unknown task {name!r}; known: "
                f"{', '.join(sorted(SHORT_TASK_NAMES))}")
        if not _RATE_RE.match(rate):
            raise SettingsError(
                f"CELERY_TASK_RATE_LIMITS: rate {rate!r} for {name} must look like 10/m, 2/s or 100/h")
        limits[full] = rate
    return limits


def _transport_options(settings: Settings, role: str) -> dict:
    """Our defaults, then the operator's CELERY_BROKER_TRANSPORT_OPTIONS over them."""
    client = role == "client"
    defaults = {
        # Same value for broker and result backend: Celery reads it in both places and
        # a mismatch makes one side redeliver while the other still counts it running.
        "visibility_timeout": settings.visibility_timeout,
        "socket_connect_timeout": 1.0 if client else 5.0,
        # A frozen Redis (SIGSTOP, half-open TCP) must not block forever.
        "socket_timeout": 2.0 if client else 15.0,
        "socket_keepalive": True,
        "retry_on_timeout": False,
        "health_check_interval": 10,
        # Messages of a killed worker come back faster than the 10 x 10 s default; the
        # manager still re-dispatches them itself (the visibility timeout stays long).
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
    }
    return {**defaults, **settings.CELERY_BROKER_TRANSPORT_OPTIONS}


def _result_backend_options(settings: Settings, role: str) -> dict:
    """Our defaults, then CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS over them."""
    client = role == "client"
    defaults = {
        "visibility_timeout": settings.visibility_timeout,
        "retry_policy": {"max_retries": 1 if client else 5, "interval_start": 0,
                         "interval_step": 0.2, "interval_max": 1},
    }
    return {**defaults, **settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS}


def make_celery(settings: Settings, *, role: str = "worker") -> Celery:
    """A configured Celery app. `role` is "worker" (celery_app.py) or "client" (web side)."""
    if role not in ("worker", "client"):
        raise ValueError(f"role must be 'worker' or 'client', not {role!r}")
    rate_limits = parse_rate_limits(settings.CELERY_TASK_RATE_LIMITS)
    client = role == "client"

    # No broker at all means thread mode only; memory:// keeps Celery from dialling the
    # amqp://localhost default if something publishes by mistake.
    broker = settings.broker_url or "memory://"
    app = Celery("silhouette_card_maker", broker=broker,
                 backend=settings.result_backend, set_as_current=False)

    # CELERY_QUEUE_PREFIX names everything this deployment owns on the broker: its task
    # exchange and queues, and its control and event exchanges (broadcasts such as pings
    # and pidbox queues `<node>.<prefix>celery.pidbox`), so deployments sharing a
    # broker or vhost never see each other.
    prefix = settings.CELERY_QUEUE_PREFIX
    on_broker = settings.broker_queue
    exchange = Exchange(f"{prefix}scm", type="direct")
    queues = [Queue(on_broker(name), exchange, routing_key=on_broker(name))
              for name in KNOWN_QUEUES]
    transport = _transport_options(settings, role)

    app.conf.update(
        # Serialisation: JSON only; pickle would turn a broker into a code-execution path.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Queues and routes.
        task_queues=queues,
        task_default_queue=on_broker("default"),
        task_default_exchange=exchange.name,
        task_default_exchange_type="direct",
        task_default_routing_key=on_broker("default"),
        task_routes={name: {"queue": on_broker(queue), "routing_key": on_broker(queue)}
                     for name, queue in QUEUE_FOR_TASK.items()},
        control_exchange=f"{prefix}celery",
        event_exchange=f"{prefix}celeryev",
        task_annotations={name: {"rate_limit": rate} for name, rate in rate_limits.items()}
        or None,
        # Delivery: a task interrupted by a dying worker is redelivered, never lost;
        # tasks are idempotent per job id so redelivery is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Keep working when the broker blips; the job store makes redelivery harmless.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_track_started=True,
        # Limits.
        task_time_limit=settings.CELERY_WORKER_TIMEOUT,
        task_soft_time_limit=settings.soft_time_limit,
        worker_max_tasks_per_child=1000,
        worker_max_memory_per_child=settings.CELERY_MAX_MEMORY_MB * 1024,  # KiB
        # Broker connection.
        broker_transport_options=transport,
        result_backend_transport_options=_result_backend_options(settings, role),
        # Without broadcast (SQS) each worker also consumes a queue of its own, where the
        # manager's canary health checks go (app/broker/canary.py).
        worker_direct=not has_broadcast(broker),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0 if client else 4.0,
        # Workers reconnect forever (an outage must not make them exit); the web side
        # gives up at once and falls back to threads.
        broker_connection_max_retries=1 if client else None,
        redis_socket_connect_timeout=1.0 if client else 5.0,
        redis_socket_timeout=2.0 if client else 15.0,
        redis_retry_on_timeout=False,
        redis_backend_health_check_interval=10,
        # Results: only progress and a small summary; the job store is the record.
        result_expires=max(3600, int(settings.OUTPUT_RETENTION_HOURS * 3600)),
        result_extended=False,
        # Events for Flower and `celery inspect`.
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=True,
        timezone="UTC",
        enable_utc=True,
    )
    if client:
        app.conf.task_publish_retry_policy = CLIENT_PUBLISH_RETRY_POLICY
    return app
