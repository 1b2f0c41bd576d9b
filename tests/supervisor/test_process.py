"""WorkerProcess and the exec shim, with trivial Python children (no Celery)."""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

import psutil
import pytest

from app.supervisor.logfile import LogFile
from app.supervisor.process import ExitInfo, WorkerProcess
from tests.conftest import wait_for

PY = sys.executable


def make(tmp_path, code: str, *, name="child", fail=None, log=None) -> WorkerProcess:
    return WorkerProcess(name, [PY, "-c", code], env=dict(os.environ), cwd=tmp_path,
                         log=log or LogFile(tmp_path / f"{name}.log"), fail_at_start=fail)


def reap_within(proc: WorkerProcess, timeout: float = 5.0) -> ExitInfo:
    return wait_for(proc.reap, timeout, 0.02, f"{proc.name} to exit")


def test_output_goes_to_the_log_file_and_exit_code_is_kept(tmp_path, no_leftovers):
    proc = make(tmp_path, "import sys; print('to stdout'); print('to stderr', file=sys.stderr);"
                          " sys.exit(7)")
    proc.spawn()
    info = reap_within(proc)
    assert (info.code, info.signal, info.clean) == (7, None, False)
    assert info.describe() == "exited with code 7"
    text = proc.log.path.read_text()
    assert "to stdout" in text and "to stderr" in text
    assert proc.log.tail(1) == "to stderr"
    assert not proc.alive and proc.pidfd is None


def test_child_leads_its_own_session_and_group(tmp_path, no_leftovers):
    proc = make(tmp_path, "import time; time.sleep(30)")
    pid = proc.spawn()
    wait_for(lambda: psutil.Process(pid).cmdline()[1:2] == ["-c"], 5, message="exec")
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    assert psutil.Process(pid).cmdline() == proc.argv   # the shim exec'd, same pid
    proc.signal_group(signal.SIGKILL)
    info = reap_within(proc)
    assert info.signal == signal.SIGKILL and info.describe() == "killed by SIGKILL"
    assert info.as_dict()["signal"] == "SIGKILL"


def test_signal_group_reaches_grandchildren_and_reap_cleans_the_group(tmp_path, no_leftovers):
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)")
    proc = make(tmp_path, code)
    pid = proc.spawn()
    grandchild = wait_for(lambda: psutil.Process(pid).children(), 10, message="grandchild")[0]
    os.kill(pid, signal.SIGKILL)          # only the main process dies...
    reap_within(proc)
    # ...and reaping kills what was left of its group.
    wait_for(lambda: not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE,
             5, message="grandchild gone")


def test_pidfd_becomes_readable_when_the_child_exits(tmp_path, no_leftovers):
    proc = make(tmp_path, "import time; time.sleep(0.3)")
    proc.spawn()
    if proc.pidfd is None:
        pytest.skip("no pidfd_open on this kernel")
    started = time.monotonic()
    readable, _, _ = select.select([proc.pidfd], [], [], 5)
    assert readable and time.monotonic() - started < 3
    assert proc.has_exited() and proc.alive   # seen but not reaped yet
    assert proc.reap().code == 0


def test_fault_injection_exits_before_exec_with_message_in_log(tmp_path, no_leftovers):
    proc = make(tmp_path, "print('should not run')", fail=(3, "injected failure for the test"))
    proc.spawn()
    info = reap_within(proc)
    assert info.code == 3
    assert "injected failure for the test" in proc.log.tail()
    assert "should not run" not in proc.log.path.read_text()


def test_child_dies_when_the_thread_that_forked_it_exits(tmp_path, no_leftovers):
    # The parent-death signal is tied to the forking thread: this is why only the
    # manager's long-lived thread may spawn children.
    holder = {}

    def spawn_and_leave():
        holder["proc"] = make(tmp_path, "import time; time.sleep(60)")
        pid = holder["proc"].spawn()
        # Like the manager thread, live past the exec (the shim set the signal by then).
        wait_for(lambda: psutil.Process(pid).cmdline()[1:2] == ["-c"], 5, message="exec")

    thread = threading.Thread(target=spawn_and_leave)
    thread.start()
    thread.join()
    info = reap_within(holder["proc"], 5)
    assert info.signal == signal.SIGKILL


