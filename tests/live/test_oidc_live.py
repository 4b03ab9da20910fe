"""A person signs in at a real OpenID provider and uses kokoma under uvicorn over HTTP: the token
from the provider's token endpoint works, the server fetched the provider's keys itself, and the
audit trail names the person."""

from __future__ import annotations

import httpx

from tests.factories import incident_body, seed_reference
from tests.live.conftest import LiveServer
from tests.oidc_provider import AUDIENCE

PERSON = "Erika Mustermann"


def test_a_person_signs_in_and_is_audited(
    live_server: LiveServer, admin_key: dict[str, str], oidc_provider
) -> None:
    seed_reference()
    url = live_server(
        env={"KOKOMA_OIDC_ISSUER": oidc_provider.issuer, "KOKOMA_OIDC_AUDIENCE": AUDIENCE}
    )
    token, sub = oidc_provider.token_for({"roles": ["kokoma-coordinator"], "name": PERSON})
    with httpx.Client(base_url=url, timeout=30) as client:
        person = {"Authorization": f"Bearer {token}"}
        me = client.get("/api/v1/me", headers=person)
        assert me.status_code == 200, me.text
        assert me.json()["subject"] == f"oidc:{sub}" and me.json()["role"] == "coordinator"
        created = client.post("/api/v1/incidents", json=incident_body(), headers=person)
        assert created.status_code == 201, created.text
        # the person's rights are the role's: no API keys for a coordinator
        assert client.get("/api/v1/api-keys", headers=person).status_code == 403

        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        refused = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")

        audit = client.get(
            "/api/v1/audit", params={"principal_subject": f"oidc:{sub}"}, headers=admin_key
        )
        assert audit.status_code == 200
        entries = audit.json()["items"]
        assert any(
            e["action"] == "create" and e["resource_id"] == created.json()["id"] for e in entries
        )
        assert {e["principal_name"] for e in entries} == {PERSON}
