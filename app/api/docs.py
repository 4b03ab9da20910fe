"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without internet access.

FastAPI's own pages load their JavaScript and CSS from a public CDN, so on a city intranet they
stay blank. Here the assets come from the ``fastapi-offline`` package (Swagger UI and ReDoc
builds packaged for Python) and are served by kokoma itself under ``/docs-assets``. Each page
carries a Content-Security-Policy that allows no other host: scripts only from kokoma and the
page's own inline start-up script (by its SHA-256), data only from kokoma — and, when sign-in on
``/docs`` is configured, the identity provider's origin for its token and discovery requests.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from app.core.config import Settings

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str, extra_origins: tuple[str, ...] = ()) -> str:
    """The policy for one docs page: its inline scripts allowed by hash, every other resource
    from this server only (``extra_origins``: the identity provider, for sign-in)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    connect = " ".join(("'self'", *extra_origins))
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {hashes}".rstrip(),
            # Swagger UI sets style attributes and ReDoc injects <style> elements.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src {connect}",
            # ReDoc's search index runs in a worker it creates from a blob.
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _page(html: HTMLResponse, extra_origins: tuple[str, ...]) -> HTMLResponse:
    body = bytes(html.body).decode()
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": content_security_policy(body, extra_origins),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def install_docs(app: FastAPI, settings: Settings) -> None:
    """Serve the packaged assets and the two pages (create the app with ``docs_url=None`` and
    ``redoc_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    sign_in = (
        (_origin(settings.oidc_issuer),)
        if settings.oidc_issuer and settings.oidc_docs_client_id
        else ()
    )
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} — Swagger UI",
                oauth2_redirect_url=f"{root}{redirect_url}",
                init_oauth=app.swagger_ui_init_oauth,
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                # No validator badge: it would ask a public validation service about our document.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            ),
            sign_in,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _page(get_swagger_ui_oauth2_redirect_html(), sign_in)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} — ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            ),
            (),
        )
