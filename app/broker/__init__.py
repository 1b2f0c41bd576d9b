"""The broker, as both the jobs side and the supervisor see it: reachability (one
monitor per process), remote control of workers, and reads of its queues."""
from __future__ import annotations

from app.broker.client import BrokerClient
from app.broker.errors import BROKER_ERRORS, BrokerUnavailable, ControlError
from app.broker.monitor import BrokerMonitor, is_redis_url, monitor_for

__all__ = ["BrokerClient", "BrokerMonitor", "BrokerUnavailable", "BROKER_ERRORS",
           "ControlError", "is_redis_url", "monitor_for"]
