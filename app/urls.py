"""URLs shown to people: passwords never appear in logs, status or errors."""
from __future__ import annotations

from typing import overload
from urllib.parse import urlsplit, urlunsplit


@overload
def mask_url(url: str) -> str: ...
@overload
def mask_url(url: None) -> None: ...


def mask_url(url: str | None) -> str | None:
    """A broker URL safe to show: password replaced by ***."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query,
                       parts.fragment))
