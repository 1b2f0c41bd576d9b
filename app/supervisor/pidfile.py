"""The state file: which children this manager runs, so the next boot can find leftovers.

`run/children.json` holds, per child, its pid, create time and command line.
A pid alone is not enough (pids are reused); pid + create time + cmdline
identifies one process for sure; the executable stands in for the cmdline of
programs that rewrite their argv (redis-server). Children normally die with the manager
(parent-death signal), so stale entries are rare; when one still matches a
live process, it is stopped before new children start.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CREATE_TIME_TOLERANCE = 0.05  # psutil derives create time from boot time + ticks


class StateFile:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return []
        children = data.get("children") if isinstance(data, dict) else None
        return [entry for entry in children or [] if isinstance(entry, dict)]

    def save(self, entries: list[dict]) -> None:
        """Atomically replace the file (a crash mid-write leaves the old one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        payload = {"manager_pid": os.getpid(), "written_at": time.time(), "children": entries}
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.save([])


def matching_process(entry: dict) -> psutil.Process | None:
    """The live process this entry describes, or None if it is gone or the pid was reused.

    Identity is pid + create time + executable (the recorded program, or the Python
    of the exec shim if it had not exec'd yet). The command line is a second check
    only where it is stable: redis-server rewrites its argv
    ("redis-server unixsocket:..."), so an exact match would never recognise it.
    Entries of older state files (no executable recorded) match on the cmdline.
    """
    try:
        proc = psutil.Process(int(entry["pid"]))
        recorded_time = entry.get("create_time")
        if recorded_time is not None and \
                abs(proc.create_time() - float(recorded_time)) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None
    exes = {os.path.realpath(path) for path in (entry.get("exe"), entry.get("shim_exe"))
            if isinstance(path, str) and path}
    exe_checked = False
    if exes:
        try:
            exe = proc.exe()
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:
            exe = None  # not readable here: the cmdline has to decide
        if exe:
            if os.path.realpath(exe) not in exes:
                return None
            exe_checked = True
    stable = entry.get("cmdline_stable", True)
    if stable or not exe_checked or recorded_time is None:
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            return None
        if cmdline not in (entry.get("cmdline"), entry.get("shim_cmdline")):
            return None
    return proc


def stop_stale(entries: list[dict], timeout: float = 5.0) -> list[dict]:
    """Stop every process that still matches an entry: SIGTERM its group, then SIGKILL.

    Returns the entries that were found alive (for the log and the tests).
    """
    found = []
    for entry in entries:
        proc = matching_process(entry)
        if proc is None:
            continue
        found.append(entry)
        log.warning("stopping stale %s (pid %s) left by a previous manager",
                    entry.get("name", "child"), proc.pid)
        _signal_tree(proc, signal.SIGTERM)
        try:
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for entry in found:
        proc = matching_process(entry)
        while proc is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            proc = matching_process(entry)
        if proc is not None:
            _signal_tree(proc, signal.SIGKILL)
    return found


def _signal_tree(proc: psutil.Process, sig: int) -> None:
    """The process's own group when it leads one (our children do), else the process."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, psutil.Error, PermissionError):
        pass
