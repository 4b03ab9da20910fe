"""Sign-in through the city's identity provider: OIDC access tokens (JWTs) beside API keys.

A request with ``Authorization: Bearer <JWT>`` is a person signed in at ``KOKOMA_OIDC_ISSUER``:

* **Keys**: the provider's discovery document (``{issuer}/.well-known/openid-configuration``)
  names its ``jwks_uri``; the JWKS is fetched on first use and cached. A token whose ``kid`` is
  not in the cache refetches both — at most once per ``KOKOMA_OIDC_JWKS_MIN_REFRESH_SECONDS`` —
  so a key rotation at the provider is picked up without a restart, while a flood of tokens with
  made-up ``kid`` values cannot turn into a flood of requests to the provider. Fetching is
  asynchronous (httpx), never on a worker thread and never blocking the event loop.
* **Signature and claims** are checked by PyJWT (no hand-written crypto): only RS256, ES256 and
  PS256 (never ``none``, never an HMAC — which would let the *public* key sign tokens); the key
  type must fit the algorithm; ``iss``, ``aud``, ``exp`` and ``nbf`` with 60 s leeway against
  the wall clock; ``sub`` required.
* **Roles** (:func:`principal_from_claims`): the claim ``KOKOMA_OIDC_ROLES_CLAIM`` (a dotted path)
  holds ``kokoma-admin`` … ``kokoma-viewer``; several → the most privileged
  (:data:`ROLE_PRECEDENCE`). Partners are bound to the organisation in
  ``KOKOMA_OIDC_ORGANISATION_CLAIM``, managers to the manager whose e-mail the token carries
  (verified). The result is an ordinary :class:`~app.core.security.Principal`: every role rule
  holds unchanged.

A verified token's principal is cached like an API key's (``app.core.security.key_cache``, by the
token's digest) for at most ``KOKOMA_API_KEY_CACHE_SECONDS`` and never beyond its expiry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import jwt
from anyio.lowlevel import RunVar
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlmodel import col

from app.core.config import Settings
from app.core.errors import Forbidden, ServiceUnavailable, Unauthorized
from app.core.problems import ProblemType
from app.core.security import Principal, PrincipalKind
from app.models.manager import Manager, ManagerStatus
from app.models.reference import Organisation
from app.models.system import Role

ALGORITHMS = ("RS256", "ES256", "PS256")
#: Key type (``kty``) each accepted algorithm needs.
_KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
LEEWAY_SECONDS = 60
ROLE_PREFIX = "kokoma-"
#: Several roles in one token → the first of these. Staff first; a partner (own organisation's
#: incidents with reporter data) before a manager (own assignments) before a viewer.
ROLE_PRECEDENCE = (Role.admin, Role.coordinator, Role.partner, Role.manager, Role.viewer)
INVALID_TOKEN_HEADERS = {"WWW-Authenticate": 'Bearer realm="kokoma", error="invalid_token"'}


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (``eyJ….….…``) rather than an API key (``kok_…``, no dots) — by shape only."""
    return token.startswith("eyJ") and token.count(".") == 2


def invalid_token(detail: str) -> Unauthorized:
    return Unauthorized(detail, type_=ProblemType.INVALID_TOKEN, headers=INVALID_TOKEN_HEADERS)


# --- the provider's keys ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    kty: str
    alg: str | None
    key: Any  # a cryptography public key


_REFRESH_LOCK: RunVar[anyio.Lock] = RunVar("kokoma_oidc_jwks_lock")


def _refresh_lock() -> anyio.Lock:
    try:
        return _REFRESH_LOCK.get()
    except LookupError:
        lock = anyio.Lock()
        _REFRESH_LOCK.set(lock)
        return lock


