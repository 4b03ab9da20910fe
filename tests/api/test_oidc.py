"""Sign-in through an identity provider (issue 16): OIDC access tokens beside API keys.

Tokens come from a real OpenID provider (npm ``oidc-provider``, tests/oidc/) on loopback, from its
real token endpoint; the malformed ones are forged here with PyJWT/cryptography.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.oidc import jwks_cache
from app.core.security import key_cache
from app.models.incident import Incident, IncidentEvent
from app.models.system import AuditEvent
from tests.conftest import oidc_settings
from tests.factories import (
    incident_body,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
    table_counts,
)
from tests.oidc_provider import (
    AUDIENCE,
    OidcProvider,
    b64url,
    b64url_json,
    decode_segment,
)

API = "/api/v1"
PERSON = "Erika Mustermann"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_invalid_token(response: Any, *words: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/invalid-token")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    for word in words:
        assert word in body["detail"]


def assert_forbidden(response: Any, type_: str, *words: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"].endswith(f"/{type_}")
    for word in words:
        assert word in body["detail"]


# --- a person signs in ---------------------------------------------------------------------------


class TestSignIn:
    def test_admin_from_the_provider_uses_the_api(self, client, oidc) -> None:
        token, sub = oidc.token_for({"roles": ["kokoma-admin"], "name": PERSON})
        me = client.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json() == {
            "kind": "oidc",
            "subject": f"oidc:{sub}",
            "display_name": PERSON,
            "role": "admin",
            "organisation_id": None,
            "manager_id": None,
        }
        assert client.get(f"{API}/api-keys", headers=bearer(token)).status_code == 200

    @pytest.mark.parametrize("alg", ["ES256", "PS256"])
    def test_ec_and_pss_signed_tokens(self, client, oidc, alg) -> None:
        token, _ = oidc.token_for({"roles": ["kokoma-viewer"]}, alg=alg)
        assert jwt.get_unverified_header(token)["alg"] == alg
        me = client.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "viewer"

    def test_keycloak_realm_roles_by_dotted_path(self, client, oidc_provider) -> None:
        claims = {
            "realm_access": {"roles": ["offline_access", "kokoma-coordinator"]},
            "preferred_username": "emuster",
        }
        token, _ = oidc_provider.token_for(claims)
        with oidc_settings(oidc_provider.issuer, KOKOMA_OIDC_ROLES_CLAIM="realm_access.roles"):
            me = client.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "coordinator"
        assert me.json()["display_name"] == "emuster"

    def test_several_roles_give_the_most_privileged(self, client, oidc) -> None:
        token, _ = oidc.token_for({"roles": ["kokoma-viewer", "kokoma-coordinator", "x"]})
        assert client.get(f"{API}/me", headers=bearer(token)).json()["role"] == "coordinator"

    def test_no_kokoma_role_is_403_naming_the_claim(self, client, oidc_provider) -> None:
        token, _ = oidc_provider.token_for(
            {"roles": ["other-app-admin"], "groups": ["kokoma-admin"]}
        )
        with oidc_settings(oidc_provider.issuer, KOKOMA_OIDC_ROLES_CLAIM="groups.none"):
            assert_forbidden(
                client.get(f"{API}/me", headers=bearer(token)), "no-role", "'groups.none'"
            )
        with oidc_settings(oidc_provider.issuer):
            assert_forbidden(client.get(f"{API}/me", headers=bearer(token)), "no-role", "'roles'")

    def test_role_rules_hold_for_a_person(self, client, oidc) -> None:
        seed_reference()
        make_incident()
        token, _ = oidc.token_for({"roles": ["kokoma-viewer"]})
        response = client.get(f"{API}/incidents", headers=bearer(token))
        assert response.status_code == 403
        assert client.get(f"{API}/recommendations", headers=bearer(token)).status_code == 200
        assert client.get(f"{API}/api-keys", headers=bearer(token)).status_code == 403

    def test_api_keys_work_beside_tokens(self, client, oidc) -> None:
        headers = make_key("admin")
        me = client.get(f"{API}/me", headers=headers)
        assert me.status_code == 200
        body = me.json()
        assert body["kind"] == "api_key" and body["display_name"] == "test admin"
        assert body["subject"].startswith("api_key:")
        uuid.UUID(body["subject"].removeprefix("api_key:"))

    def test_unconfigured_only_api_keys(self, client, oidc_provider) -> None:
        token, _ = oidc_provider.token_for({"roles": ["kokoma-admin"]})
        assert not get_settings().oidc_issuer
        response = client.get(f"{API}/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["detail"] == "The API key is unknown or revoked."


class TestPartner:
    def test_partner_bound_to_its_organisation(self, client, oidc) -> None:
        seed_reference()
        own, other = make_organisation("Own"), make_organisation("Other")
        theirs = make_incident(organisation_id=other)
        token, _ = oidc.token_for({"roles": ["kokoma-partner"], "kokoma_organisation": str(own)})
        me = client.get(f"{API}/me", headers=bearer(token)).json()
        assert me["role"] == "partner" and me["organisation_id"] == str(own)
        created = client.post(f"{API}/incidents", json=incident_body(), headers=bearer(token))
        assert created.status_code == 201, created.text
        assert created.json()["organisation_id"] == str(own)
        # another organisation's incident does not exist for them
        assert client.get(f"{API}/incidents/{theirs.id}", headers=bearer(token)).status_code == 404

    @pytest.mark.parametrize("organisation", [None, "not-a-uuid", "unknown"])
    def test_unknown_organisation_is_403(self, client, oidc, organisation) -> None:
        claims: dict[str, Any] = {"roles": ["kokoma-partner"]}
        if organisation is not None:
            claims["kokoma_organisation"] = (
                str(uuid.uuid4()) if organisation == "unknown" else organisation
            )
        token, _ = oidc.token_for(claims)
        assert_forbidden(client.get(f"{API}/me", headers=bearer(token)), "unknown-organisation")

    def test_organisation_claim_is_configurable(self, client, oidc_provider) -> None:
        own = make_organisation("Own")
        token, _ = oidc_provider.token_for({"roles": ["kokoma-partner"], "org": {"id": str(own)}})
        with oidc_settings(oidc_provider.issuer, KOKOMA_OIDC_ORGANISATION_CLAIM="org.id"):
            me = client.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["organisation_id"] == str(own)


class TestManager:
    @pytest.fixture(autouse=True)
    def _districts(self) -> None:
        seed_reference()

    def test_manager_by_verified_email(self, client, oidc) -> None:
        manager_id = make_manager(email="Volunteer@Example.org")
        other = make_manager()
        token, _ = oidc.token_for(
            {"roles": ["kokoma-manager"], "email": "volunteer@example.org", "email_verified": True}
        )
        me = client.get(f"{API}/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["manager_id"] == str(manager_id)
        assert client.get(f"{API}/managers/{manager_id}", headers=bearer(token)).status_code == 200
        # a manager edits only their own profile
        response = client.patch(
            f"{API}/managers/{other}", json={"phone": "+49 1"}, headers=bearer(token)
        )
        assert response.status_code in (403, 404)

    @pytest.mark.parametrize(
        "claims",
        [
            {"email": "volunteer@example.org", "email_verified": False},
            {"email": "volunteer@example.org"},
            {"email_verified": True},
            {"email": "nobody@example.org", "email_verified": True},
        ],
    )
    def test_unverified_or_unknown_email_is_403(self, client, oidc, claims) -> None:
        make_manager(email="volunteer@example.org")
        token, _ = oidc.token_for({"roles": ["kokoma-manager"], **claims})
        assert_forbidden(client.get(f"{API}/me", headers=bearer(token)), "unknown-manager")

    def test_retired_manager_is_403(self, client, oidc) -> None:
        make_manager(email="volunteer@example.org", status="retired")
        token, _ = oidc.token_for(
            {"roles": ["kokoma-manager"], "email": "volunteer@example.org", "email_verified": True}
        )
        assert_forbidden(client.get(f"{API}/me", headers=bearer(token)), "retired-manager")


# --- refused tokens ----------------------------------------------------------------------------------


class TestRefused:
    def test_expired_token(self, client, oidc) -> None:
        now = int(time.time())
        token = oidc.forge({"roles": ["kokoma-admin"], "iat": now - 600, "exp": now - 61})
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "expired")

    def test_leeway_of_a_minute(self, client, oidc) -> None:
        now = int(time.time())
        late = oidc.forge({"roles": ["kokoma-admin"], "iat": now - 600, "exp": now - 30})
        early = oidc.forge({"roles": ["kokoma-admin"], "nbf": now + 30})
        for token in (late, early):
            assert client.get(f"{API}/me", headers=bearer(token)).status_code == 200

    def test_not_yet_valid(self, client, oidc) -> None:
        token = oidc.forge({"roles": ["kokoma-admin"], "nbf": int(time.time()) + 120})
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "not yet valid")

    def test_wrong_audience_from_the_provider(self, client, oidc) -> None:
        client_ = oidc.register({"roles": ["kokoma-admin"]})
        token = oidc.token(client_, resource="https://another-app.test/api")
        assert decode_segment(token.split(".")[1])["aud"] == "https://another-app.test/api"
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "aud")

    def test_wrong_issuer(self, client, oidc) -> None:
        token = oidc.forge({"roles": ["kokoma-admin"], "iss": "https://evil.test"})
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "iss")

    def test_missing_audience_and_subject(self, client, oidc) -> None:
        for drop in ("aud", "sub", "exp"):
            token = jwt.encode(
                {
                    k: v
                    for k, v in {
                        "iss": oidc.issuer,
                        "aud": AUDIENCE,
                        "sub": "x",
                        "exp": int(time.time()) + 60,
                        "roles": ["kokoma-admin"],
                    }.items()
                    if k != drop
                },
                oidc.keys.rsa,
                algorithm="RS256",
                headers={"kid": oidc.keys.rsa_kid},
            )
            assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)))

    def test_unknown_kid_after_one_refresh(self, client, oidc) -> None:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        good, _ = oidc.token_for({"roles": ["kokoma-admin"]})
        assert client.get(f"{API}/me", headers=bearer(good)).status_code == 200
        cache = jwks_cache(get_settings())
        fetches = cache.fetches
        for kid in ("unknown-1", "unknown-2", oidc.keys.rsa_kid):
            token = oidc.forge({"roles": ["kokoma-admin"]}, key=stranger, kid=kid)
            response = client.get(f"{API}/me", headers=bearer(token))
            if kid == oidc.keys.rsa_kid:  # a known kid, the wrong key: the signature fails
                assert_invalid_token(response, "signature")
            else:
                assert_invalid_token(response, "kid")
        # unknown kids refetch the JWKS at most once per KOKOMA_OIDC_JWKS_MIN_REFRESH_SECONDS
        assert cache.fetches == fetches

    def test_unknown_kid_refetches_when_the_interval_allows(self, client, oidc_provider) -> None:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with oidc_settings(oidc_provider.issuer, KOKOMA_OIDC_JWKS_MIN_REFRESH_SECONDS="0"):
            cache = jwks_cache(get_settings())
            for n in (1, 2):
                token = oidc_provider.forge({"roles": ["kokoma-admin"]}, key=stranger, kid="nope")
                assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "kid")
                assert cache.fetches == n  # looked again, still unknown

    def test_alg_none(self, client, oidc) -> None:
        header = b64url_json({"alg": "none", "typ": "JWT", "kid": oidc.keys.rsa_kid})
        payload = b64url_json(
            {
                "iss": oidc.issuer,
                "aud": AUDIENCE,
                "sub": "x",
                "exp": int(time.time()) + 60,
                "roles": ["kokoma-admin"],
            }
        )
        for token in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
            assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "none")

    def test_hs256_signed_with_the_public_key(self, client, oidc) -> None:
        """Algorithm confusion: the RSA *public* key (which anyone can fetch) as HMAC secret."""
        public_pem = oidc.keys.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = b64url_json({"alg": "HS256", "typ": "JWT", "kid": oidc.keys.rsa_kid})
        payload = b64url_json(
            {
                "iss": oidc.issuer,
                "aud": AUDIENCE,
                "sub": "x",
                "exp": int(time.time()) + 60,
                "roles": ["kokoma-admin"],
            }
        )
        signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        token = f"{header}.{payload}.{b64url(signature)}"
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "HS256")

    def test_tampered_payload(self, client, oidc) -> None:
        token, _ = oidc.token_for({"roles": ["kokoma-viewer"]})
        header, payload, signature = token.split(".")
        claims = decode_segment(payload)
        assert client.get(f"{API}/me", headers=bearer(token)).json()["role"] == "viewer"
        claims["roles"] = ["kokoma-admin"]
        forged = f"{header}.{b64url_json(claims)}.{signature}"
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(forged)), "signature")

    def test_rs256_header_on_the_ec_key(self, client, oidc) -> None:
        token = oidc.forge({"roles": ["kokoma-admin"]}, kid=oidc.keys.ec_kid)
        assert_invalid_token(client.get(f"{API}/me", headers=bearer(token)), "does not fit")

    def test_garbage_shaped_like_a_jwt(self, client, oidc) -> None:
        assert_invalid_token(client.get(f"{API}/me", headers=bearer("eyJnotjson.abc.def")))

    def test_refused_write_changes_nothing(self, client, oidc) -> None:
        seed_reference()
        before = table_counts()
        token = oidc.forge({"roles": ["kokoma-admin"], "iss": "https://evil.test"})
        response = client.post(f"{API}/incidents", json=incident_body(), headers=bearer(token))
        assert_invalid_token(response)
        assert table_counts() == before

    def test_unreachable_provider_is_503(self, client, oidc_provider) -> None:
        token, _ = oidc_provider.token_for({"roles": ["kokoma-admin"]})
        with oidc_settings("http://127.0.0.1:9"):  # nothing listens on the discard port
            forged = jwt.encode(
                {
                    "iss": "http://127.0.0.1:9",
                    "aud": AUDIENCE,
                    "sub": "x",
                    "exp": int(time.time()) + 60,
                },
                oidc_provider.keys.rsa,
                algorithm="RS256",
                headers={"kid": "k"},
            )
            for value in (token, forged):
                response = client.get(f"{API}/me", headers=bearer(value))
                assert response.status_code == 503, response.text
                assert response.json()["type"].endswith("/service-unavailable")


# --- key rotation ---------------------------------------------------------------------------------


class TestKeyRotation:
    def test_rotation_at_the_provider_is_picked_up_without_restart(self, client) -> None:
        provider = OidcProvider().start()
        try:
            with oidc_settings(
                provider.issuer,
                KOKOMA_OIDC_JWKS_MIN_REFRESH_SECONDS="1",
                KOKOMA_API_KEY_CACHE_SECONDS="0",
            ):
                old, _ = provider.token_for({"roles": ["kokoma-admin"]})
                assert client.get(f"{API}/me", headers=bearer(old)).status_code == 200
                old_kid = provider.keys.rsa_kid
                provider.rotate()
                assert provider.keys.rsa_kid != old_kid
                new, _ = provider.token_for({"roles": ["kokoma-coordinator"]})
                time.sleep(1.1)  # the refresh interval since the first fetch
                me = client.get(f"{API}/me", headers=bearer(new))
                assert me.status_code == 200, me.text
                assert me.json()["role"] == "coordinator"
                # the old key is gone from the provider's JWKS: its tokens no longer verify
                time.sleep(1.1)
                assert_invalid_token(client.get(f"{API}/me", headers=bearer(old)), "kid")
        finally:
            provider.stop()


# --- people in the record ---------------------------------------------------------------------------


class TestRecord:
    def test_audit_and_timeline_name_the_person(self, client, oidc) -> None:
        seed_reference()
        token, sub = oidc.token_for({"roles": ["kokoma-coordinator"], "name": PERSON})
        created = client.post(f"{API}/incidents", json=incident_body(), headers=bearer(token))
        assert created.status_code == 201, created.text
        incident_id = created.json()["id"]
        events = client.get(f"{API}/incidents/{incident_id}/events", headers=bearer(token))
        first = events.json()["items"][0]
        assert first["actor_subject"] == f"oidc:{sub}"
        assert first["actor_name"] == PERSON
        assert first["actor_id"] is None and first["actor_role"] == "coordinator"

        admin = make_key("admin")
        audit = client.get(
            f"{API}/audit", params={"principal_subject": f"oidc:{sub}"}, headers=admin
        ).json()["items"]
        assert {(e["action"], e["resource"]) for e in audit} >= {("create", "incident")}
        assert all(e["principal_name"] == PERSON and e["principal_id"] is None for e in audit)

    def test_reporter_access_log_names_the_person(self, client, oidc) -> None:
        seed_reference()
        incident = make_incident()
        token, sub = oidc.token_for({"roles": ["kokoma-coordinator"], "name": PERSON})
        response = client.get(f"{API}/incidents/{incident.id}", headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["reporter"]["name"] == "Erika Muster"
        with session_scope(write=False) as session:
            entries = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.kind == "access", AuditEvent.resource_id == str(incident.id)
                )
            ).all()
            assert [(e.principal_subject, e.principal_name, e.principal_role) for e in entries] == [
                (f"oidc:{sub}", PERSON, "coordinator")
            ]

    def test_api_key_entries_name_the_key(self, client) -> None:
        seed_reference()
        headers = make_key("coordinator")
        created = client.post(f"{API}/incidents", json=incident_body(), headers=headers)
        key_subject = client.get(f"{API}/me", headers=headers).json()["subject"]
        with session_scope(write=False) as session:
            event = session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == uuid.UUID(created.json()["id"])
                )
            ).first()
            assert (event.actor_subject, event.actor_name) == (key_subject, "test coordinator")

    def test_erasure_and_subject_access_by_a_person(self, client, oidc) -> None:
        seed_reference()
        incident = make_incident()
        admin, sub = oidc.token_for({"roles": ["kokoma-admin"], "name": PERSON})
        report = client.get(
            f"{API}/data-subject", params={"email": "erika@example.org"}, headers=bearer(admin)
        )
        assert report.status_code == 200, report.text
        assert [i["id"] for i in report.json()["incidents"]] == [str(incident.id)]
        erased = client.post(f"{API}/incidents/{incident.id}/reporter/erase", headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        with session_scope(write=False) as session:
            assert session.get(Incident, incident.id).reporter_name is None
            event = session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == incident.id,
                    IncidentEvent.type == "reporter_erased",
                )
            ).one()
            assert (event.actor_subject, event.actor_name) == (f"oidc:{sub}", PERSON)
            actions = {
                (e.action, e.principal_subject)
                for e in session.scalars(
                    select(AuditEvent).where(AuditEvent.resource_id == str(incident.id))
                )
            }
        assert {("subject_access", f"oidc:{sub}"), ("erase_reporter", f"oidc:{sub}")} <= actions


# --- OpenAPI and /docs ------------------------------------------------------------------------------


class TestDocs:
    def test_openid_connect_scheme_when_configured(self, oidc_provider) -> None:
        from fastapi.testclient import TestClient

        from app.main import create_app

        with oidc_settings(oidc_provider.issuer, KOKOMA_OIDC_DOCS_CLIENT_ID="kokoma-docs"):
            app = create_app()
            with TestClient(app) as test_client:
                schema = test_client.get("/openapi.json").json()
                docs = test_client.get("/docs").text
        scheme = schema["components"]["securitySchemes"]["oidc"]
        assert scheme == {
            **scheme,
            "type": "openIdConnect",
            "openIdConnectUrl": f"{oidc_provider.issuer}/.well-known/openid-configuration",
        }
        me = schema["paths"]["/api/v1/me"]["get"]
        assert me["security"] == [{"bearer": []}, {"oidc": []}]
        assert schema["paths"]["/healthz"]["get"]["security"] == []
        assert '"usePkceWithAuthorizationCodeGrant": true' in docs
        assert '"clientId": "kokoma-docs"' in docs

    def test_no_scheme_unconfigured(self) -> None:
        from app.main import create_app

        schema = create_app().openapi()
        assert "oidc" not in schema.get("components", {}).get("securitySchemes", {})
        assert "/api/v1/me" in schema["paths"]


class TestManagerErasure:
    def test_erasure_pseudonymises_the_managers_own_entries(self, client, oidc) -> None:
        seed_reference()
        manager_id = make_manager(display_name="Vera Volunteer", email="vera@example.org")
        token, sub = oidc.token_for(
            {
                "roles": ["kokoma-manager"],
                "name": "Vera Volunteer",
                "email": "vera@example.org",
                "email_verified": True,
            }
        )
        coordinator, _ = oidc.token_for({"roles": ["kokoma-coordinator"], "name": PERSON})
        own = client.get(f"{API}/managers/{manager_id}", headers=bearer(token))
        assert own.status_code == 200 and own.json()["email"] == "vera@example.org"
        assert (
            client.get(f"{API}/managers/{manager_id}", headers=bearer(coordinator)).status_code
            == 200
        )

        retired = client.post(
            f"{API}/managers/{manager_id}/status",
            json={"status": "retired"},
            headers=bearer(coordinator),
        )
        assert retired.status_code == 200, retired.text
        # a retired manager's token no longer signs in (after the principal cache expires)
        key_cache.clear()
        assert_forbidden(client.get(f"{API}/me", headers=bearer(token)), "retired-manager")

        admin = make_key("admin")
        assert client.post(f"{API}/managers/{manager_id}/erase", headers=admin).status_code == 200
        pseudonym = client.get(f"{API}/managers/{manager_id}", headers=admin).json()["display_name"]
        with session_scope(write=False) as session:
            names = {
                (e.principal_subject, e.principal_name)
                for e in session.scalars(
                    select(AuditEvent).where(AuditEvent.resource_id == str(manager_id))
                )
            }
        assert (f"oidc:{sub}", pseudonym) in names
        assert not any(name == "Vera Volunteer" for _, name in names)
        assert any(name == PERSON for _, name in names)  # the coordinator stays named


class TestIdempotency:
    def test_scoped_to_the_person_across_renewed_tokens(self, client, oidc) -> None:
        seed_reference()
        person = oidc.register({"roles": ["kokoma-coordinator"], "name": PERSON})
        first, renewed = oidc.token(person), oidc.token(person)
        assert first != renewed
        key = {"Idempotency-Key": "create-once"}
        created = client.post(
            f"{API}/incidents", json=incident_body(), headers={**bearer(first), **key}
        )
        assert created.status_code == 201, created.text
        again = client.post(
            f"{API}/incidents", json=incident_body(), headers={**bearer(renewed), **key}
        )
        assert again.status_code == 201
        assert again.json()["id"] == created.json()["id"]
        # someone else's records are their own
        other, _ = oidc.token_for({"roles": ["kokoma-coordinator"]})
        theirs = client.post(
            f"{API}/incidents", json=incident_body(), headers={**bearer(other), **key}
        )
        assert theirs.status_code == 201 and theirs.json()["id"] != created.json()["id"]
        assert table_counts()["incident"] == 2

    def test_a_refused_token_replays_nothing(self, client, oidc) -> None:
        seed_reference()
        token, _ = oidc.token_for({"roles": ["kokoma-coordinator"]})
        key = {"Idempotency-Key": "k1"}
        assert (
            client.post(
                f"{API}/incidents", json=incident_body(), headers={**bearer(token), **key}
            ).status_code
            == 201
        )
        header, payload, signature = token.split(".")
        forged = f"{header}.{payload}.{signature[:-4]}AAAA"
        response = client.post(
            f"{API}/incidents", json=incident_body(), headers={**bearer(forged), **key}
        )
        assert_invalid_token(response)
