"""This host's default node name: the host name plus a short id kept in the instance folder.

Separate from `app.settings` (which uses it for `Settings.node_name`) because it touches
the file system: the id is made once and read back on every start.
"""
from __future__ import annotations

import functools
import os
import re
import secrets
import socket
from pathlib import Path

NODE_ID_FILE = "node_id"


def _host_label() -> str:
    # The first label of the host name, kept to what a node name may hold.
    label = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]) or "host"
    return label.lstrip("._-")[:40] or "host"


@functools.cache
def default_node_name(run_dir: Path) -> str:
    """`<host>-<id>`; the id is made once per instance folder and kept in run/node_id, so
    two instances on one host (or two containers with the same host name) never share a
    name. Written beside the sockets (run/), which is per host and never shared."""
    path = run_dir / NODE_ID_FILE
    try:
        node_id = path.read_text().strip()
    except FileNotFoundError:
        node_id = ""
    if not re.fullmatch(r"[a-z0-9]{4,16}", node_id):
        node_id = secrets.token_hex(3)
        run_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}")
        temporary.write_text(node_id + "\n")
        try:
            os.link(temporary, path)  # first writer wins when two processes start at once
        except FileExistsError:
            node_id = path.read_text().strip()
        finally:
            temporary.unlink(missing_ok=True)
    return f"{_host_label()}-{node_id}"
