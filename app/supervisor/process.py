"""WorkerProcess: exactly one child process, from spawn to reap.

Spawns through the exec shim (parent-death signal, own session/process
group), sends signals to the child or its whole group, reaps it, measures it
with psutil and keeps its log file. It makes no decisions: the manager does.

Every method that forks, signals or reaps must be called from the manager's
thread (DESIGN.md, "Threads").
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.supervisor import shim
from app.supervisor.logfile import LogFile

SHIM_PATH = str(Path(shim.__file__).resolve())


@dataclass(frozen=True)
class ExitInfo:
    code: int | None      # exit status, when it exited by itself
    signal: int | None    # the signal that killed it, otherwise
    time: float           # wall clock

    @classmethod
    def from_returncode(cls, returncode: int, when: float | None = None) -> ExitInfo:
        when = time.time() if when is None else when
        if returncode < 0:
            return cls(None, -returncode, when)
        return cls(returncode, None, when)

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)}"
        return f"exited with code {self.code}"

    def as_dict(self) -> dict:
        return {"code": self.code,
                "signal": signal_name(self.signal) if self.signal is not None else None,
                "time": self.time}


@dataclass(frozen=True)
class ProcessStats:
    cpu_percent: float   # whole tree, percent of one core
    rss_bytes: int       # main process resident set
    memory_bytes: int    # whole tree, PSS (USS, then RSS, where PSS is unavailable)
    processes: int
    biggest_pid: int | None = None   # the pool child (else main) with the largest share


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerProcess:
    """One child: `argv` started through the shim with `env` in `cwd`, output to `log`."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path,
                 log: LogFile, fail_at_start: tuple[int, str] | None = None,
                 stable_cmdline: bool = True):
        self.name = name
        # False for programs that rewrite their argv (redis-server): the state file then
        # identifies them by pid, create time and executable only.
        self.stable_cmdline = stable_cmdline
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = Path(cwd)
        self.log = log
        self.fail_at_start = fail_at_start
        self.popen: subprocess.Popen | None = None
        self.pidfd: int | None = None
        self.create_time: float | None = None
        self.started_at: float | None = None       # wall clock
        self.started_mono: float | None = None     # monotonic, for uptime
        self.exit: ExitInfo | None = None
        self._ps: dict[int, psutil.Process] = {}   # kept so cpu_percent has a baseline

    # --- lifecycle --------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self._running() is not None

    def _running(self) -> subprocess.Popen | None:
        """The child while it is alive: spawned and not yet reaped."""
        return self.popen if self.exit is None else None

    def shim_argv(self) -> list[str]:
        command = [sys.executable, "-S", "-I", SHIM_PATH, "--parent", str(os.getpid())]
        if self.fail_at_start:
            code, message = self.fail_at_start
            command += ["--fail-exit", str(code), "--fail-message", message]
        return [*command, "--", *self.argv]

    def spawn(self) -> int:
        assert self.popen is None, "a WorkerProcess owns one child; make a new one to restart"
        log_fd = self.log.open_for_child()
        try:
            self.popen = subprocess.Popen(
                self.shim_argv(), cwd=self.cwd, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                close_fds=True, start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        try:
            self.create_time = psutil.Process(self.popen.pid).create_time()
        except psutil.Error:
            self.create_time = None
        self.pidfd = _pidfd_open(self.popen.pid)
        return self.popen.pid

    def has_exited(self) -> bool:
        """Whether the child has exited, without reaping it (its pid stays reserved)."""
        if self.popen is None or self.exit is not None:
            return self.exit is not None
        if self.popen.returncode is not None:
            return True
        try:
            result = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return result is not None

    def reap(self) -> ExitInfo | None:
        """If the child exited: kill what is left of its group, reap it, return how it ended."""
        if self.exit is not None:
            return self.exit
        if self.popen is None or not self.has_exited():
            return None
        # The main pid is a zombie until reaped, so its group id cannot have been
        # reused: killing the group now only hits our own stragglers.
        self._kill_group(signal.SIGKILL)
        returncode = self.popen.poll()
        if returncode is None:  # reaped elsewhere; the status is lost
            returncode = -signal.SIGKILL
        self.exit = ExitInfo.from_returncode(returncode)
        self._close_pidfd()
        self._ps.clear()
        return self.exit

    def signal(self, sig: int) -> None:
        """Signal the main process only (Celery's warm/cold shutdown is handled there)."""
        popen = self._running()
        if popen is not None:
            try:
                os.kill(popen.pid, sig)
            except ProcessLookupError:
                pass

    def signal_group(self, sig: int) -> None:
        if self.alive:
            self._kill_group(sig)

    def uptime(self) -> float:
        if self.started_mono is None or self.exit is not None:
            return 0.0
        return time.monotonic() - self.started_mono

    def record(self) -> dict:
        """What the state file keeps to recognise this child after a crash of the manager."""
        return {"name": self.name, "pid": self.pid, "create_time": self.create_time,
                "cmdline": self.argv, "shim_cmdline": self.shim_argv(),
                "exe": _real_executable(self.argv[0]) if self.argv else None,
                "shim_exe": _real_executable(sys.executable),
                "cmdline_stable": self.stable_cmdline}

    # --- measurement --------------------------------------------------------
    def stats(self) -> ProcessStats | None:
        popen = self._running()
        if popen is None:
            return None
        try:
            main = self._cached(popen.pid)
            tree = [main] + [self._cached(child.pid) for child in main.children(recursive=True)]
        except psutil.Error:
            return None
        cpu = 0.0
        memory = 0
        rss = 0
        counted = 0
        biggest: tuple[int, int | None] = (-1, None)
        for proc in tree:
            try:
                cpu += proc.cpu_percent(None)
                share = _tree_share(proc)
                memory += share
                if proc is main:
                    rss = proc.memory_info().rss
                # The main process only when it is alone: in a prefork pool, jobs run
                # in the children, and the one using most is where the job to blame runs.
                if proc is not main or len(tree) == 1:
                    biggest = max(biggest, (share, proc.pid), key=lambda pair: pair[0])
                counted += 1
            except psutil.Error:
                continue
        live = {proc.pid for proc in tree}
        for pid in list(self._ps):
            if pid not in live:
                del self._ps[pid]
        return ProcessStats(round(cpu, 1), rss, memory, counted, biggest[1])

    # --- internals ----------------------------------------------------------
    def _cached(self, pid: int) -> psutil.Process:
        proc = self._ps.get(pid)
        if proc is None:
            proc = self._ps[pid] = psutil.Process(pid)
        return proc

    def _kill_group(self, sig: int) -> None:
        if self.popen is None:  # never spawned: no group
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def __del__(self):
        fd = getattr(self, "pidfd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _real_executable(program: str) -> str | None:
    """The resolved path of `program` (as /proc/PID/exe will show it), or None."""
    path = program if os.sep in program else shutil.which(program)
    if not path:
        return None
    return os.path.realpath(path)


def _tree_share(proc: psutil.Process) -> int:
    """This process's fair share of memory: PSS splits pages shared with prefork siblings."""
    try:
        full = proc.memory_full_info()
        return getattr(full, "pss", None) or full.uss
    except (psutil.AccessDenied, AttributeError, NotImplementedError):
        return proc.memory_info().rss


def _pidfd_open(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None