class JwksCache:
    """The provider's signing keys by ``kid``, refetched on an unknown ``kid`` (rate-limited)."""

    def __init__(self, issuer: str, min_refresh_seconds: float, timeout_seconds: float) -> None:
        self.issuer = issuer
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.keys: dict[str | None, _Key] = {}
        self.fetched_at: float | None = None  # monotonic time of the last fetch attempt
        self.fetches = 0

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    async def key(self, kid: str | None) -> _Key:
        found = self._find(kid)
        if found is not None:
            return found
        async with _refresh_lock():
            found = self._find(kid)  # fetched meanwhile by a request that held the lock
            if found is None and self._may_refresh():
                await self._refresh()
                found = self._find(kid)
        if found is None:
            raise invalid_token(
                "The token's signing key (kid) is not among the identity provider's keys."
            )
        return found

    def _find(self, kid: str | None) -> _Key | None:
        if kid is None and len(self.keys) == 1:  # a provider with one key may omit the kid
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    def _may_refresh(self) -> bool:
        return (
            self.fetched_at is None
            or time.monotonic() - self.fetched_at >= self.min_refresh_seconds
        )

    async def _refresh(self) -> None:
        self.fetched_at = time.monotonic()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds, follow_redirects=False
            ) as client:
                discovery = await _get_json(client, self.discovery_url)
                if discovery.get("issuer") != self.issuer:
                    raise ServiceUnavailable(
                        "The identity provider's discovery document names another issuer."
                    )
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise ServiceUnavailable("The identity provider publishes no jwks_uri.")
                jwks = await _get_json(client, jwks_uri)
        except httpx.HTTPError as exc:
            self.fetched_at = None  # an outage is not a refresh: try again with the next token
            raise ServiceUnavailable(
                "The identity provider cannot be reached to verify the token; try again."
            ) from exc
        self.keys = _signing_keys(jwks)


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    try:
        value = response.json()
    except ValueError as exc:
        raise httpx.DecodingError(f"{url} did not answer JSON") from exc
    if not isinstance(value, dict):
        raise httpx.DecodingError(f"{url} did not answer a JSON object")
    return value


def _signing_keys(jwks: Mapping[str, Any]) -> dict[str | None, _Key]:
    """The public signing keys of a JWKS (RSA and EC P-256); others are ignored."""
    keys: dict[str | None, _Key] = {}
    for jwk in jwks.get("keys") or []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kty = jwk.get("kty")
        try:
            if kty == "RSA":
                key = RSAAlgorithm.from_jwk(jwk)
            elif kty == "EC" and jwk.get("crv") == "P-256":
                key = ECAlgorithm.from_jwk(jwk)
            else:
                continue
        except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAPrivateKey | EllipticCurvePrivateKey):
            key = key.public_key()  # a JWKS never should carry private parts; use the public
        keys[jwk.get("kid")] = _Key(kty=kty, alg=jwk.get("alg"), key=key)
    return keys


_CACHES: dict[tuple[str, float, float], JwksCache] = {}


def jwks_cache(settings: Settings) -> JwksCache:
    """The process's key cache for the configured issuer."""
    assert settings.oidc_issuer
    ident = (
        settings.oidc_issuer,
        settings.oidc_jwks_min_refresh_seconds,
        settings.oidc_http_timeout_seconds,
    )
    cache = _CACHES.get(ident)
    if cache is None:
        _CACHES.clear()
        cache = _CACHES[ident] = JwksCache(*ident)
    return cache


def reset_jwks_caches() -> None:
    _CACHES.clear()


# --- verification ------------------------------------------------------------------------------


