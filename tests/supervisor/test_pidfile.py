"""The state file and the stale-process sweep at boot."""
from __future__ import annotations

import os
import subprocess
import sys

import psutil

from app.supervisor.pidfile import StateFile, matching_process, stop_stale


def start_orphan_like(tmp_path) -> subprocess.Popen:
    """A process in its own session, as a worker of a crashed manager would be."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)


def entry_for(proc: subprocess.Popen, **overrides) -> dict:
    ps = psutil.Process(proc.pid)
    entry = {"name": "default@test", "pid": proc.pid, "create_time": ps.create_time(),
             "cmdline": proc.args, "shim_cmdline": ["not", "this"]}
    entry.update(overrides)
    return entry


def test_save_and_load_round_trip(tmp_path):
    state = StateFile(tmp_path / "run" / "children.json")
    assert state.load() == []
    state.save([{"name": "a", "pid": 1}])
    assert state.load() == [{"name": "a", "pid": 1}]
    assert oct(os.stat(state.path).st_mode & 0o777) == "0o600"
    state.clear()
    assert state.load() == []


def test_garbage_state_file_is_ignored(tmp_path):
    path = tmp_path / "children.json"
    path.write_text("{not json")
    assert StateFile(path).load() == []


def test_stale_process_that_matches_is_stopped(tmp_path, no_leftovers):
    proc = start_orphan_like(tmp_path)
    psutil.Process(proc.pid).cmdline()
    found = stop_stale([entry_for(proc)], timeout=5)
    assert [e["pid"] for e in found] == [proc.pid]
    assert proc.wait(5) is not None


def test_reused_pid_is_left_alone(tmp_path, no_leftovers):
    proc = start_orphan_like(tmp_path)
    try:
        other_time = entry_for(proc, create_time=psutil.Process(proc.pid).create_time() - 100)
        other_cmd = entry_for(proc, cmdline=["python", "something-else"])
        assert matching_process(other_time) is None
        assert matching_process(other_cmd) is None
        assert stop_stale([other_time, other_cmd], timeout=1) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_gone_process_is_ignored(tmp_path):
    assert stop_stale([{"name": "x", "pid": 2 ** 22 - 3, "create_time": 1.0,
                        "cmdline": ["nothing"]}]) == []
