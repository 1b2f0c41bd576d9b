"""The lifecycle notifier seam: what `serve` tells a service manager (systemd's
sd_notify, for one) about this process. The default tells nobody."""
from __future__ import annotations

from typing import Protocol


class Notifier(Protocol):
    def ready(self, status: str) -> None:
        """Once: HTTP serves (if any) and the manager's workers run (if hosted here)."""

    def status(self, text: str) -> None:
        """A one-line state (mode and worker counts), sent when it changes."""

    def stopping(self) -> None:
        """Shutdown has begun."""


class NullNotifier:
    def ready(self, status: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def stopping(self) -> None:
        pass
