"""Errors of the worker-control surface (broker and manager), mapped 1:1 to HTTP.

The base lives here, below both `app.jobs` and `app.supervisor`, so the broker
package raises the same `BrokerUnavailable` the admin API maps to a 503.
"""
from __future__ import annotations

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a broker outage looks like when it escapes kombu's or redis-py's own handling.
BROKER_ERRORS: tuple[type[Exception], ...] = (OperationalError, RedisConnectionError,
                                               RedisTimeoutError)


class ControlError(Exception):
    http_status = 500
    code = "supervisor_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BrokerUnavailable(ControlError):
    """The broker did not answer; inspect/purge/queue reads cannot be served right now."""
    http_status = 503
    code = "broker_unavailable"
