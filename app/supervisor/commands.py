"""The operator's commands, as the manager thread runs them: boot, start, stop, restart,
shutdown. Each acts on the fleet and answers at once or with a `Pending`."""
from __future__ import annotations

import logging

from app.queue_names import split_concurrency
from app.settings import Settings
from app.supervisor.broker_choice import BrokerChoice
from app.supervisor.fleet import KILL_WAIT, QUIT_GRACE, Fleet
from app.supervisor.loop import Pending
from app.supervisor.pidfile import stop_stale
from app.supervisor.worker_slot import STOPPED, STOPPING

log = logging.getLogger(__name__)


class FleetCommands:
    def __init__(self, settings: Settings, fleet: Fleet, broker: BrokerChoice, *,
                 request_exit):
        self.settings = settings
        self.fleet = fleet
        self.broker = broker
        self.request_exit = request_exit   # ends the manager loop

    @property
    def stop_timeout(self) -> float:
        return self.settings.CELERY_STOP_TIMEOUT

    def boot(self, publish) -> None:
        fleet = self.fleet
        stale = stop_stale(fleet.state_file.load())
        if stale:
            log.warning("stopped %d stale process(es) of a previous run", len(stale))
        fleet.state_file.clear()
        self.broker.boot(fleet, publish)
        for queue, size in split_concurrency(fleet.concurrency, fleet.weights).items():
            fleet.slots[queue] = fleet.new_slot(queue, size)
        if self.settings.START_CELERY_WORKER and self.broker.broker_url:
            fleet.wanted = True
            for slot in fleet.slots.values():
                fleet.spawn(slot, "boot")

    def start(self, concurrency: int | None, weights: dict[str, int] | None) -> None:
        fleet = self.fleet
        if concurrency is not None:
            fleet.concurrency = concurrency
        if weights is not None:
            fleet.weights = weights
        fleet.wanted = True
        sizes = split_concurrency(fleet.concurrency, fleet.weights)
        for queue, slot in list(fleet.slots.items()):
            if queue not in sizes:
                if slot.alive:
                    fleet.begin_stop(slot, "remove", self.stop_timeout)
                else:
                    del fleet.slots[queue]
        for queue, size in sizes.items():
            if queue not in fleet.slots:
                fleet.slots[queue] = fleet.new_slot(queue, size)
            slot = fleet.slots[queue]
            resized = slot.pool_size != size
            slot.pool_size = size
            slot.clear_failures()
            if slot.state == STOPPING:
                slot.after_stop = "restart"   # one being removed or stopped is wanted again
                slot.pending_delay = 0.0
            elif slot.alive and resized:
                fleet.begin_stop(slot, "restart", self.stop_timeout)
            elif not slot.alive:
                fleet.spawn(slot, "start")

    def stop(self, timeout: float) -> Pending:
        fleet = self.fleet
        fleet.wanted = False
        for slot in fleet.slots.values():
            if not slot.alive:
                slot.move("stopped")
            elif slot.state != STOPPING:
                fleet.begin_stop(slot, STOPPED, timeout)
            else:
                slot.after_stop = STOPPED
        return Pending(done=lambda: not any(s.alive for s in fleet.slots.values()),
                       result=lambda: None,
                       deadline=fleet.clock() + timeout + QUIT_GRACE + KILL_WAIT)

    def restart(self, queue: str | None) -> Pending:
        fleet = self.fleet
        fleet.wanted = True
        targets = [fleet.slots[queue]] if queue else list(fleet.slots.values())
        for slot in targets:
            slot.clear_failures()
            fleet.count_manual(slot)
            if not slot.alive:
                fleet.spawn(slot, "manual restart")
                continue
            if slot.state == STOPPING:
                slot.after_stop = "restart"
            else:
                fleet.begin_stop(slot, "restart", self.stop_timeout)
            slot.pending_delay = 0.0
        return Pending(done=lambda: all(s.state != STOPPING for s in targets),
                       result=lambda: None,
                       deadline=fleet.clock() + self.stop_timeout + QUIT_GRACE + KILL_WAIT)

    def shutdown(self, timeout: float) -> Pending:
        fleet = self.fleet
        fleet.shutting_down = True
        fleet.wanted = False
        for slot in fleet.slots.values():
            if slot.alive:
                fleet.begin_stop(slot, STOPPED, timeout)
            else:
                slot.move("stopped")

        def finished() -> bool:
            if any(s.alive for s in fleet.slots.values()):
                return False
            redis = fleet.redis
            if redis is not None and redis.alive:
                # Workers first, so none logs a storm of connection errors; Redis gets a
                # SIGTERM to flush its append-only file.
                if redis.state != STOPPING:
                    fleet.begin_stop(redis, STOPPED, 5.0)
                return False
            self.request_exit()
            return True

        def give_up() -> None:
            fleet.kill_all()
            self.request_exit()
        return Pending(done=finished, result=give_up,
                       deadline=fleet.clock() + timeout + QUIT_GRACE + KILL_WAIT + 10)

