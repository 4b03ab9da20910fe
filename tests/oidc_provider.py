"""A real OpenID provider for the sign-in tests: ``tests/oidc/provider.mjs`` (npm ``oidc-provider``)
run by Node on a loopback port, with signing keys this module generates.

``scripts/test.sh`` installs its packages (``npm ci`` in ``tests/oidc``). Start-up is bounded
(:data:`START_TIMEOUT`), every process is stopped by the fixture that started it.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

DIR = Path(__file__).resolve().parent / "oidc"
AUDIENCE = "https://kokoma.test/api"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class SigningKeys:
    """The provider's keys: an RSA key (RS256/PS256) and an EC P-256 key (ES256)."""

    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    rsa_kid: str
    ec_kid: str

    @classmethod
    def generate(cls) -> SigningKeys:
        tag = uuid.uuid4().hex[:8]
        return cls(
            rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec=ec.generate_private_key(ec.SECP256R1()),
            rsa_kid=f"rsa-{tag}",
            ec_kid=f"ec-{tag}",
        )

    def private_jwks(self) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa, as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec, as_dict=True)
        for jwk in (rsa_jwk, ec_jwk):
            jwk.pop("key_ops", None)  # "use": "sig" says it (the provider wants one of them)
        return {
            "keys": [
                {**rsa_jwk, "kid": self.rsa_kid, "use": "sig"},
                {**ec_jwk, "kid": self.ec_kid, "use": "sig"},
            ]
        }


@dataclass
class ClientCredentials:
    client_id: str
    client_secret: str


@dataclass
class OidcProvider:
    """One provider process. ``start()`` waits until it listens; ``stop()`` ends it."""

    keys: SigningKeys = field(default_factory=SigningKeys.generate)
    issuer: str = ""
    port: int = 0
    process: subprocess.Popen[str] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    log: list[str] = field(default_factory=list)

    def start(self, port: int | None = None) -> OidcProvider:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is needed for the sign-in tests (scripts/test.sh).")
        if not (DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "tests/oidc/node_modules is missing: run scripts/test.sh (or `npm ci` in tests/oidc)."
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="kokoma-oidc-")
        jwks_file = Path(self._tmp.name) / "jwks.json"
        jwks_file.write_text(json.dumps(self.keys.private_jwks()), encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "OIDC_JWKS_FILE": str(jwks_file),
            "OIDC_AUDIENCE": AUDIENCE,
            "OIDC_PORT": str(port if port is not None else self.port),
        }
        self.process = subprocess.Popen(  # noqa: S603 — fixed argv
            [node, str(DIR / "provider.mjs")],
            cwd=DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.log.append(line.rstrip("\n"))  # kept for failure messages
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(f"the OpenID provider did not start in time: {self.log}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise RuntimeError(f"the OpenID provider exited: {self.log}")
            if line.startswith("listening "):
                self.issuer = line.removeprefix("listening ").strip()
                self.port = int(self.issuer.rsplit(":", 1)[1])
                return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def rotate(self) -> None:
        """Restart on the same port (same issuer) signing with new keys."""
        port = self.port
        self.stop()
        self.keys = SigningKeys.generate()
        self.start(port)

    # --- the provider's real endpoints -------------------------------------------------------

    def register(self, claims: dict[str, Any], alg: str = "RS256") -> ClientCredentials:
        """Dynamic client registration: a client whose access tokens carry ``claims``."""
        response = httpx.post(
            f"{self.issuer}/reg",
            json={
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_post",
                "kokoma_claims": claims,
                "kokoma_alg": alg,
            },
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        return ClientCredentials(body["client_id"], body["client_secret"])

    def token(self, client: ClientCredentials, resource: str | None = None) -> str:
        """An access token from the token endpoint (client credentials grant)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        if resource is not None:
            form["resource"] = resource
        response = httpx.post(f"{self.issuer}/token", data=form, timeout=10)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def token_for(self, claims: dict[str, Any], alg: str = "RS256") -> tuple[str, str]:
        """Register a client with ``claims`` and get a token: ``(token, sub)``."""
        client = self.register(claims, alg)
        return self.token(client), client.client_id

    # --- forged tokens (signed by the test itself) -------------------------------------------

    def forge(
        self, claims: dict[str, Any], *, key: Any = None, kid: str | None = None, alg: str = "RS256"
    ) -> str:
        """A token signed with the provider's RSA key (or ``key``), standard claims filled in."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "forged-user",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        return jwt.encode(
            payload,
            key or self.keys.rsa,
            algorithm=alg,
            headers={"kid": kid or self.keys.rsa_kid, "typ": "at+jwt"},
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def decode_segment(segment: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))
