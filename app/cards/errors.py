"""The single exception type for problems the user can fix."""
from __future__ import annotations


class CardError(Exception):
    """A user-facing input problem: bad option, unreadable image, impossible layout.

    The message is one line that names the file or option and, where there is a
    choice, the supported alternatives, so callers can show it as is.
    """
