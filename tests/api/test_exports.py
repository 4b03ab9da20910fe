"""GET /api/v1/incidents with Accept: text/csv / application/geo+json — streamed exports."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from app.api.exports import export_media_type
from app.core.db import session_scope
from app.services.imports import INCIDENT_COLUMNS
from tests.factories import (
    incident_body,
    make_assignment,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
)

URL = "/api/v1/incidents"
AS_CSV = {"Accept": "text/csv"}
AS_GEOJSON = {"Accept": "application/geo+json"}


@pytest.fixture
def admin(fixed_clock: Any) -> dict[str, str]:
    seed_reference()
    return make_key("admin")


def create(client: Any, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post(URL, json=incident_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def parse_csv(content: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
    return rows


def wipe_incidents() -> None:
    with session_scope() as session:
        for table in (
            "incident_event",
            "incident_note",
            "incident_competence",
            "outbox_event",
            "audit_event",
            "assignment",
            "incident",
            "reference_counter",
        ):
            session.execute(text(f'DELETE FROM "{table}"'))


def varied_incidents(client: Any, admin: dict[str, str], organisation: Any) -> None:
    create(
        client,
        admin,
        external_id="h-1",
        source="hotline",
        title='=HYPERLINK("http://evil")',
        description='Line one\nline "two"; three\r\n',
        location={"lat": 50.978712345678, "lon": 11.02881},
        languages=["de", "ar"],
        required_competences=["youth_work", "mediation"],
        occurred_at="2026-06-01T08:30:15.123456+02:00",
    )
    create(
        client,
        admin,
        external_id="w-1",
        source="web",
        title="-5 degrees and snow",
        description="",
        reporter={"anonymous": True},
        required_competences=[],
        languages=[],
        district="beta",
        category="public_space",
        escalation_level=7,
    )
    create(
        client,
        admin,
        external_id="p-1",
        source="partner",
        organisation_id=str(organisation),
        title="'quoted start",
        reporter=None,
        district="gamma",
        category="antisemitism",
        reported_at="2026-05-30T12:00:00Z",
        description=" leading space, Straße ☂",
    )
    triaged = create(
        client,
        admin,
        external_id="h-2",
        source="hotline",
        title="@mention",
        reporter={"name": "Jo", "contact": "+49 361 1", "anonymous": False},
    )
    response = client.post(
        f"{URL}/{triaged['id']}/status", json={"status": "triaged"}, headers=admin
    )
    assert response.status_code == 200


class TestCsvExport:
    def test_round_trip_is_lossless(self, client, admin) -> None:
        organisation = make_organisation()
        varied_incidents(client, admin, organisation)
        first = client.get(URL, headers={**admin, **AS_CSV})
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/csv")
        rows = parse_csv(first.content)
        assert list(rows[0]) == list(INCIDENT_COLUMNS) and len(rows) == 4
        assert rows[0]["title"] == '\'=HYPERLINK("http://evil")'  # formula neutralised

        wipe_incidents()
        imported = client.post(
            "/api/v1/imports/incidents",
            content=first.content,
            headers={**admin, "Content-Type": "text/csv"},
        )
        assert imported.status_code == 200
        assert imported.json()["errors"] == [] and imported.json()["created"] == 4

        second = client.get(URL, headers={**admin, **AS_CSV})
        assert second.content == first.content

        again = client.post(
            "/api/v1/imports/incidents",
            content=second.content,
            headers={**admin, "Content-Type": "text/csv"},
        ).json()
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)

    def test_every_row_in_reference_order_across_batches(self, client, admin) -> None:
        lines = ["external_id;title;district;category;escalation_level"]
        lines += [f"e-{n};Incident {n};alpha;other;{n % 9 + 1}" for n in range(2345)]
        report = client.post(
            "/api/v1/imports/incidents",
            content="\n".join(lines).encode(),
            headers={**admin, "Content-Type": "text/csv"},
        ).json()
        assert report["created"] == 2345
        rows = parse_csv(client.get(URL, params={"limit": 5}, headers={**admin, **AS_CSV}).content)
        assert len(rows) == 2345  # limit does not apply
        assert [r["reference"] for r in rows] == [f"KOK-2026-{n:05d}" for n in range(1, 2346)]
        assert [r["external_id"] for r in rows[:3]] == ["e-0", "e-1", "e-2"]

    @pytest.mark.parametrize(
        "params",
        [
            {"status": "triaged"},
            {"status": ["reported", "triaged"]},
            {"district": "beta"},
            {"min_escalation": 5},
            {"q": "snow"},
            {"category": "antisemitism"},
            {"reported_before": "2026-06-01T00:00:00Z"},
        ],
    )
    def test_filters_match_the_json_list(self, client, admin, params) -> None:
        organisation = make_organisation()
        varied_incidents(client, admin, organisation)
        listed = client.get(URL, params=params, headers=admin).json()["items"]
        exported = parse_csv(client.get(URL, params=params, headers={**admin, **AS_CSV}).content)
        assert sorted(r["reference"] for r in exported) == sorted(i["reference"] for i in listed)
        assert listed  # every filter here matches something

    def test_organisation_filter(self, client, admin) -> None:
        organisation = make_organisation()
        varied_incidents(client, admin, organisation)
        rows = parse_csv(
            client.get(
                URL, params={"organisation_id": str(organisation)}, headers={**admin, **AS_CSV}
            ).content
        )
        assert [r["external_id"] for r in rows] == ["p-1"]

    def test_partner_sees_own_organisation_with_reporter(self, client, admin) -> None:
        mine, other = make_organisation("Mine"), make_organisation("Other")
        create(client, admin, external_id="m-1", organisation_id=str(mine))
        create(client, admin, external_id="o-1", organisation_id=str(other))
        create(client, admin, external_id="n-1")
        partner = make_key("partner", organisation_id=mine)
        rows = parse_csv(client.get(URL, headers={**partner, **AS_CSV}).content)
        assert [r["external_id"] for r in rows] == ["m-1"]
        assert rows[0]["reporter_contact"] == "erika@example.org"

    def test_manager_sees_assigned_and_reporter_only_as_accepted_lead(self, client, admin) -> None:
        offered = create(client, admin, external_id="a-1")
        accepted = create(client, admin, external_id="a-2")
        create(client, admin, external_id="a-3")
        manager_id = make_manager()
        make_assignment(uuid.UUID(offered["id"]), manager_id, status="offered")
        make_assignment(uuid.UUID(accepted["id"]), manager_id, status="accepted")
        manager = make_key("manager", manager_id=manager_id)
        rows = {
            r["external_id"]: r
            for r in parse_csv(client.get(URL, headers={**manager, **AS_CSV}).content)
        }
        assert set(rows) == {"a-1", "a-2"}
        assert rows["a-1"]["reporter_name"] == rows["a-1"]["reporter_contact"] == ""
        assert rows["a-1"]["reporter_anonymous"] == ""
        assert rows["a-2"]["reporter_name"] == "Erika Muster"

    def test_reporter_data_in_an_export_is_access_logged(self, client, admin) -> None:
        from sqlalchemy import select

        from app.models.system import AuditEvent

        with_reporter = create(client, admin, external_id="l-1")
        create(client, admin, external_id="l-2", reporter=None)
        client.get(URL, headers={**admin, **AS_CSV})
        with session_scope(write=False) as session:
            entries = session.scalars(
                select(AuditEvent).where(AuditEvent.kind == "access", AuditEvent.action == "export")
            ).all()
        assert [(e.resource_id, e.fields) for e in entries] == [
            (with_reporter["id"], ["reporter.contact", "reporter.name"])
        ]

    def test_coordinator_sees_reporter(self, client, admin) -> None:
        create(client, admin, external_id="c-1")
        rows = parse_csv(client.get(URL, headers={**make_key("coordinator"), **AS_CSV}).content)
        assert rows[0]["reporter_contact"] == "erika@example.org"

    def test_viewer_forbidden(self, client, admin) -> None:
        response = client.get(URL, headers={**make_key("viewer"), **AS_CSV})
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/forbidden"

    def test_empty_export_has_the_header(self, client, admin) -> None:
        response = client.get(URL, headers={**admin, **AS_CSV})
        assert response.content.decode() == ",".join(INCIDENT_COLUMNS) + "\r\n"

    def test_invalid_filter_is_a_problem(self, client, admin) -> None:
        response = client.get(URL, params={"min_escalation": 12}, headers={**admin, **AS_CSV})
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"


class TestGeoJsonExport:
    def test_feature_collection_of_located_incidents(self, client, admin) -> None:
        located = create(client, admin, external_id="g-1", location={"lat": 50.98, "lon": 11.03})
        create(client, admin, external_id="g-2")
        response = client.get(URL, headers={**admin, **AS_GEOJSON})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/geo+json"
        collection = json.loads(response.content)
        assert collection["type"] == "FeatureCollection"
        [feature] = collection["features"]
        assert feature["id"] == located["id"]
        assert feature["geometry"] == {"type": "Point", "coordinates": [11.03, 50.98]}
        assert "location" not in feature["properties"]
        assert feature["properties"]["reference"] == located["reference"]
        assert feature["properties"]["reporter"]["contact"] == "erika@example.org"

    def test_reporter_hidden_for_manager(self, client, admin) -> None:
        incident = create(client, admin, external_id="g-1", location={"lat": 50.98, "lon": 11.03})
        manager_id = make_manager()
        make_assignment(uuid.UUID(incident["id"]), manager_id, status="offered")
        response = client.get(
            URL, headers={**make_key("manager", manager_id=manager_id), **AS_GEOJSON}
        )
        [feature] = response.json()["features"]
        assert feature["properties"]["reporter"] is None

    def test_many_features_are_valid_json(self, client, admin) -> None:
        lines = ["external_id,title,district,category,escalation_level,lat,lon"]
        lines += [f"g-{n},T {n},alpha,other,2,50.{n:04d},11.{n:04d}" for n in range(1500)]
        client.post(
            "/api/v1/imports/incidents",
            content="\n".join(lines).encode(),
            headers={**admin, "Content-Type": "text/csv"},
        )
        collection = client.get(URL, headers={**admin, **AS_GEOJSON}).json()
        assert len(collection["features"]) == 1500


class TestNegotiation:
    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (None, None),
            ("application/json", None),
            ("*/*", None),
            ("text/csv", "text/csv"),
            ("text/csv; charset=utf-8", "text/csv"),
            ("application/geo+json", "application/geo+json"),
            ("text/csv;q=0.5, application/json", None),
            ("application/json;q=0.5, text/csv", "text/csv"),
            ("text/csv, application/json", "text/csv"),
            ("text/csv, */*", "text/csv"),
            ("text/html", None),
            ("text/csv;q=0", None),
        ],
    )
    def test_media_type(self, accept, expected) -> None:
        assert export_media_type(accept) == expected

    def test_json_list_still_pages(self, client, admin) -> None:
        create(client, admin, external_id="j-1")
        response = client.get(URL, headers={**admin, "Accept": "application/json"})
        assert response.status_code == 200 and len(response.json()["items"]) == 1


class TestApiCreatedRoundTrip:
    """Incidents created through the API have no external_id: their export re-imports keyed by
    the reference — found again in the same database, restored with that reference elsewhere."""

    def _incidents(self, client: Any, admin: dict[str, str]) -> None:
        create(
            client, admin, title="No external id, reporter", location={"lat": 50.97, "lon": 11.03}
        )
        create(client, admin, external_id="h-9", source="hotline", title="With external id")
        create(
            client,
            admin,
            title="Anonymous",
            reporter={"anonymous": True},
            description="=1+1",
            required_competences=[],
            district="beta",
        )
        create(
            client,
            admin,
            title="No reporter",
            reporter=None,
            source="web",
            occurred_at="2026-06-01T08:30:15.5+02:00",
        )

    def test_csv_export_reimports_losslessly(self, client, admin) -> None:
        self._incidents(client, admin)
        first = client.get(URL, headers={**admin, **AS_CSV})
        rows = parse_csv(first.content)
        assert [row["external_id"] for row in rows] == ["", "h-9", "", ""]
        csv_headers = {**admin, "Content-Type": "text/csv"}

        same = client.post(
            "/api/v1/imports/incidents", content=first.content, headers=csv_headers
        ).json()
        assert (same["created"], same["updated"], same["unchanged"], same["errors"]) == (
            0,
            0,
            4,
            [],
        )

        wipe_incidents()
        restored = client.post(
            "/api/v1/imports/incidents", content=first.content, headers=csv_headers
        ).json()
        assert (restored["created"], restored["errors"]) == (4, [])
        second = client.get(URL, headers={**admin, **AS_CSV})
        assert second.content == first.content  # references kept, every field the same
        again = client.post(
            "/api/v1/imports/incidents", content=second.content, headers=csv_headers
        ).json()
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
        assert create(client, admin)["reference"] == "KOK-2026-00005"  # after the restored ones

    def test_restored_references_are_never_allocated_twice(self, client, admin) -> None:
        body = (
            "external_id;reference;title;district;category;escalation_level\r\n"
            ";KOK-2026-00002;Restored;alpha;other;2\r\n"
            "x-1;;Allocated;alpha;other;2\r\n"
        )
        report = client.post(
            "/api/v1/imports/incidents",
            content=body.encode(),
            headers={**admin, "Content-Type": "text/csv"},
        ).json()
        assert (report["created"], report["errors"]) == (2, [])
        rows = {
            row["title"]: row["reference"]
            for row in parse_csv(client.get(URL, headers={**admin, **AS_CSV}).content)
        }
        assert rows == {"Restored": "KOK-2026-00002", "Allocated": "KOK-2026-00003"}

    def test_a_row_needs_an_external_id_or_a_valid_reference(self, client, admin) -> None:
        body = (
            "external_id;reference;title;district;category;escalation_level\r\n"
            ";;Neither;alpha;other;2\r\n"
            ";KOK-26-1;Bad reference;alpha;other;2\r\n"
        )
        report = client.post(
            "/api/v1/imports/incidents",
            content=body.encode(),
            headers={**admin, "Content-Type": "text/csv"},
        ).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [
            (1, "external_id"),
            (2, "reference"),
        ]
        assert report["created"] == 0

    def test_json_items_reimport_as_ndjson(self, client, admin) -> None:
        self._incidents(client, admin)
        first = client.get(URL, headers=admin, params={"limit": 50}).json()["items"]
        # in reference order (as the CSV export writes it): the rows with an external_id then
        # get their references back too (they are allocated in file order)
        first.sort(key=lambda item: item["reference"])
        body = "\n".join(json.dumps(item) for item in first).encode()
        ndjson_headers = {**admin, "Content-Type": "application/x-ndjson"}
        response = client.post("/api/v1/imports/incidents", content=body, headers=ndjson_headers)
        assert response.status_code == 200, response.text
        same = response.json()
        assert (same["created"], same["updated"], same["unchanged"], same["errors"]) == (
            0,
            0,
            4,
            [],
        )
        wipe_incidents()
        restored = client.post(
            "/api/v1/imports/incidents", content=body, headers=ndjson_headers
        ).json()
        assert (restored["created"], restored["errors"]) == (4, [])
        second = client.get(URL, headers=admin, params={"limit": 50}).json()["items"]

        def comparable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(
                ({k: v for k, v in item.items() if k != "id"} for item in items),
                key=lambda item: item["reference"],
            )

        assert comparable(second) == comparable(first)  # only the ids are new
