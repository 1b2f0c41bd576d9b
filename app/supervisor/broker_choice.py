"""Which broker the workers use: the configured one, the embedded Redis, or none
(then every job runs in the thread fallback, and this says why)."""
from __future__ import annotations

import logging

from app.settings import Settings
from app.supervisor.redis_server import EmbeddedRedis

log = logging.getLogger(__name__)

REDIS_BOOT_TIMEOUT = 10.0


class BrokerChoice:
    def __init__(self, settings: Settings):
        # A manager built without load_settings (create_app(settings)) checks too: better
        # one SettingsError now than workers crash-looping while jobs run in threads.
        settings.require_client_libraries()
        self.embedded = EmbeddedRedis(settings) if settings.wants_embedded_redis else None
        self.threads_reason: str | None = None
        if self.embedded is not None and not self.embedded.available:
            self.threads_reason = self.embedded.why_unavailable()
            self.broker_url = None
        elif self.embedded is not None:
            self.broker_url = self.embedded.url
        else:
            self.broker_url = settings.broker_url
            if self.broker_url is None:
                self.threads_reason = ("no broker is configured (REDIS_URL, REDIS_HOST or "
                                       "CELERY_BROKER_URL) and EMBEDDED_REDIS is off")
        self.result_backend = settings.result_backend if self.broker_url else None

    @property
    def runs_redis(self) -> bool:
        return self.embedded is not None and self.embedded.available

    def redis_answers(self) -> bool:
        return self.embedded is not None and self.embedded.answers(timeout=0.05)

    def boot(self, fleet, publish) -> None:
        """(Manager thread) Start the embedded Redis and wait until it answers."""
        embedded = self.embedded
        if embedded is None or not embedded.available:  # not runs_redis
            return
        slot = fleet.add_redis()
        fleet.spawn(slot, "boot")
        publish()
        if slot.alive and embedded.wait_ready(slot.process, REDIS_BOOT_TIMEOUT):
            fleet.mark_ready(slot)
            log.info("embedded Redis runs on %s", embedded.socket_path)
        else:
            log.error("embedded Redis did not start: %s",
                      embedded.log.tail(10) or "(no output)")