def test_stats_cover_the_whole_tree(tmp_path, no_leftovers):
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', "
            "'b = bytearray(40 * 1024 * 1024)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
            "import time; time.sleep(60)']); time.sleep(60)")
    proc = make(tmp_path, code)
    pid = proc.spawn()
    wait_for(lambda: psutil.Process(pid).children(), 10, message="grandchild")
    stats = wait_for(lambda: (s := proc.stats()) and s.memory_bytes > 40 * 1024 * 1024 and s,
                     10, 0.1, "40 MB in the tree")
    assert stats.processes == 2
    assert stats.rss_bytes < stats.memory_bytes   # the main process alone is small
    proc.signal_group(signal.SIGKILL)
    reap_within(proc)
    assert proc.stats() is None


def test_log_rotation_while_the_child_writes(tmp_path, no_leftovers):
    log = LogFile(tmp_path / "busy.log", max_bytes=20_000, backups=2)
    code = "import time\nfor i in range(100000):\n    print('line', i, 'x' * 80, flush=True)\n    time.sleep(0.0005)"
    proc = make(tmp_path, code, log=log)
    proc.spawn()
    wait_for(lambda: log.path.stat().st_size > 20_000, 10, message="log growth")
    assert log.rotate_if_needed()
    # The backup takes whole blocks; the rest of the last one stays in the live file.
    block = log.path.stat().st_blksize
    assert (tmp_path / "busy.log.1").stat().st_size > 20_000 - block
    size_after = log.path.stat().st_size
    assert size_after < 20_000
    time.sleep(0.2)
    assert log.path.stat().st_size > size_after   # the child keeps appending
    proc.signal_group(signal.SIGKILL)
    reap_within(proc)
    # The next start finds it big and moves it aside.
    os.close(log.open_for_child())
    assert (tmp_path / "busy.log.2").exists()


def _cuts_blocks(folder) -> bool:
    from app.supervisor.logfile import _collapse_front
    probe = folder / "probe"
    probe.write_bytes(b"x" * 3 * 65536)
    with open(probe, "r+b") as handle:
        return _collapse_front(handle.fileno(), 65536)


def test_log_rotation_loses_no_line_of_a_child_writing_flat_out(tmp_path, no_leftovers):
    """Rotated again and again while the child prints as fast as it can: the backups and
    the live file, put end to end, hold every line once, in order."""
    if not _cuts_blocks(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem cannot cut blocks (COLLAPSE_RANGE): "
                    "rotation falls back to copy-then-truncate there")
    log = LogFile(tmp_path / "busy.log", max_bytes=20_000, backups=10_000)
    proc = make(tmp_path, "import itertools\nfor i in itertools.count():\n"
                          "    print('line', i, flush=True)", log=log)
    proc.spawn()
    for _ in range(20):
        wait_for(log.rotate_if_needed, 10, 0.001, "the log to outgrow max_bytes")
    proc.signal_group(signal.SIGKILL)
    reap_within(proc)
    backups = sorted(tmp_path.glob("busy.log.*"), key=lambda p: -int(p.suffix[1:]))
    assert len(backups) == 20
    text = b"".join(path.read_bytes() for path in [*backups, log.path]).decode()
    whole = text[:text.rindex("\n")].split("\n")  # the child may die mid-line
    numbers = [int(line.split()[1]) for line in whole]
    assert len(numbers) > 20 * 20_000 // 12 and numbers == list(range(len(numbers)))


def test_record_identifies_the_process(tmp_path, no_leftovers):
    proc = make(tmp_path, "import time; time.sleep(30)")
    pid = proc.spawn()
    record = proc.record()
    assert record["pid"] == pid and record["cmdline"] == proc.argv
    assert abs(record["create_time"] - psutil.Process(pid).create_time()) < 0.05
    proc.signal_group(signal.SIGKILL)
    reap_within(proc)
