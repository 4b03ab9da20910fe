"""Settings: environment variables prefixed ``KOKOMA_`` (and ``DATABASE_URL``)."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A serialised origin as browsers send it: lower-case scheme and host, an optional port.
_ORIGIN_RE = re.compile(
    r"^https?://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KOKOMA_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./kokoma.db",
        validation_alias=AliasChoices("DATABASE_URL", "KOKOMA_DATABASE_URL"),
    )
    timezone: str = "Europe/Berlin"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_import_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=500, ge=1)
    api_key_cache_seconds: float = Field(default=10.0, ge=0)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    tandem_from_level: int = Field(default=4, ge=1, le=10)
    volunteer_max_level: int = Field(default=6, ge=1, le=9)
    offer_ttl_hours: float = Field(default=48.0, gt=0)
    expiring_competence_days: int = Field(default=60, ge=0)
    #: Days after an incident was closed, withdrawn or referred (by its date in KOKOMA_TIMEZONE)
    #: before its reporter's name and contact are erased (PRIVACY.md).
    reporter_retention_days: int = Field(default=365, ge=0)
    #: Connections per process: pool + overflow. The defaults (8 + 8) let three worker
    #: processes (48) and the worker and CLI share PostgreSQL's default max_connections=100.
    db_pool_size: int = Field(default=8, ge=1)
    db_max_overflow: int = Field(default=8, ge=0)
    #: Connections of the event-loop read path (app.core.reads) per process, on top of the pool:
    #: each holds a connection for one statement only, so a few serve every concurrent read.
    db_read_pool_size: int = Field(default=4, ge=1, le=32)
    #: Group commit of the reporter access log (app.core.group_commit): at most this many
    #: entries per commit, and how long the writer waits for more once one arrived (0: it
    #: commits what queued while the previous commit ran).
    access_log_batch_rows: int = Field(default=1000, ge=1, le=10_000)
    access_log_batch_wait_ms: float = Field(default=0.0, ge=0, le=100)
    #: Runs of a request whose transaction hit a deadlock or serialization failure (then 503).
    db_retry_attempts: int = Field(default=5, ge=1, le=20)
    #: Base of the jittered exponential backoff between those runs.
    db_retry_backoff_seconds: float = Field(default=0.02, ge=0)
    sqlite_busy_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Webhooks: attempts per delivery, per-attempt timeout, backoff (base · 2^(n-1), jittered,
    #: capped), parallel deliveries per worker; private/loopback targets only when allowed.
    webhook_max_attempts: int = Field(default=8, ge=1)
    #: Days an outbox event (and its deliveries and recorded attempts) is kept once fanned out
    #: and no delivery of it is pending any more.
    outbox_retention_days: int = Field(default=30, ge=1)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_seconds: float = Field(default=30.0, ge=0)
    webhook_backoff_max_seconds: float = Field(default=6 * 3600.0, ge=0)
    webhook_concurrency: int = Field(default=8, ge=1)
    webhooks_allow_private: bool = False
    #: Rows per write batch of the bulk imports.
    import_batch_rows: int = Field(default=2000, ge=1, le=10_000)
    #: How long an import's body may take to arrive (it is received in full before the import
    #: takes a database session); longer → 408.
    import_body_timeout_seconds: float = Field(default=600.0, gt=0)
    log_level: str = "INFO"
    #: ``json`` (one object per line, for log shippers), ``text`` (for a person), or ``auto``:
    #: text when stdout is a terminal, JSON otherwise.
    log_format: str = Field(default="auto", pattern="^(auto|json|text)$")
    #: Requests per minute per API key (token bucket, burst = one minute's worth); 0 = off.
    rate_limit_per_minute: int = Field(default=12_000, ge=0)
    #: Origins (``scheme://host[:port]``, comma-separated, exact) of browser apps allowed to call
    #: the API (CORS); empty = none.
    cors_origins: str = ""
    #: Serve Prometheus metrics at ``/metrics`` (unauthenticated: bind it to internal networks).
    metrics_enabled: bool = True
    #: Seconds a new PostgreSQL connection may take before the request fails with 503.
    db_connect_timeout_seconds: int = Field(default=5, ge=1)
    #: Sign-in (OIDC): access tokens (JWTs) from this issuer are accepted beside API keys;
    #: unset → API keys only. Discovery at ``{issuer}/.well-known/openid-configuration``.
    oidc_issuer: str | None = None
    #: The ``aud`` the tokens must carry (required when an issuer is set).
    oidc_audience: str | None = None
    #: A token with an unknown ``kid`` refetches the JWKS at most this often.
    oidc_jwks_min_refresh_seconds: float = Field(default=60.0, ge=0)
    #: Claim holding the roles (``kokoma-admin`` …); dotted paths such as ``realm_access.roles``.
    oidc_roles_claim: str = Field(default="roles", min_length=1)
    #: Claim holding a partner's organisation id.
    oidc_organisation_claim: str = Field(default="kokoma_organisation", min_length=1)
    #: Client id of a public client (authorization code + PKCE) for signing in on ``/docs``.
    oidc_docs_client_id: str | None = None
    #: Seconds the discovery document and JWKS requests may take.
    oidc_http_timeout_seconds: float = Field(default=5.0, gt=0)
    workers: int = Field(default=1, ge=1)
    # --- e-mail notifications (README "Notifications") ---------------------------------------
    #: SMTP server; mail is on only when this and ``mail_from`` are set.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str | None = None
    mail_language: str = Field(default="de", pattern="^(de|en)$")
    #: Base URL of the web frontend; mails link to ``{public_url}/assignments/{id}``.
    public_url: str | None = None
    #: Hours before an unanswered offer expires when its manager is reminded (0 = no reminder).
    offer_reminder_hours: float = Field(default=12.0, ge=0)
    #: Comma-separated addresses that hear of what needs a coordinator.
    coordinator_emails: str = ""
    #: Set: coordinators get one digest per this many minutes instead of one mail per event.
    coordinator_digest_minutes: int | None = Field(default=None, ge=1)
    #: Hours an incident may stay ``reported`` before the coordinators are told.
    triage_sla_hours: float = Field(default=48.0, gt=0)
    mail_max_attempts: int = Field(default=8, ge=1)
    mail_backoff_seconds: float = Field(default=60.0, ge=0)
    mail_backoff_max_seconds: float = Field(default=6 * 3600.0, ge=0)

    @field_validator("coordinator_emails")
    @classmethod
    def _coordinator_addresses_valid(cls, value: str) -> str:
        from email_validator import EmailNotValidError, validate_email

        for address in (a.strip() for a in value.split(",")):
            if not address:
                continue
            try:
                validate_email(address, check_deliverability=False)
            except EmailNotValidError as exc:
                raise ValueError(f"KOKOMA_COORDINATOR_EMAILS: {address!r}: {exc}") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins_exact(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",")):
            if origin and not _ORIGIN_RE.match(origin):
                raise ValueError(
                    f"KOKOMA_CORS_ORIGINS: {origin!r} is not an origin: write scheme://host[:port] "
                    "exactly as the browser sends it (no path, no trailing slash, no wildcard)"
                )
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return list(dict.fromkeys(o.strip() for o in self.cors_origins.split(",") if o.strip()))

    @property
    def mail_enabled(self) -> bool:
        return bool(self.smtp_host) and bool(self.mail_from)

    @property
    def coordinator_addresses(self) -> list[str]:
        return list(
            dict.fromkeys(
                a.strip().lower() for a in self.coordinator_emails.split(",") if a.strip()
            )
        )

    host: str = "127.0.0.1"
    port: int = 8000

    @model_validator(mode="after")
    def _oidc_needs_audience(self) -> Settings:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("KOKOMA_OIDC_AUDIENCE is required when KOKOMA_OIDC_ISSUER is set")
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver made explicit (psycopg 3 for PostgreSQL)."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
