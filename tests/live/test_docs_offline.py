"""``/docs`` and ``/redoc`` work on a network without internet access: their assets come from
kokoma itself, a Content-Security-Policy allows no other host, and headless Chromium — able to
reach loopback only — renders the operations."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from app.api.docs import ASSETS_DIR, content_security_policy
from tests.live.conftest import LiveServer

BROWSER_SECONDS = 90  # one Chromium run; a loaded 2-core machine needs most of it
#: The rendered ``incidents_list`` operation block of each page.
RENDERED = {
    "/docs": 'id="operations-incidents-incidents_list"',
    "/redoc": 'id="tag/incidents/operation/incidents_list"',
}
_URL_ATTR = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']""")


class TestPages:
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    def test_every_reference_is_local(self, client: Any, path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200
        urls = _URL_ATTR.findall(response.text)
        assert urls or path.endswith("redirect")
        for url in urls:
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url
        assert "cdn" not in response.text.lower()

    @pytest.mark.parametrize("path", ["/docs", "/redoc"])
    def test_csp_allows_no_other_host(self, client: Any, path: str) -> None:
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert policy == content_security_policy(response.text)
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        for name, sources in directives.items():
            for source in sources.split():
                assert source in (
                    "'self'",
                    "'none'",
                    "'unsafe-inline'",
                    "data:",
                    "blob:",
                ) or source.startswith("'sha256-"), (name, source)
        assert "'unsafe-inline'" not in directives["script-src"]

    def test_inline_script_allowed_by_its_hash_only(self, client: Any) -> None:
        policy = client.get("/docs").headers["content-security-policy"]
        assert len(re.findall(r"'sha256-[A-Za-z0-9+/=]+'", policy)) == 1
        assert "'sha256-" not in client.get("/redoc").headers["content-security-policy"]

    def test_assets_are_packaged(self, client: Any) -> None:
        for name, kind in (
            ("swagger-ui-bundle.js", "javascript"),
            ("swagger-ui.css", "css"),
            ("redoc.standalone.js", "javascript"),
        ):
            assert (ASSETS_DIR / name).is_file()
            response = client.get(f"/docs-assets/{name}")
            assert response.status_code == 200
            assert kind in response.headers["content-type"]
        assert client.get("/docs-assets/../pyproject.toml").status_code == 404


def test_sign_in_on_docs_adds_the_identity_provider_only() -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import oidc_settings

    issuer = "https://login.example-city.de/realms/kokoma"
    with (
        oidc_settings(issuer, KOKOMA_OIDC_DOCS_CLIENT_ID="kokoma-docs"),
        TestClient(create_app()) as client,
    ):
        docs = client.get("/docs")
        redoc = client.get("/redoc")
    connect = next(
        d
        for d in docs.headers["content-security-policy"].split("; ")
        if d.startswith("connect-src")
    )
    assert connect == "connect-src 'self' https://login.example-city.de"
    assert '"clientId": "kokoma-docs"' in docs.text
    assert "example-city" not in redoc.headers["content-security-policy"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is needed: scripts/test.sh installs it (apt-get install chromium)")
    return path


def _render(url: str, screenshot: Path) -> str:
    """The DOM after the page's scripts ran, in a Chromium that reaches loopback only: names
    resolve to nothing but 127.0.0.1, and everything not on loopback goes to a closed proxy."""
    with tempfile.TemporaryDirectory(prefix="kokoma-chromium-") as profile:
        completed = subprocess.run(  # noqa: S603 - fixed argv
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=127.0.0.1",
                "--virtual-time-budget=20000",
                "--window-size=1280,1600",
                f"--screenshot={screenshot}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=BROWSER_SECONDS,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_browser_renders_operations_offline(
    live_server: LiveServer, tmp_path: Path, path: str
) -> None:
    url = live_server()
    screenshot = tmp_path / f"{path.strip('/')}.png"
    dom = _render(url + path, screenshot)
    assert RENDERED[path] in dom, dom[:2000]
    assert "Register an incident" in dom  # the summary of incidents_create, from the document
    assert screenshot.stat().st_size > 10_000  # a picture of the page, kept in tmp_path
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
