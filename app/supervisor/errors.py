"""Errors the manager's surface raises; the HTTP layer maps `http_status` and `code` 1:1."""
from __future__ import annotations

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a broker outage looks like when it escapes kombu's or redis-py's own handling.
BROKER_ERRORS: tuple[type[Exception], ...] = (OperationalError, RedisConnectionError,
                                               RedisTimeoutError)


class SupervisorError(Exception):
    http_status = 500
    code = "supervisor_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(SupervisorError):
    """A caller asked for something impossible (unknown queue, bad concurrency)."""
    http_status = 400
    code = "invalid_request"


class NotFound(SupervisorError):
    """The caller named something the manager does not have (a worker, its log)."""
    http_status = 404
    code = "not_found"


class BrokerUnavailable(SupervisorError):
    """The broker did not answer; inspect/purge cannot be served right now."""
    http_status = 503
    code = "broker_unavailable"


class ManagerUnavailable(SupervisorError):
    """No manager runs for this instance folder (START_CELERY_WORKER is off or it died)."""
    http_status = 503
    code = "manager_unavailable"
