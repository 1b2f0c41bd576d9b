"""Is the process holding a job still there?

Runners are named `<node>/<pid>` with node `<name>@<host>` (a Celery node such as
`pdf_generation@web1`, or `threads@web1` for a thread pool; the host part is this host's
NODE_NAME, `Settings.node_name`). On the same host a holder
whose pid no longer runs is certainly gone, so its job can be taken back at once instead
of after the lease expires. Anything else (another host, a pid that runs) is "maybe
alive": the lease decides. A reused pid only makes us wait for the lease, never act
early.
"""
from __future__ import annotations

import os

import psutil


def runner_name(node: str) -> str:
    return f"{node}/{os.getpid()}"


def node_of(name: str | None) -> str:
    """The host's node name in a Celery node, pool or runner name (`<name>@<node>[/pid]`)."""
    return (name or "").partition("@")[2].partition("/")[0]


def pid_of(runner: str | None) -> int | None:
    """The process in a runner name (`<node>/<pid>`), or None when it names none."""
    _, slash, pid = (runner or "").rpartition("/")
    return int(pid) if slash and pid.isdigit() else None


def on_this_node(node: str | None, this_node: str) -> bool:
    """Whether a Celery node or pool name (`<name>@<node>`) belongs to this host."""
    return bool(node) and node_of(node) == this_node


def holder_is_dead(runner: str | None, this_node: str) -> bool:
    """`this_node`: this host's node name (Settings.node_name)."""
    pid_number = pid_of(runner)
    if pid_number is None or pid_number == os.getpid() or not on_this_node(runner, this_node):
        return False
    try:
        # A zombie is dead too: its parent (a killed worker) may never reap it.
        return psutil.Process(pid_number).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
