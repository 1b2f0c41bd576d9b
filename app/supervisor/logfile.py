"""A child's log file: opened for appending, rotated by size, read back for its tail.

The child writes straight into the file (never through a pipe the manager
would have to drain), with O_APPEND, so the file can be rotated while the child
keeps writing: the rotation copies the file's first blocks to the backup, then
cuts exactly those blocks out of the file (fallocate's COLLAPSE_RANGE, under the
same inode lock as the child's appends), so no line is lost or kept twice. Where
the filesystem cannot cut (tmpfs, NFS, not Linux), it truncates instead, and the
lines written between the copy and the truncate are lost.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import sys
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
TAIL_READ_BYTES = 16 * 1024
FALLOC_FL_COLLAPSE_RANGE = 0x08  # linux/falloc.h


def _collapse_front(fd: int, length: int) -> bool:
    """Cut the first `length` bytes out of the file (block-aligned, short of its end);
    False where the system or the filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return libc.fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0


class LogFile:
    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups

    def open_for_child(self) -> int:
        """A fresh O_APPEND descriptor for a new child's stdout/stderr; caller closes it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._size() > self.max_bytes:
            self._shift_backups()
            os.replace(self.path, self._backup(1))
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def rotate_if_needed(self) -> bool:
        """Rotate a log a running child is writing to (see the module's docstring)."""
        size = self._size()
        if size <= self.max_bytes:
            return False
        self._shift_backups()
        with open(self.path, "r+b") as handle:
            block = os.fstat(handle.fileno()).st_blksize or 4096
            cut = (size - 1) // block * block  # whole blocks, short of the end
            if cut > 0:
                with open(self._backup(1), "wb") as backup:
                    _copy_bytes(handle, backup, cut)
                if _collapse_front(handle.fileno(), cut):
                    return True
            handle.seek(0)
            with open(self._backup(1), "wb") as backup:
                shutil.copyfileobj(handle, backup)
            handle.truncate(0)
        return True

    def write_line(self, text: str) -> None:
        """A line from the manager itself (why a child was started or stopped)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n")

    def tail(self, lines: int = 20) -> str:
        """The last `lines` non-empty lines, for last_error."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - TAIL_READ_BYTES))
                data = handle.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", errors="replace")
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _shift_backups(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                os.replace(older, self._backup(index + 1))


def _copy_bytes(source, target, count: int) -> None:
    source.seek(0)
    while count > 0:
        chunk = source.read(min(count, 1024 * 1024))
        if not chunk:
            return
        target.write(chunk)
        count -= len(chunk)
