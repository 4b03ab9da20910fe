"""Per-API-key rate limit: a token bucket in process memory, keyed by the key's SHA-256 digest.

``KOKOMA_RATE_LIMIT_PER_MINUTE`` (default 12,000; 0 = off) tokens refill evenly over a minute and a
bucket holds at most one minute's worth (the burst). A request without a token → 429
``application/problem+json`` (type ``/problems/too-many-requests``) with ``Retry-After`` (whole
seconds until the next token). Only ``/api/…`` requests that carry a bearer key are counted;
requests without one are answered 401 by the route. The limit is per process: with N uvicorn
workers a key gets up to N × the limit (put a shared limiter in the proxy for a hard global cap).
"""

from __future__ import annotations

import hashlib
import math
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import get_settings
from app.core.errors import problem_response
from app.core.problems import ProblemType

API_PREFIX = "/api/"
MAX_BUCKETS = 50_000


class TokenBucketLimiter:
    """Buckets per key: ``take()`` returns 0 when a token was taken, else seconds to wait."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                self._evict(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Drop buckets that have refilled completely (they hold no state worth keeping)."""
        full_after = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= MAX_BUCKETS:  # all active: forget the lot rather than grow
            self._buckets.clear()


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._limiter: TokenBucketLimiter | None = None

    def limiter(self) -> TokenBucketLimiter | None:
        per_minute = get_settings().rate_limit_per_minute
        if per_minute <= 0:
            return None
        if self._limiter is None or self._limiter.capacity != per_minute:
            self._limiter = TokenBucketLimiter(per_minute)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        limiter = self.limiter()
        token = _bearer_token(scope) if limiter is not None else None
        if limiter is None or token is None:
            await self.app(scope, receive, send)
            return
        wait = limiter.take(hashlib.sha256(token).hexdigest())
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = problem_response(
            Request(scope),
            ProblemType.TOO_MANY_REQUESTS,
            f"This API key may make {int(limiter.capacity)} requests per minute; "
            f"retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
