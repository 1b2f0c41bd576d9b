"""A short folder for Unix sockets when the instance folder's path is too long for one.

A socket's path must fit sun_path (108 bytes). The fallback lives in the temp folder,
where another local user could create it first: it is used only when it is ours and
private.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path


def private_temp_folder(instance_path: Path) -> Path:
    """`<tmp>/scm-<uid>-<digest of the instance path>`, made private; ValueError names the
    folder when it exists but is not a private folder of this user."""
    digest = hashlib.sha256(str(instance_path).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"scm-{os.getuid()}-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() \
            or stat.S_IMODE(info.st_mode) & 0o077:
        raise ValueError(
            f"{folder} (socket folder for a long INSTANCE_PATH) is not a private folder "
            "owned by this user; remove it or use a shorter INSTANCE_PATH")
    return folder
