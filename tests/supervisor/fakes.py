"""Stand-ins for the manager's seams (process factory, clock) in tests without children."""
from __future__ import annotations

import itertools
import time

from app.supervisor.fleet import Fleet
from app.supervisor.pidfile import StateFile
from app.supervisor.plan import WorkerPlan
from app.supervisor.process import ExitInfo

_pids = itertools.count(900_000)


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeProcess:
    """What the fleet uses of a WorkerProcess; `die()` makes the next reap see an exit."""

    def __init__(self, name, argv, *, env, cwd, log, fail_at_start=None, stable_cmdline=True):
        self.name, self.argv, self.log = name, argv, log
        self.pid = None
        self.pidfd = None
        self.started_at = None
        self.exit = None
        self._exited = False
        self.signals: list[int] = []

    @property
    def alive(self) -> bool:
        return self.pid is not None and self.exit is None

    def spawn(self) -> int:
        self.pid = next(_pids)
        self.started_at = time.time()
        return self.pid

    def die(self, code: int = 1) -> None:
        self._exited = True
        self._code = code

    def has_exited(self) -> bool:
        return self._exited

    def reap(self):
        if self.exit is None and self._exited:
            self.exit = ExitInfo.from_returncode(self._code)
        return self.exit

    def signal(self, sig: int) -> None:
        self.signals.append(sig)

    signal_group = signal

    def uptime(self) -> float:
        return 0.0 if self.started_at is None else time.time() - self.started_at

    def stats(self):
        return None

    def record(self) -> dict:
        return {"name": self.name, "pid": self.pid}


class _FakeEmbedded:
    def make_process(self, env, cwd, *, factory):
        return factory("redis", ["redis-server"], env=env, cwd=cwd, log=_NullLog())


class _NullLog:
    path = "/dev/null"

    def write_line(self, text: str) -> None:
        pass

    def tail(self, lines: int) -> str:
        return ""

    def rotate_if_needed(self) -> None:
        pass


def fleet_for(settings, *, factory=None):
    """(fleet, clock, processes made) for a fleet whose children are FakeProcesses."""
    made: list[FakeProcess] = []

    def recording(*args, **kwargs):
        proc = FakeProcess(*args, **kwargs)
        made.append(proc)
        return proc
    settings.ensure_dirs()
    clock = FakeClock()
    plan = WorkerPlan(settings, worker_app="tests.supervisor.worker_app", broker_url=None,
                      result_backend=None, embedded=_FakeEmbedded(),
                      process_factory=factory or recording)
    fleet = Fleet(settings, plan, clock=clock,
                  state_file=StateFile(settings.run_dir / "children.json"),
                  broker_up=lambda: True)
    return fleet, clock, made
