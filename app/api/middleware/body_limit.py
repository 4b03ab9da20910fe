"""Refuse request bodies over the configured size with 413 problem+json.

JSON endpoints get ``KOKOMA_MAX_BODY_BYTES`` (default 1 MiB); imports (``/api/v1/imports/…``) get
``KOKOMA_MAX_IMPORT_BYTES`` and are streamed, never buffered here.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings
from app.core.errors import problem_response
from app.core.problems import ProblemType

IMPORT_PREFIX = "/api/v1/imports/"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        is_import = scope["path"].startswith(IMPORT_PREFIX)
        limit = settings.max_import_bytes if is_import else settings.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(scope, receive, send, limit)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, detail=f"The body exceeds {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    from starlette.requests import Request

    response = problem_response(
        Request(scope), ProblemType.PAYLOAD_TOO_LARGE, f"The body exceeds {limit} bytes."
    )
    await response(scope, receive, send)
