"""Security headers on every response the application makes.

- no framing (X-Frame-Options for old browsers, CSP frame-ancestors for current ones):
  the page holds a token in memory and must not be clickjacked;
- no MIME sniffing, JSON included: a JSON error echoing user input must never be read
  as HTML;
- no Referer leaving the site (job and output URLs carry ids);
- token responses (everything under /api/auth) are never stored by a cache or browser.

A view that sets its own Content-Security-Policy (the page does) keeps it;
frame-ancestors is added when it lacks one. Responses without a policy (JSON, files)
get one that allows nothing at all, since none of them is a document to render.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask

FIXED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
NO_STORE_PREFIXES = ("/api/auth/",)


def with_frame_ancestors(policy: str) -> str:
    if "frame-ancestors" in policy:
        return policy
    return f"{policy.rstrip('; ')}; frame-ancestors 'none'"


def secured(path: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` plus the security headers; a response's own values win, except that
    a policy without frame-ancestors gets one and token paths always get no-store."""
    no_store = path.startswith(NO_STORE_PREFIXES)
    dropped = {"cache-control", "pragma"} if no_store else set()
    result = [(k, v) for k, v in headers if k.lower() not in dropped]
    present = {k.lower(): i for i, (k, _v) in enumerate(result)}
    for name, value in FIXED_HEADERS.items():
        if name.lower() not in present:
            result.append((name, value))
    csp = present.get("content-security-policy")
    if csp is None:
        result.append(("Content-Security-Policy", DEFAULT_CSP))
    else:
        result[csp] = (result[csp][0], with_frame_ancestors(result[csp][1]))
    if no_store:
        result += [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    return result


class SecurityHeaders:
    """WSGI middleware, outermost, so that fast paths in front of Flask (the health
    probe) and every error handler's response are covered as well."""

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")

        def start(status, headers, exc_info=None):
            return start_response(status, secured(path, headers), exc_info)

        return self.wsgi_app(environ, start)


def init_app(app: Flask) -> None:
    """Call last in the factory: it must wrap every other WSGI layer."""
    # Flask documents wrapping wsgi_app for middleware; its stubs type it as a method.
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
