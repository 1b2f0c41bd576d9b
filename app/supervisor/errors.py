"""Errors the manager's surface raises; the HTTP layer maps `http_status` and `code` 1:1."""
from __future__ import annotations

from app.broker.errors import BROKER_ERRORS, BrokerUnavailable, ControlError

__all__ = [
    "BROKER_ERRORS",
    "BrokerUnavailable",
    "InvalidRequest",
    "ManagerUnavailable",
    "SupervisorError",
]

# One base for the broker's and the manager's errors (the API maps both the same way).
SupervisorError = ControlError


class InvalidRequest(SupervisorError):
    """A caller asked for something impossible (unknown queue, bad concurrency)."""
    http_status = 400
    code = "invalid_request"


class NotFound(SupervisorError):
    """The caller named something the manager does not have (a worker, its log)."""
    http_status = 404
    code = "not_found"


class ManagerUnavailable(SupervisorError):
    """No manager runs for this instance folder (START_CELERY_WORKER is off or it died)."""
    http_status = 503
    code = "manager_unavailable"
