"""CORS for single-page apps on other origins (``KOKOMA_CORS_ORIGINS``).

Only the exact origins configured are answered with CORS headers; a request from any other origin
(or without ``Origin``) passes through untouched, so it gets no ``Access-Control-*`` header at all
(a preflight from such an origin is an ordinary ``OPTIONS`` request for the API). Credentials are
off: the API authenticates with ``Authorization: Bearer …``, never with cookies. The response
headers a client needs are exposed: ``ETag`` (for ``If-Match``), ``Location``, ``Link``,
``X-Request-ID``, ``Idempotent-Replayed`` and ``Retry-After``.

Starlette's :class:`~starlette.middleware.cors.CORSMiddleware` does the CORS work; this wrapper
only keeps it away from origins that are not listed (Starlette adds ``Access-Control-Expose-Headers``
to every response and answers a refused preflight itself).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Accept",
    "Accept-Language",
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-Request-ID",
)
EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "Link",
    "X-Request-ID",
    "Idempotent-Replayed",
    "Retry-After",
)
#: Seconds a browser may cache a preflight answer.
PREFLIGHT_MAX_AGE = 600


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.cors = CORSMiddleware(
            app,
            allow_origins=sorted(self.origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        if origin is not None and origin in self.origins:
            await self.cors(scope, receive, send)
            return
        if origin is None:
            await self.app(scope, receive, send)
            return

        async def vary_on_origin(message: Message) -> None:
            # The answer differs by origin: a shared cache must not hand it to a listed one.
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, vary_on_origin)


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return value.decode("latin-1")
    return None
