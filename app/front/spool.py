"""Bytes of request bodies the front holds at once, per client address and in all.

Why: the front reads each whole body before gunicorn sees it (memory, then a temp
file). Capping connections alone still lets one address hold per-address connections
times MAX_UPLOAD_MB of disk, and everyone together connections times MAX_UPLOAD_MB:
far more than a host's temp folder. A body takes its bytes here as they arrive (all
of its Content-Length up front, so a request that cannot fit is refused before it
sends anything) and gives them back when its answer has been relayed.
"""
from __future__ import annotations

from collections import Counter

# Unset caps, in largest uploads (MAX_UPLOAD_MB): an office behind one NAT address may
# send a few big jobs at once; all together they must fit a host's temp folder.
UPLOADS_PER_ADDRESS = 4
UPLOADS_IN_ALL = 16


class SpoolBudget:
    """One event loop owns it: no lock."""

    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self.by_address: Counter[str] = Counter()
        self.held = 0

    def take(self, address: str, size: int) -> str | None:
        """Hold `size` more bytes for `address`; None when taken, else which cap refused
        ("address" or "total")."""
        if self.by_address[address] + size > self.per_address:
            return "address"
        if self.held + size > self.total:
            return "total"
        self.by_address[address] += size
        self.held += size
        return None

    def give_back(self, address: str, size: int) -> None:
        if size <= 0:
            return
        self.held -= size
        self.by_address[address] -= size
        if self.by_address[address] <= 0:
            del self.by_address[address]
