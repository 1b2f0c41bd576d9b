"""Exec shim: prepare the process, then become the real program.

    python -S -I shim.py --parent PID [--fail-exit CODE --fail-message TEXT] -- PROGRAM ARGS...

Why a shim: the manager runs inside a threaded web process, where
``preexec_fn`` is unsafe. This tiny script runs after the fork, in a fresh
interpreter, and does what a preexec_fn would have done:

- PR_SET_PDEATHSIG=SIGKILL, so the child dies when the manager's thread (the
  one that forked it) or its process dies, even by SIGKILL; the setting
  survives exec;
- its own session and process group, so the manager can signal the whole tree;
- then ``execv`` the program, keeping the pid the manager recorded.

``--fail-exit`` is test-only fault injection (settings.CELERY_TEST_FAIL_QUEUE):
write the message to stderr (the worker's log) and exit with that code.

Runs with ``-S -I`` and imports only the standard library: no site-packages,
no ``app`` package, nothing that could slow or break the start.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    if "--" not in argv:
        raise SystemExit("shim: usage: shim.py [options] -- PROGRAM ARGS...")
    split = argv.index("--")
    options, program = argv[:split], argv[split + 1:]
    if len(options) % 2 or not program:
        raise SystemExit("shim: options take one value each and a program is required")
    return dict(zip(options[::2], options[1::2], strict=True)), program


def main(argv: list[str]) -> None:
    options, program = parse(argv)
    if sys.platform.startswith("linux"):
        set_parent_death_signal(signal.SIGKILL)
    parent = options.get("--parent")
    # The parent may have died between fork and prctl; then nobody will send the signal.
    if parent and os.getppid() != int(parent):
        os._exit(1)
    try:
        os.setsid()
    except PermissionError:
        pass  # already a session leader (Popen(start_new_session=True))
    if "--fail-exit" in options:
        sys.stderr.write(options.get("--fail-message", "shim: injected start failure") + "\n")
        sys.stderr.flush()
        os._exit(int(options["--fail-exit"]))
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
