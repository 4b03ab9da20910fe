"""``Idempotency-Key`` on POST: a repeat returns the first response and creates nothing.

Records are scoped to the API key (its SHA-256 digest; for a person signed in with an OIDC
access token, to the person — ``oidc:<sub>`` — so that a retry with a renewed token replays) and
kept ``KOKOMA_IDEMPOTENCY_TTL_HOURS`` (24 h). The same key with a different request (method, path, query or body) → 422. While the first
request is still running, a repeat → 409. Responses of 5xx are not kept, so a retry runs again.
The response is sent only once its record is committed, so a repeat right after it replays.

The body is hashed while it is read into a spooled temporary file (memory up to 1 MiB, then disk),
and handed to the route from there: imports, whose bodies may be hundreds of megabytes, keep
constant memory. Only requests that carry an ``Idempotency-Key`` take this path.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import AppError, problem_response
from app.core.oidc import looks_like_jwt, verify_token
from app.core.problems import ProblemType
from app.core.security import hash_key, key_cache
from app.models.system import IdempotencyRecord

log = logging.getLogger("kokoma.idempotency")

HEADER = b"idempotency-key"
SPOOL_IN_MEMORY = 1024 * 1024
CHUNK = 256 * 1024
MAX_KEY_LENGTH = 200
_REPLAYED_HEADERS = ("etag", "location")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        key_raw = headers.get(HEADER)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        token = auth.partition(" ")[2].strip()
        if key_raw is None or not token:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = key_raw.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            await _problem(
                request,
                receive,
                send,
                ProblemType.INVALID_IDEMPOTENCY_KEY,
                f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters.",
            )
            return
        digest = hashlib.sha256()
        for part in (scope["method"], scope["path"], scope.get("query_string", b"").decode()):
            digest.update(part.encode() + b"\0")
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as body:
            try:
                await _read_body(receive, body, digest)
            except HTTPException as exc:
                await _problem(
                    request, receive, send, ProblemType.PAYLOAD_TOO_LARGE, str(exc.detail)
                )
                return
            await self._handle(scope, receive, send, request, token, key, digest.hexdigest(), body)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: Request,
        token: str,
        key: str,
        request_hash: str,
        body: IO[bytes],
    ) -> None:
        scope_id = await _scope_id(token)

        # Database work runs in the thread pool, never on the event loop: a blocking wait for
        # the database (SQLite's write lock, a PostgreSQL row lock) held by a request that
        # itself needs the loop to finish would otherwise stall every request.
        outcome = await run_in_threadpool(
            _claim, scope_id, key, scope["method"], scope["path"], request_hash
        )
        if isinstance(outcome, IdempotencyRecord):
            await _replay(outcome, scope, receive, send)
            return
        if outcome == "mismatch":
            await _problem(
                request,
                receive,
                send,
                ProblemType.IDEMPOTENCY_KEY_REUSED,
                "This Idempotency-Key was used with a different request.",
            )
            return
        if outcome == "in_progress":
            await _problem(
                request,
                receive,
                send,
                ProblemType.IDEMPOTENCY_IN_PROGRESS,
                "A request with this Idempotency-Key is still being processed.",
            )
            return

        captured = _Captured()
        held: list[Message] = []

        size = body.seek(0, 2)
        body.seek(0)

        async def replay_receive() -> Message:
            chunk = body.read(CHUNK)
            return {"type": "http.request", "body": chunk, "more_body": body.tell() < size}

        async def capture_send(message: Message) -> None:
            # Held back until the record is complete: an immediate repeat of an answered
            # request must meet the replay, never "still being processed".
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured.body.extend(message.get("body", b""))
            held.append(message)

        try:
            await self.app(scope, replay_receive, capture_send)
        except BaseException:
            await run_in_threadpool(_release, scope_id, key)
            raise
        try:
            await run_in_threadpool(_complete, scope_id, key, captured)
        except Exception:
            # The change itself is committed: answer it. The claim stays, so a repeat gets 409
            # (never a second run) until the record expires.
            log.exception("idempotency record not completed", extra={"status": captured.status})
        for message in held:
            await send(message)


async def _read_body(receive: Receive, into: IO[bytes], digest: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        digest.update(chunk)
        into.write(chunk)
        if not message.get("more_body", False):
            break


def _claim(
    scope_id: str, key: str, method: str, path: str, request_hash: str
) -> IdempotencyRecord | str:
    now = get_clock().now()
    ttl = timedelta(hours=get_settings().idempotency_ttl_hours)
    with session_scope() as session:
        existing = session.scalars(
            select(IdempotencyRecord).where(
                col(IdempotencyRecord.scope) == scope_id, col(IdempotencyRecord.key) == key
            )
        ).first()
        if existing is not None and existing.expires_at <= now:
            session.delete(existing)
            session.flush()
            existing = None
        if existing is not None:
            if existing.request_hash != request_hash:
                return "mismatch"
            return "in_progress" if existing.status_code is None else existing
        try:
            with session.begin_nested():
                session.add(
                    IdempotencyRecord(
                        scope=scope_id,
                        key=key,
                        method=method,
                        path=path[:500],
                        request_hash=request_hash,
                        created_at=now,
                        expires_at=now + ttl,
                    )
                )
        except IntegrityError:
            return "in_progress"
    return "claimed"


def _release(scope_id: str, key: str) -> None:
    with session_scope() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.scope) == scope_id, col(IdempotencyRecord.key) == key
            )
        )


@dataclass(slots=True)
class _Captured:
    """The response of the first request, as the app sent it."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


def _complete(scope_id: str, key: str, captured: _Captured) -> None:
    status = captured.status
    if status >= 500:
        _release(scope_id, key)
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in captured.headers}
    with session_scope() as session:
        record = session.scalars(
            select(IdempotencyRecord).where(
                col(IdempotencyRecord.scope) == scope_id, col(IdempotencyRecord.key) == key
            )
        ).first()
        if record is None:
            return
        record.status_code = status
        record.content_type = headers.get("content-type")
        record.response_body = bytes(captured.body).decode("utf-8", "replace")
        record.headers = {h: headers[h] for h in _REPLAYED_HEADERS if h in headers}
        session.add(record)


async def _scope_id(token: str) -> str:
    """Whose records these are: the API key's digest — or, for a person's access token, the
    digest of ``oidc:<sub>``, so that a retry with a renewed token still finds the first response.
    A token that does not verify keeps its own digest (the route refuses it anyway)."""
    settings = get_settings()
    if not (settings.oidc_issuer and looks_like_jwt(token)):
        return hash_key(token)
    hit, principal = key_cache.get(hash_key(token))
    if hit and principal is not None:
        return hash_key(principal.subject)
    try:
        claims = await verify_token(token, settings)
    except AppError:
        return hash_key(token)
    return hash_key(f"oidc:{claims['sub']}")


async def _replay(record: IdempotencyRecord, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import Response

    headers = dict(record.headers or {})
    headers["Idempotent-Replayed"] = "true"
    response = Response(
        content=(record.response_body or "").encode("utf-8"),
        status_code=record.status_code or 200,
        media_type=record.content_type,
        headers=headers,
    )
    await response(scope, receive, send)


async def _problem(
    request: Request, receive: Receive, send: Send, problem: ProblemType, detail: str
) -> None:
    response = problem_response(request, problem, detail)
    await response(request.scope, receive, send)
