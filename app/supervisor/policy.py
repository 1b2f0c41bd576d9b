"""When to restart a worker that went away, and when to stop trying.

Pure: timestamps in, decisions out. No sleeping, no clock of its own, so the
tests drive it with a fake clock.

Rules (DESIGN.md, "Restarts"):
- the first unplanned exit in the window restarts at once;
- each further one waits ``base_delay * 2**(n-1)`` (capped), plus up to
  ``jitter`` of that so a fleet of managers does not retry in lockstep;
- more than ``max_restarts`` restarts inside ``window`` seconds: give up (FAILED);
- only deaths that `count` (the worker died before it had been healthy for a while:
  a crash loop) enter the window; a worker that was serving and got killed restarts
  after ``base_delay``, however often (supervisord's ``startsecs``);
- FAILED is retried after ``retry_after * 2**(failures-1)`` (capped at ``retry_max``).
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

RESTART: Final = "restart"
GIVE_UP: Final = "give_up"


@dataclass(frozen=True)
class Decision:
    action: Literal["restart", "give_up"]
    delay: float = 0.0          # seconds from `now` until the restart
    restarts_in_window: int = 0  # restarts already made inside the window, this one excluded

    @property
    def gives_up(self) -> bool:
        return self.action == GIVE_UP


class RestartPolicy:
    def __init__(self, max_restarts: int, window: float, base_delay: float, *,
                 max_delay: float = 60.0, jitter: float = 0.1,
                 retry_after: float = 60.0, retry_max: float = 1800.0,
                 rand: Callable[[], float] = random.random):
        if max_restarts < 0 or window <= 0 or base_delay < 0 or jitter < 0:
            raise ValueError("restart policy parameters must be positive")
        self.max_restarts = max_restarts
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max(max_delay, base_delay)
        self.jitter = jitter
        self.retry_after = retry_after
        self.retry_max = max(retry_max, retry_after)
        self._rand = rand
        self._restarts: deque[float] = deque()

    def restarts_in_window(self, now: float) -> int:
        self._forget_before(now - self.window)
        return len(self._restarts)

    def on_exit(self, now: float, *, counts: bool = True) -> Decision:
        """An unplanned exit happened at `now`: restart (after `delay`) or give up.

        A "restart" decision for a death that `counts` is recorded at `now`.
        """
        done = self.restarts_in_window(now)
        if not counts:
            return Decision(RESTART, self.base_delay, done)
        if done >= self.max_restarts:
            return Decision(GIVE_UP, 0.0, done)
        self._restarts.append(now)
        return Decision(RESTART, self.delay_for(done), done)

    def delay_for(self, restarts_done: int) -> float:
        """Backoff before the restart that follows `restarts_done` recent ones."""
        if restarts_done <= 0 or self.base_delay == 0:
            return 0.0
        delay = min(self.max_delay, self.base_delay * 2 ** (restarts_done - 1))
        # Jitter only ever adds, so successive delays still grow.
        return delay + delay * self.jitter * self._rand()

    def cool_down(self, failures: int) -> float:
        """How long FAILED waits before its next try, after `failures` in a row."""
        return min(self.retry_max, self.retry_after * 2 ** max(0, failures - 1))

    def reset(self) -> None:
        """An operator started or restarted the worker: forget its history."""
        self._restarts.clear()

    def _forget_before(self, horizon: float) -> None:
        while self._restarts and self._restarts[0] <= horizon:
            self._restarts.popleft()
