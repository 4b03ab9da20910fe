"""POST /api/v1/imports/incidents and /imports/managers: CSV and NDJSON, streamed, upserted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core.config import get_settings
from app.core.db import session_scope
from app.models.incident import Incident, IncidentCompetence, IncidentEvent
from app.models.manager import Manager, ManagerCompetence, ManagerDistrict
from app.models.outbox import OutboxEvent
from app.models.system import AuditEvent
from app.models.webhook import WebhookSubscription
from app.services.incidents import webhook_view
from app.services.outbox import listening
from tests.factories import make_key, make_organisation, seed_reference, table_counts

URL = "/api/v1/imports/incidents"
MANAGERS_URL = "/api/v1/imports/managers"
CSV = {"Content-Type": "text/csv"}
NDJSON = {"Content-Type": "application/x-ndjson"}

HEADER = (
    "external_id;source;title;description;district;lat;lon;category;escalation_level;"
    "required_competences;languages;occurred_at;reporter_name;reporter_contact;"
    "reporter_anonymous"
)


def incident_line(external_id: str, **overrides: str) -> str:
    values = {
        "external_id": external_id,
        "source": "hotline",
        "title": f"Incident {external_id}",
        "description": 'Graffiti; "quoted" words',
        "district": "alpha",
        "lat": "50,9787",
        "lon": "11.0328",
        "category": "hate_speech",
        "escalation_level": "3",
        "required_competences": "mediation|youth_work",
        "languages": "de|en",
        "occurred_at": "2026-06-01T08:30:00+02:00",
        "reporter_name": "Erika Muster",
        "reporter_contact": "erika@example.org",
        "reporter_anonymous": "false",
    }
    values.update(overrides)
    cells = []
    for name in HEADER.split(";"):
        value = values[name]
        cells.append(
            '"' + value.replace('"', '""') + '"' if any(c in value for c in ';"\n') else value
        )
    return ";".join(cells)


def csv_body(*lines: str, header: str = HEADER, bom: bool = True) -> bytes:
    text = "\r\n".join([header, *lines]) + "\r\n"
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8")


@pytest.fixture
def admin(fixed_clock: Any) -> dict[str, str]:
    seed_reference()
    return make_key("admin")


def count(model: Any) -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def post(
    client: Any,
    headers: dict[str, str],
    body: Any,
    *,
    url: str = URL,
    content_type: dict[str, str] = CSV,
    **params: Any,
) -> Any:
    return client.post(url, content=body, headers={**headers, **content_type}, params=params)


def listen(client: Any, headers: dict[str, str], events: list[str], **extra: Any) -> None:
    response = client.post(
        "/api/v1/webhooks",
        headers=headers,
        json={"url": "https://93.184.216.34/hooks", "events": events, **extra},
    )
    assert response.status_code == 201, response.text


class TestImportIdempotency:
    """DESIGN §3: a POST with an Idempotency-Key replays its first answer; imports included (the
    body is hashed while it is spooled, so memory stays constant)."""

    def test_repeat_replays_the_report_and_writes_nothing(self, client, admin) -> None:
        body = csv_body(incident_line("h-1"), incident_line("h-2"))
        headers = {**admin, "Idempotency-Key": "import-2026-06-15"}
        first = post(client, headers, body)
        assert (first.status_code, first.json()["created"]) == (200, 2)
        with session_scope() as session:  # a change in between: a re-import would update h-1
            session.execute(
                update(Incident)
                .where(Incident.external_id == "h-1")
                .values(title="Changed meanwhile")
            )
        before = table_counts()
        again = post(client, headers, body)
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert table_counts() == before
        other = post(client, headers, csv_body(incident_line("h-3")))
        assert other.status_code == 422
        assert other.json()["type"] == "/problems/idempotency-key-reused"
        assert table_counts() == before

    def test_large_body_streams_through(self, client, admin) -> None:
        lines = [incident_line(f"s-{n:05d}", description="x" * 900) for n in range(3000)]
        body = csv_body(*lines)  # ~3 MB: spooled to disk, handed to the import in chunks
        assert len(body) > 2 * 1024 * 1024
        response = post(client, {**admin, "Idempotency-Key": "big"}, body)
        assert (response.status_code, response.json()["created"]) == (200, 3000)


class TestImportOutbox:
    """incident.created outbox rows are written only when a subscription could receive them."""

    def test_nobody_listening_writes_no_outbox_rows(self, client, admin) -> None:
        report = post(client, admin, csv_body(incident_line("h-1"), incident_line("h-2"))).json()
        assert report["created"] == 2
        assert count(OutboxEvent) == 0
        assert count(IncidentEvent) == 2 and count(AuditEvent) >= 2  # the rest is written

    def test_other_events_or_inactive_subscriptions_do_not_count(self, client, admin) -> None:
        listen(client, admin, ["assignment.offered"])
        listen(client, admin, ["incident.created"])
        with session_scope() as session:
            for subscription in session.scalars(select(WebhookSubscription)):
                subscription.active = "incident.created" not in subscription.events
        assert post(client, admin, csv_body(incident_line("h-1"))).json()["created"] == 1
        assert count(OutboxEvent) == 0

    def test_a_listener_gets_one_event_per_created_incident(self, client, admin) -> None:
        listen(client, admin, ["incident.status_changed", "incident.created"])
        post(client, admin, csv_body(incident_line("h-1"), incident_line("h-2")))
        post(client, admin, csv_body(incident_line("h-1"), incident_line("h-3")))  # h-1 unchanged
        with session_scope(write=False) as session:
            kinds = sorted(
                (e.event_type, e.payload["incident"]["external_id"])
                for e in session.scalars(select(OutboxEvent))
            )
        assert kinds == [
            ("incident.created", "h-1"),
            ("incident.created", "h-2"),
            ("incident.created", "h-3"),
        ]

    def test_a_new_listener_waits_for_a_running_import(self, client, admin) -> None:
        """Asking "is anybody listening?" holds until the asking transaction ends: a subscription
        created meanwhile is committed only after it, so no event falls between the two."""
        started, finished = threading.Event(), threading.Event()
        outcome: list[int] = []

        def create_subscription() -> None:
            started.set()
            response = client.post(
                "/api/v1/webhooks",
                headers=admin,
                json={"url": "https://93.184.216.34/hooks", "events": ["incident.created"]},
            )
            outcome.append(response.status_code)
            finished.set()

        with session_scope() as session:
            assert listening(session, "incident.created") is False
            worker = threading.Thread(target=create_subscription)
            worker.start()
            assert started.wait(5)
            assert not finished.wait(0.5)  # blocked behind the asking transaction
        worker.join(10)
        assert outcome == [201]
        with session_scope() as session:
            assert listening(session, "incident.created") is True


class TestImportIncidents:
    def test_valid_creates_with_references_timeline_outbox_and_audit(self, client, admin) -> None:
        listen(client, admin, ["incident.created"])
        body = csv_body(
            incident_line("h-1"),
            incident_line("h-2", lat="", lon=""),
            incident_line("h-3", reporter_name="", reporter_contact="", reporter_anonymous=""),
        )
        response = post(client, admin, body)
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["created"], report["updated"], report["unchanged"]) == (3, 0, 0)
        assert report["errors"] == [] and report["committed"] is True and report["rows"] == 3
        with session_scope(write=False) as session:
            incidents = {i.external_id: i for i in session.scalars(select(Incident))}
            assert [incidents[k].reference for k in ("h-1", "h-2", "h-3")] == [
                "KOK-2026-00001",
                "KOK-2026-00002",
                "KOK-2026-00003",
            ]
            first = incidents["h-1"]
            assert first.source == "hotline" and first.status == "reported"
            assert (first.lat, first.lon) == (50.9787, 11.0328)
            assert first.languages == ["de", "en"]
            assert first.occurred_at.isoformat() == "2026-06-01T06:30:00+00:00"
            assert first.description == 'Graffiti; "quoted" words'
            assert first.has_reporter and first.reporter_contact == "erika@example.org"
            assert incidents["h-2"].lat is None
            assert not incidents["h-3"].has_reporter
            assert sorted(
                session.scalars(
                    select(IncidentCompetence.competence_code).where(
                        IncidentCompetence.incident_id == first.id
                    )
                )
            ) == ["mediation", "youth_work"]
            events = session.scalars(select(IncidentEvent).where(IncidentEvent.type == "created"))
            assert len(list(events)) == 3
            outbox = {
                e.payload["incident"]["external_id"]: e
                for e in session.scalars(select(OutboxEvent))
            }
            assert set(outbox) == {"h-1", "h-2", "h-3"}
            # the bulk-built payload is exactly what the incidents service emits (no reporter)
            assert outbox["h-1"].payload == {"incident": webhook_view(session, first)}
            assert outbox["h-1"].payload["incident"]["reporter"] is None
            assert outbox["h-1"].event_type == "incident.created"
            audits = list(
                session.scalars(select(AuditEvent).where(AuditEvent.resource == "incident"))
            )
            assert len(audits) == 3 and "reporter" in audits[0].fields

    def test_rerun_changes_nothing(self, client, admin) -> None:
        body = csv_body(*(incident_line(f"h-{n}") for n in range(5)))
        assert post(client, admin, body).json()["created"] == 5
        before = table_counts()
        report = post(client, admin, body).json()
        assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 5)
        assert table_counts() == before

    def test_changed_rows_are_updated(self, client, admin) -> None:
        post(client, admin, csv_body(incident_line("h-1"), incident_line("h-2")))
        body = csv_body(
            incident_line("h-1", title="New title", required_competences="mediation"),
            incident_line("h-2"),
        )
        report = post(client, admin, body).json()
        assert (report["created"], report["updated"], report["unchanged"]) == (0, 1, 1)
        with session_scope(write=False) as session:
            incident = session.scalars(select(Incident).where(Incident.external_id == "h-1")).one()
            assert incident.title == "New title" and incident.version == 2
            codes = list(
                session.scalars(
                    select(IncidentCompetence.competence_code).where(
                        IncidentCompetence.incident_id == incident.id
                    )
                )
            )
            assert codes == ["mediation"]
            update = session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == incident.id, IncidentEvent.type == "updated"
                )
            ).one()
            assert update.data["fields"] == ["required_competences", "title"]

    def test_absent_columns_are_left_alone_on_update(self, client, admin) -> None:
        post(client, admin, csv_body(incident_line("h-1")))
        header = "external_id;source;title;district;category;escalation_level"
        report = post(
            client, admin, csv_body("h-1;hotline;Incident h-1;alpha;hate_speech;3", header=header)
        ).json()
        assert report["unchanged"] == 1
        with session_scope(write=False) as session:
            incident = session.scalars(select(Incident)).one()
            assert incident.reporter_name == "Erika Muster" and incident.lat == 50.9787

    def test_one_bad_row_atomic_writes_nothing(self, client, admin) -> None:
        before = table_counts()
        body = csv_body(
            incident_line("h-1"), incident_line("h-2", district="atlantis"), incident_line("h-3")
        )
        response = post(client, admin, body)
        assert response.status_code == 200
        report = response.json()
        assert report["errors"] == [
            {"row": 2, "field": "district", "message": "unknown district 'atlantis'"}
        ]
        assert report["committed"] is False and (report["created"], report["updated"]) == (0, 0)
        assert table_counts() == before
        # the same file as a dry run says what the valid rows would do
        dry = post(client, admin, body, dry_run="true").json()
        assert (dry["created"], dry["committed"], dry["error_count"]) == (2, False, 1)

    def test_not_atomic_writes_the_valid_rows(self, client, admin) -> None:
        body = csv_body(
            incident_line("h-1"), incident_line("h-2", category="fight"), incident_line("h-3")
        )
        report = post(client, admin, body, atomic="false").json()
        assert report["committed"] is True and report["created"] == 2
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "category")]
        assert count(Incident) == 2

    def test_dry_run_writes_nothing(self, client, admin) -> None:
        before = table_counts()
        report = post(client, admin, csv_body(incident_line("h-1")), dry_run="true").json()
        assert report["created"] == 1 and report["dry_run"] and not report["committed"]
        assert table_counts() == before

    def test_errors_name_row_and_field(self, client, admin) -> None:
        body = csv_body(
            incident_line("h-1", category="riot"),
            incident_line("h-2", occurred_at="01.06.2026"),
            incident_line("h-3", escalation_level="10"),
            incident_line("h-4", lat=""),
            incident_line("h-5", required_competences="mediation|juggling"),
            incident_line("h-6", languages="de|xx"),
            incident_line("", title=""),
            incident_line("h-8", occurred_at="2026-06-01T08:30:00"),
            incident_line("h-9", reporter_anonymous="maybe"),
            incident_line("h-10", source="fax"),
        )
        report = post(client, admin, body).json()
        found = {(e["row"], e["field"]) for e in report["errors"]}
        assert found == {
            (1, "category"),
            (2, "occurred_at"),
            (3, "escalation_level"),
            (4, "lat"),
            (5, "required_competences"),
            (6, "languages"),
            (7, "external_id"),
            (7, "title"),
            (8, "occurred_at"),
            (9, "reporter_anonymous"),
            (10, "source"),
        }
        assert report["error_count"] == 11 and count(Incident) == 0
        messages = {(e["row"], e["field"]): e["message"] for e in report["errors"]}
        assert messages[(3, "escalation_level")] == "must be between 1 and 9"
        assert "time zone" in messages[(8, "occurred_at")]

    def test_duplicate_external_id_in_file(self, client, admin) -> None:
        body = csv_body(incident_line("h-1"), incident_line("h-2"), incident_line("h-1"))
        report = post(client, admin, body).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "external_id")]
        assert "more than once" in report["errors"][0]["message"]
        assert count(Incident) == 0

    def test_same_external_id_from_another_source_is_another_incident(self, client, admin) -> None:
        body = csv_body(incident_line("x-1"), incident_line("x-1", source="partner"))
        assert post(client, admin, body).json()["created"] == 2

    def test_source_defaults_to_import_and_status_for_legacy_data(self, client, admin) -> None:
        header = "external_id;title;district;category;escalation_level;status"
        body = csv_body(
            "a;Old case;beta;other;2;closed",
            "b;New case;beta;other;2;",
            "c;Dispatched;beta;other;2;dispatched",
            header=header,
        )
        report = post(client, admin, body, atomic="false").json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "status")]
        with session_scope(write=False) as session:
            rows = {i.external_id: (i.source, i.status) for i in session.scalars(select(Incident))}
        assert rows == {"a": ("import", "closed"), "b": ("import", "reported")}

    def test_status_is_not_changed_by_a_reimport(self, client, admin) -> None:
        header = "external_id;title;district;category;escalation_level;status"
        post(client, admin, csv_body("a;Case;beta;other;2;triaged", header=header))
        report = post(client, admin, csv_body("a;Case;beta;other;2;reported", header=header)).json()
        assert report["unchanged"] == 1
        with session_scope(write=False) as session:
            assert session.scalars(select(Incident.status)).one() == "triaged"

    def test_reimport_does_not_restore_an_erased_reporter(self, client, admin) -> None:
        from app.core.security import SYSTEM_PRINCIPAL
        from app.services.privacy import erase_reporter_by_id

        body = csv_body(incident_line("h-1", title="Erika Muster was threatened"))
        post(client, admin, body)
        with session_scope() as session:
            incident_id = session.scalars(select(Incident.id)).one()
            erase_reporter_by_id(session, incident_id, SYSTEM_PRINCIPAL)
        report = post(client, admin, body).json()
        assert report["unchanged"] == 1
        with session_scope(write=False) as session:
            incident = session.get(Incident, incident_id)
            assert incident.reporter_name is None and incident.reporter_contact is None
            assert "Erika" not in incident.title

    def test_comma_separator_without_bom(self, client, admin) -> None:
        header = "external_id,title,district,category,escalation_level,lat,lon"
        body = csv_body('a,"Title, with comma",alpha,other,1,50.5,11.5', header=header, bom=False)
        report = post(client, admin, body).json()
        assert report["created"] == 1, report
        with session_scope(write=False) as session:
            assert session.scalars(select(Incident.title)).one() == "Title, with comma"

    def test_formula_escape_is_undone(self, client, admin) -> None:
        body = csv_body(incident_line("f-1", title="'=SUM(A1)"), incident_line("f-2", title="'hi"))
        assert post(client, admin, body).json()["created"] == 2
        with session_scope(write=False) as session:
            titles = dict(session.execute(select(Incident.external_id, Incident.title)).all())
        assert titles == {"f-1": "=SUM(A1)", "f-2": "'hi"}

    def test_streamed_in_tiny_chunks(self, client, admin) -> None:
        body = csv_body(*(incident_line(f"s-{n}", title=f"Straße Nr. {n} — ü") for n in range(30)))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 7):  # splits lines and multi-byte characters
                yield body[start : start + 7]

        report = post(client, admin, chunks()).json()
        assert report["created"] == 30 and report["errors"] == []
        with session_scope(write=False) as session:
            assert "Straße Nr. 7 — ü" in set(session.scalars(select(Incident.title)))

    def test_several_batches(self, client, admin, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "import_batch_rows", 4)
        body = csv_body(*(incident_line(f"b-{n}") for n in range(10)))
        report = post(client, admin, body).json()
        assert report["created"] == 10
        with session_scope(write=False) as session:
            refs = sorted(session.scalars(select(Incident.reference)))
        assert refs == [f"KOK-2026-{n:05d}" for n in range(1, 11)]
        body = csv_body(
            *(
                incident_line(f"b-{n}", title="changed" if n % 3 == 0 else f"Incident b-{n}")
                for n in range(12)
            )
        )
        report = post(client, admin, body).json()
        assert (report["created"], report["updated"], report["unchanged"]) == (2, 4, 6)

    def test_copy_special_characters_survive(self, client, admin) -> None:
        # backslash, tab, newline and CR are escaped in the bulk COPY text (PostgreSQL)
        description = "C:\\temp\\x\tcol\nsecond line\r\nthird \\N"
        listen(client, admin, ["incident.created"])  # the JSON payload goes through COPY too
        body = csv_body(
            incident_line(
                "c-1", description=description, title="Back\\slash \\N", reporter_name="Tab\tName"
            )
        )
        report = post(client, admin, body).json()
        assert report["created"] == 1, report
        with session_scope(write=False) as session:
            incident = session.scalars(select(Incident)).one()
            assert incident.description == description
            assert incident.title == "Back\\slash \\N"
            assert incident.reporter_name == "Tab\tName"
            payload = session.scalars(select(OutboxEvent.payload)).one()
            assert payload["incident"]["description"] == description

    def test_unusual_but_valid_cells_take_the_full_validation(self, client, admin) -> None:
        # cells the fast path does not recognise are validated in full, with the same outcome
        body = csv_body(
            incident_line(
                "u-1",
                escalation_level=" 3",
                languages="DE|de",
                required_competences="youth_work| mediation |youth_work",
            ),
            incident_line("u-2", escalation_level="+4", lat="", lon="", source=""),
            incident_line("u-3"),
        )
        report = post(client, admin, body).json()
        assert report["created"] == 3 and report["errors"] == [], report
        with session_scope(write=False) as session:
            rows = {i.external_id: i for i in session.scalars(select(Incident))}
            assert rows["u-1"].escalation_level == 3 and rows["u-1"].languages == ["de"]
            assert rows["u-2"].escalation_level == 4 and rows["u-2"].source == "import"
            codes = sorted(
                session.scalars(
                    select(IncidentCompetence.competence_code).where(
                        IncidentCompetence.incident_id == rows["u-1"].id
                    )
                )
            )
            assert codes == ["mediation", "youth_work"]
        report = post(client, admin, body).json()
        assert report["unchanged"] == 3, report

    def test_cached_cells_do_not_leak_between_rows(self, client, admin) -> None:
        # the same code list / timestamp text in many rows, then one bad row: errors are exact
        lines = [incident_line(f"k-{n}") for n in range(5)]
        lines.append(incident_line("k-bad", languages="de|xx", occurred_at="yesterday"))
        report = post(client, admin, csv_body(*lines)).json()
        assert {(e["row"], e["field"]) for e in report["errors"]} == {
            (6, "languages"),
            (6, "occurred_at"),
        }
        assert count(Incident) == 0


class TestImportMalformed:
    def test_wrong_content_type(self, client, admin) -> None:
        before = table_counts()
        response = post(client, admin, b"{}", content_type={"Content-Type": "application/json"})
        assert response.status_code == 415
        assert response.json()["type"] == "/problems/unsupported-media-type"
        assert table_counts() == before

    def test_not_utf8_charset(self, client, admin) -> None:
        response = post(
            client,
            admin,
            csv_body(incident_line("a")),
            content_type={"Content-Type": "text/csv; charset=iso-8859-1"},
        )
        assert response.status_code == 415

    def test_empty_body(self, client, admin) -> None:
        response = post(client, admin, b"")
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/unreadable-import"

    def test_missing_header_row(self, client, admin) -> None:
        before = table_counts()
        response = post(client, admin, csv_body(incident_line("a"), header=incident_line("b")))
        assert response.status_code == 422
        problem = response.json()
        assert problem["type"] == "/problems/unreadable-import"
        assert any("unknown column" in e["msg"] for e in problem["errors"])
        assert any("required column 'external_id'" in e["msg"] for e in problem["errors"])
        assert table_counts() == before

    def test_utf16_body(self, client, admin) -> None:
        body = (HEADER + "\r\n" + incident_line("a")).encode("utf-16")
        response = post(client, admin, body)
        assert response.status_code == 422
        assert "UTF-16" in response.json()["detail"]

    def test_latin1_row_is_a_row_error(self, client, admin) -> None:
        body = (
            csv_body(incident_line("a"), bom=False)
            + incident_line("b", title="Überfall").encode("latin-1")
            + b"\r\n"
            + incident_line("c").encode()
        )
        report = post(client, admin, body, atomic="false").json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, None)]
        assert "UTF-8" in report["errors"][0]["message"]
        assert report["created"] == 2

    def test_latin1_header_is_unreadable(self, client, admin) -> None:
        response = post(client, admin, "external_id;tïtle\r\n".encode("latin-1"))
        assert response.status_code == 422

    def test_ragged_rows(self, client, admin) -> None:
        body = csv_body(incident_line("a"), "b;hotline;too short", incident_line("c") + ";extra")
        report = post(client, admin, body).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, None), (3, None)]
        assert report["errors"][0]["message"] == "expected 15 fields, found 3"
        assert count(Incident) == 0

    def test_one_megabyte_field(self, client, admin) -> None:
        body = csv_body(incident_line("a", description="x" * 1_000_000), incident_line("b"))
        response = post(client, admin, body, atomic="false")
        assert response.status_code == 200
        report = response.json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(1, None)]
        assert "longer than" in report["errors"][0]["message"]
        assert report["created"] == 1

    def test_long_field_below_the_line_limit(self, client, admin) -> None:
        body = csv_body(incident_line("a", description="x" * 30_000))
        report = post(client, admin, body).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(1, "description")]

    def test_unterminated_quote(self, client, admin) -> None:
        body = csv_body(incident_line("a")) + b'b;hotline;"never closed'
        report = post(client, admin, body).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, None)]
        assert report["errors"][0]["message"].startswith("malformed CSV")

    def test_blank_lines_are_skipped_but_counted(self, client, admin) -> None:
        body = csv_body(incident_line("a"), "", ";;;;;;;;;;;;;;", incident_line("b", district="x"))
        report = post(client, admin, body).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(4, "district")]

    def test_body_over_the_import_limit(self, client, admin, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "max_import_bytes", 2048)
        body = csv_body(*(incident_line(f"l-{n}") for n in range(40)))
        response = post(client, admin, body)
        assert response.status_code == 413
        assert count(Incident) == 0


class TestImportNdjson:
    def test_valid_and_invalid_lines(self, client, admin) -> None:
        lines = [
            {
                "external_id": "n-1",
                "title": "One",
                "district": "alpha",
                "category": "other",
                "escalation_level": 2,
                "lat": 50.1,
                "lon": 11.2,
                "languages": ["de"],
                "required_competences": "mediation",
                "reporter_anonymous": True,
            },
            {
                "external_id": "n-2",
                "title": "Two",
                "district": "beta",
                "category": "other",
                "escalation_level": "x",
                "colour": "red",
            },
        ]
        body = "\n".join(json.dumps(line) for line in lines) + "\n{not json}\n[1]\n\n"
        report = post(client, admin, body.encode(), content_type=NDJSON, atomic="false").json()
        assert {(e["row"], e["field"]) for e in report["errors"]} == {
            (2, "escalation_level"),
            (2, "colour"),
            (3, None),
            (4, None),
        }
        assert report["created"] == 1 and report["rows"] == 5
        with session_scope(write=False) as session:
            incident = session.scalars(select(Incident)).one()
        assert incident.source == "import" and incident.has_reporter and incident.reporter_anonymous
        assert incident.reporter_name is None

    def test_the_api_shape_is_accepted(self, client, admin) -> None:
        """Objects as the API writes them: nested location and reporter (or null for none)."""
        lines = [
            {
                "external_id": "a-1",
                "title": "One",
                "district": "alpha",
                "category": "other",
                "escalation_level": 2,
                "location": {"lat": 50.98, "lon": 11.03},
                "reporter": {
                    "name": "Erika Muster",
                    "contact": "erika@example.org",
                    "anonymous": False,
                },
            },
            {
                "external_id": "a-2",
                "title": "Two",
                "district": "alpha",
                "category": "other",
                "escalation_level": 2,
                "location": None,
                "reporter": None,
            },
        ]
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        report = post(client, admin, body.encode(), content_type=NDJSON).json()
        assert (report["created"], report["errors"]) == (2, []), report
        with session_scope(write=False) as session:
            rows = {i.external_id: i for i in session.scalars(select(Incident))}
        assert (rows["a-1"].lat, rows["a-1"].lon) == (50.98, 11.03)
        assert rows["a-1"].reporter_contact == "erika@example.org" and rows["a-1"].has_reporter
        assert rows["a-2"].lat is None and not rows["a-2"].has_reporter

    def test_the_api_shape_errors(self, client, admin) -> None:
        base = {"title": "x", "district": "alpha", "category": "other", "escalation_level": 2}
        lines = [
            {**base, "external_id": "b-1", "location": {"lat": 50.9}},
            {**base, "external_id": "b-2", "location": {"lat": 50.9, "lon": 11.0}, "lat": 50.9},
            {**base, "external_id": "b-3", "reporter": "Erika"},
            {**base, "external_id": "b-4", "reporter": {"name": "E", "phone": "1"}},
            {**base, "external_id": "b-5", "location": {"lat": 95, "lon": 11.0}},
        ]
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        before = table_counts()
        report = post(client, admin, body.encode(), content_type=NDJSON).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [
            (1, "location"),
            (2, "location"),
            (3, "reporter"),
            (4, "reporter"),
            (5, "lat"),
        ]
        assert report["committed"] is False and table_counts() == before

    def test_over_long_line(self, client, admin) -> None:
        body = json.dumps({"external_id": "a", "title": "x" * 400_000}) + "\n"
        report = post(client, admin, body.encode(), content_type=NDJSON).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(1, None)]


class TestImportAuth:
    def test_no_key(self, client, admin) -> None:
        assert post(client, {}, csv_body(incident_line("a"))).status_code == 401

    @pytest.mark.parametrize("role", ["viewer", "manager", "partner"])
    def test_role_forbidden(self, client, admin, role) -> None:
        from tests.factories import make_manager

        binding: dict[str, Any] = {}
        if role == "partner":
            binding["organisation_id"] = make_organisation()
        if role == "manager":
            binding["manager_id"] = make_manager()
        response = post(client, make_key(role, **binding), csv_body(incident_line("a")))
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/forbidden"
        assert count(Incident) == 0

    def test_coordinator_may_import(self, client, admin) -> None:
        response = post(client, make_key("coordinator"), csv_body(incident_line("a")))
        assert response.status_code == 200 and response.json()["created"] == 1


MANAGER_HEADER = (
    "email;display_name;phone;organisation_id;status;home_district;districts;"
    "languages;max_open_assignments;competences"
)


class TestImportManagers:
    def test_create_rerun_and_update(self, client, admin) -> None:
        organisation = make_organisation()
        rows = [
            f"Mara@Example.org;Mara B;+49 361 1;{organisation};active;alpha;beta|gamma;de|en;3;"
            "mediation:2025-01-01:2027-01-01|youth_work:2024-05-01:",
            "jo@example.org;Jo;;;;beta;;;;",
        ]
        body = csv_body(*rows, header=MANAGER_HEADER)
        report = post(client, admin, body, url=MANAGERS_URL).json()
        assert (report["created"], report["errors"]) == (2, [])
        with session_scope(write=False) as session:
            mara = session.scalars(select(Manager).where(Manager.email == "mara@example.org")).one()
            assert (mara.status, mara.max_open_assignments, mara.languages) == (
                "active",
                3,
                ["de", "en"],
            )
            assert sorted(
                session.scalars(
                    select(ManagerDistrict.district_code).where(
                        ManagerDistrict.manager_id == mara.id
                    )
                )
            ) == ["beta", "gamma"]
            holdings = session.execute(
                select(ManagerCompetence.competence_code, ManagerCompetence.expires_on).where(
                    ManagerCompetence.manager_id == mara.id
                )
            ).all()
            assert {h[0]: h[1] and h[1].isoformat() for h in holdings} == {
                "mediation": "2027-01-01",
                "youth_work": None,
            }
            jo = session.scalars(select(Manager).where(Manager.email == "jo@example.org")).one()
            assert (jo.status, jo.max_open_assignments) == ("in_training", 2)
        assert post(client, admin, body, url=MANAGERS_URL).json()["unchanged"] == 2
        rows[1] = "JO@example.org;Jo;+49 30 2;;;beta;alpha;;;"
        report = post(
            client, admin, csv_body(*rows, header=MANAGER_HEADER), url=MANAGERS_URL
        ).json()
        assert (report["updated"], report["unchanged"]) == (1, 1)
        with session_scope(write=False) as session:
            jo = session.scalars(select(Manager).where(Manager.email == "jo@example.org")).one()
            assert jo.phone == "+49 30 2" and jo.version == 2

    def test_row_errors(self, client, admin) -> None:
        before = table_counts()
        body = csv_body(
            "not-an-email;A;;;;alpha;;;;",
            "b@example.org;B;;;;atlantis;;;;",
            "c@example.org;C;;;retired;alpha;;;;",
            "d@example.org;D;;;;alpha;;;;mediation:2025-13-01",
            "e@example.org;E;;;;alpha;;;0;",
            "B@example.org;B again;;;;alpha;;;;",
            header=MANAGER_HEADER,
        )
        report = post(client, admin, body, url=MANAGERS_URL).json()
        assert {(e["row"], e["field"]) for e in report["errors"]} == {
            (1, "email"),
            (2, "home_district"),
            (3, "status"),
            (4, "competences"),
            (5, "max_open_assignments"),
            (6, "email"),
        }
        assert table_counts() == before

    def test_ndjson(self, client, admin) -> None:
        line = {
            "email": "n@example.org",
            "display_name": "N",
            "home_district": "alpha",
            "competences": [{"code": "mediation", "certified_on": "2025-01-01"}],
        }
        report = post(
            client, admin, json.dumps(line).encode(), url=MANAGERS_URL, content_type=NDJSON
        ).json()
        assert report["created"] == 1, report
        assert count(ManagerCompetence) == 1


class TestUnstorableCells:
    """A cell the database cannot store (a NUL character, a lone surrogate, an over-long or
    out-of-range value) is a row error naming row and field — in a dry run too — never a 500;
    with atomic=false the valid rows are written."""

    def _ndjson(self, *records: dict[str, Any]) -> bytes:
        return "\n".join(json.dumps(record) for record in records).encode()  # \ud800 stays escaped

    @staticmethod
    def _record(external_id: str, **overrides: Any) -> dict[str, Any]:
        return {
            "external_id": external_id,
            "title": f"Incident {external_id}",
            "district": "alpha",
            "category": "hate_speech",
            "escalation_level": 3,
            **overrides,
        }

    def test_csv_nul_is_a_row_error_and_changes_nothing(self, client, admin) -> None:
        before = table_counts()
        body = csv_body(
            incident_line("n-1"),
            incident_line("n-2", title="Bad\x00title"),
            incident_line("n-3", description="a\x00b"),
            incident_line("n-4", reporter_name="\x00"),
            incident_line("x\x00y", title="Fine"),
        )
        for params in ({}, {"dry_run": "true"}):
            response = post(client, admin, body, **params)
            assert response.status_code == 200, response.text
            report = response.json()
            assert [(e["row"], e["field"]) for e in report["errors"]] == [
                (2, "title"),
                (3, "description"),
                (4, "reporter_name"),
                (5, "external_id"),
            ]
            assert all("NUL" in e["message"] for e in report["errors"])
            assert report["committed"] is False
        assert table_counts() == before

    def test_csv_not_atomic_writes_the_valid_rows(self, client, admin) -> None:
        body = csv_body(
            incident_line("n-1"), incident_line("n-2", title="Bad\x00title"), incident_line("n-3")
        )
        report = post(client, admin, body, atomic="false").json()
        assert (report["created"], report["error_count"]) == (2, 1)
        with session_scope(write=False) as session:
            assert sorted(session.scalars(select(Incident.external_id))) == ["n-1", "n-3"]

    def test_ndjson_nul_surrogate_and_huge_numbers(self, client, admin) -> None:
        before = table_counts()
        body = self._ndjson(
            self._record("j-1"),
            self._record("j-2", title="lone \ud800 surrogate"),
            self._record("j-3", description="nul \u0000 here"),
            self._record("j-4", reporter={"name": "\udfff", "contact": None}),
            self._record("j-5", location={"lat": 10**400, "lon": 1}),
            self._record("j-6", escalation_level=10**30),
            self._record("e" * 201, title="Long key"),
            {**self._record("j-8"), "\udcff": 1},
        )
        for params in ({}, {"dry_run": "true"}):
            response = post(client, admin, body, content_type=NDJSON, **params)
            assert response.status_code == 200, response.text
            errors = [(e["row"], e["field"]) for e in response.json()["errors"]]
            assert errors == [
                (2, "title"),
                (3, "description"),
                (4, "reporter_name"),
                (5, "lat"),
                (6, "escalation_level"),
                (7, "external_id"),
                (8, "\\udcff"),
            ], errors
        assert table_counts() == before
        report = post(client, admin, body, content_type=NDJSON, atomic="false").json()
        assert (report["created"], report["error_count"]) == (1, 7)
        with session_scope(write=False) as session:
            assert list(session.scalars(select(Incident.external_id))) == ["j-1"]

    def test_manager_cells(self, client, admin) -> None:
        before = table_counts()
        lines = [
            json.dumps(
                {"email": "m@example.org", "display_name": "M\u0000", "home_district": "alpha"}
            ),
            json.dumps(
                {"email": "s@example.org", "display_name": "\ud800", "home_district": "alpha"}
            ),
            '{"email": "z@example.org", "display_name": "Z", "home_district": 7}',
        ]
        report = post(
            client, admin, "\n".join(lines).encode(), url=MANAGERS_URL, content_type=NDJSON
        ).json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [
            (1, "display_name"),
            (2, "display_name"),
            (3, "home_district"),
        ]
        assert table_counts() == before


class TestRejectedImportReferences:
    """A rejected atomic import consumes no KOK- references (on PostgreSQL they are reserved on a
    connection apart, committed at once, and given back when the import's transaction is not)."""

    def test_rejected_imports_leave_the_sequence_alone(self, client, admin, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "import_batch_rows", 2)  # blocks reserved, then a fail
        bad = csv_body(
            *(incident_line(f"r-{n}") for n in range(7)),
            incident_line("r-bad", district="atlantis"),
        )
        for _ in range(2):
            report = post(client, admin, bad).json()
            assert (report["committed"], report["error_count"]) == (False, 1)
        assert count(Incident) == 0
        created = client.post(
            "/api/v1/incidents",
            headers=admin,
            json={
                "title": "After two rejected imports",
                "district": "alpha",
                "category": "hate_speech",
                "escalation_level": 2,
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["reference"] == "KOK-2026-00001"
        good = csv_body(*(incident_line(f"g-{n}") for n in range(3)))
        assert post(client, admin, good).json()["created"] == 3
        with session_scope(write=False) as session:
            refs = sorted(session.scalars(select(Incident.reference)))
        assert refs == [f"KOK-2026-{n:05d}" for n in range(1, 5)]

    def test_a_not_atomic_import_keeps_what_it_committed(self, client, admin, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "import_batch_rows", 2)
        body = csv_body(
            *(incident_line(f"k-{n}") for n in range(5)),
            incident_line("k-bad", district="atlantis"),
        )
        report = post(client, admin, body, atomic="false").json()
        assert (report["created"], report["error_count"]) == (5, 1)
        assert post(client, admin, csv_body(incident_line("k-9"))).json()["created"] == 1
        with session_scope(write=False) as session:
            refs = sorted(session.scalars(select(Incident.reference)))
        assert refs == [f"KOK-2026-{n:05d}" for n in range(1, 7)]

    def test_a_rejected_restore_gives_the_restored_numbers_back(
        self, client, admin, monkeypatch
    ) -> None:
        monkeypatch.setattr(get_settings(), "import_batch_rows", 2)  # raised, then a fail
        body = (
            "external_id;reference;title;district;category;escalation_level\r\n"
            ";KOK-2026-00040;Restored;alpha;other;2\r\n"
            "x-1;;Allocated;alpha;other;2\r\n"
            "x-2;;Bad;atlantis;other;2\r\n"
        )
        report = post(client, admin, body.encode()).json()
        assert (report["committed"], report["error_count"]) == (False, 1)
        created = client.post(
            "/api/v1/incidents",
            headers=admin,
            json={
                "title": "After a rejected restore",
                "district": "alpha",
                "category": "hate_speech",
                "escalation_level": 2,
            },
        )
        assert created.json()["reference"] == "KOK-2026-00001"