async def verify_token(token: str, settings: Settings) -> dict[str, Any]:
    """The token's claims once its signature, algorithm, ``iss``, ``aud``, ``exp``, ``nbf`` and
    ``sub`` hold; otherwise :func:`invalid_token` (401)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise invalid_token("The bearer token is not a well-formed JWT.") from exc
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise invalid_token(
            f"Tokens signed with {alg!r} are not accepted (only {', '.join(ALGORITHMS)})."
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise invalid_token("The token's kid must be a string.")
    key = await jwks_cache(settings).key(kid)
    if key.kty != _KEY_TYPES[alg] or (key.alg is not None and key.alg != alg):
        raise invalid_token(f"The token's algorithm {alg} does not fit its signing key.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=settings.oidc_audience,
            issuer=settings.oidc_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise invalid_token("The token has expired.") from exc
    except jwt.ImmatureSignatureError as exc:
        raise invalid_token("The token is not yet valid (nbf/iat in the future).") from exc
    except jwt.InvalidAudienceError as exc:
        raise invalid_token("The token is not meant for this API (aud).") from exc
    except jwt.InvalidIssuerError as exc:
        raise invalid_token("The token was not issued by the configured provider (iss).") from exc
    except jwt.InvalidSignatureError as exc:
        raise invalid_token("The token's signature does not verify.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise invalid_token(f"The token lacks the claim {exc.claim!r}.") from exc
    except jwt.PyJWTError as exc:
        raise invalid_token("The bearer token is invalid.") from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise invalid_token("The token's sub must be a non-empty string.")
    return claims


# --- claims → principal -----------------------------------------------------------------------------


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``realm_access.roles``); a literal key with dots wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_in(claims: Mapping[str, Any], path: str) -> list[Role]:
    """The kokoma roles named in the claim (a list of strings, or one space-separated string)."""
    value = claim_at(claims, path)
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list | tuple):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    found = {n.removeprefix(ROLE_PREFIX) for n in names if n.startswith(ROLE_PREFIX)}
    return [role for role in ROLE_PRECEDENCE if role.value in found]


def display_name_of(claims: Mapping[str, Any]) -> str:
    for name in ("name", "preferred_username", "email"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return str(claims["sub"])[:200]


@dataclass(frozen=True, slots=True)
class Binding:
    """What a role needs from the database: the partner's organisation id to check, or the
    verified e-mail to find the manager by."""

    role: Role
    organisation_id: uuid.UUID | None = None
    email: str | None = None


def binding_from_claims(claims: Mapping[str, Any], settings: Settings) -> Binding:
    """The role (most privileged) and what binds it; 403 when the token cannot hold a role."""
    roles = roles_in(claims, settings.oidc_roles_claim)
    if not roles:
        raise Forbidden(
            f"The token carries no kokoma role in the claim '{settings.oidc_roles_claim}' "
            "(expected one of " + ", ".join(ROLE_PREFIX + r.value for r in ROLE_PRECEDENCE) + ").",
            type_=ProblemType.NO_ROLE,
        )
    role = roles[0]
    if role is Role.partner:
        claim = settings.oidc_organisation_claim
        raw = claim_at(claims, claim)
        try:
            organisation_id = uuid.UUID(str(raw)) if isinstance(raw, str) else None
        except ValueError:
            organisation_id = None
        if organisation_id is None:
            raise Forbidden(
                f"A partner's token needs an organisation id in the claim '{claim}'.",
                type_=ProblemType.UNKNOWN_ORGANISATION,
            )
        return Binding(role, organisation_id=organisation_id)
    if role is Role.manager:
        email = claims.get("email")
        if (
            not isinstance(email, str)
            or not email.strip()
            or claims.get("email_verified") is not True
        ):
            raise Forbidden(
                "A manager's token needs a verified e-mail (claims 'email' and "
                "'email_verified': true).",
                type_=ProblemType.UNKNOWN_MANAGER,
            )
        return Binding(role, email=email.strip())
    return Binding(role)


def token_cache_seconds(claims: Mapping[str, Any], settings: Settings) -> float:
    """How long a verified token's principal may be reused: the key-cache time, never past the
    token's expiry (with the same leeway verification allows)."""
    remaining = float(claims["exp"]) + LEEWAY_SECONDS - time.time()
    return max(0.0, min(settings.api_key_cache_seconds, remaining))


def principal_from_claims(
    claims: Mapping[str, Any], binding: Binding, conn: Connection | None
) -> Principal:
    """The principal of a verified token. ``conn`` (needed for partners and managers only)
    checks the organisation exists and finds the manager: unknown → 403."""
    organisation_id = manager_id = None
    if binding.role is Role.partner:
        assert conn is not None and binding.organisation_id is not None
        exists = conn.execute(
            select(col(Organisation.id)).where(col(Organisation.id) == binding.organisation_id)
        ).first()
        if exists is None:
            raise Forbidden(
                f"The organisation {binding.organisation_id} named by the token is unknown.",
                type_=ProblemType.UNKNOWN_ORGANISATION,
            )
        organisation_id = binding.organisation_id
    elif binding.role is Role.manager:
        assert conn is not None and binding.email is not None
        rows = conn.execute(
            select(col(Manager.id), col(Manager.status)).where(
                func.lower(col(Manager.email)) == binding.email.lower()
            )
        ).all()
        if len(rows) != 1:
            raise Forbidden(
                "No manager in the roster has the token's e-mail address.",
                type_=ProblemType.UNKNOWN_MANAGER,
            )
        if rows[0].status == ManagerStatus.retired:
            raise Forbidden(
                "The manager with the token's e-mail address is retired.",
                type_=ProblemType.RETIRED_MANAGER,
            )
        manager_id = rows[0].id
    return Principal(
        key_id=None,
        role=binding.role,
        name=display_name_of(claims),
        organisation_id=organisation_id,
        manager_id=manager_id,
        kind=PrincipalKind.oidc,
        oidc_subject=str(claims["sub"]),
    )
