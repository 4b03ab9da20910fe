"""Data protection (issue 8): reporter and manager erasure, retention, access log, subject access.

The central proof: after an erasure (and after retention) the reporter's name and e-mail appear
nowhere in the database — every column of every table is dumped and searched, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from app.core import clock as clock_module
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.security import hash_key
from app.models.assignment import Assignment
from app.models.base import metadata
from app.models.incident import Incident, IncidentEvent
from app.models.manager import Absence, Manager
from app.models.system import ApiKey, AuditEvent, IdempotencyRecord
from app.models.webhook import WebhookDelivery
from app.services import worker
from app.services.privacy import ERASED, ValueEraser, manager_pseudonym, retention_cutoff
from tests.factories import (
    incident_body,
    make_absence,
    make_assignment,
    make_dispatch_manager,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
)

API = "/api/v1"
NAME = "Jördis Ämmerlein"
EMAIL = "joerdis.aemmerlein@example.org"
REPORTER = {"name": NAME, "contact": EMAIL, "anonymous": False}


# --- helpers ---------------------------------------------------------------------------------


def database_text() -> str:
    """Every value of every column of every table, as text, lower-cased."""
    parts: list[str] = []
    with session_scope(write=False) as session:
        for table in metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.extend(str(value) for value in row)
    return "\n".join(parts).lower()


def assert_nowhere(*values: str) -> None:
    dump = database_text()
    for value in values:
        assert value.lower() not in dump, f"{value!r} is still stored"


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{type_}"
    return body


def key_id(headers: dict[str, str]) -> uuid.UUID:
    token = headers["Authorization"].removeprefix("Bearer ")
    with session_scope(write=False) as session:
        return session.scalars(select(ApiKey.id).where(ApiKey.key_hash == hash_key(token))).one()


def access_entries(resource: str | None = None) -> list[AuditEvent]:
    with session_scope(write=False) as session:
        stmt = select(AuditEvent).where(AuditEvent.kind == "access")
        if resource:
            stmt = stmt.where(AuditEvent.resource == resource)
        return list(session.scalars(stmt.order_by(AuditEvent.at, AuditEvent.resource_id)))


def stored_incident(incident_id: Any) -> Incident:
    with session_scope(write=False) as session:
        incident = session.get(Incident, uuid.UUID(str(incident_id)))
        assert incident is not None
        return incident


def timeline(incident_id: Any) -> list[IncidentEvent]:
    with session_scope(write=False) as session:
        return list(
            session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == uuid.UUID(str(incident_id)))
                .order_by(IncidentEvent.at, IncidentEvent.id)
            )
        )


def erase(client: Any, headers: dict[str, str], incident_id: Any) -> Any:
    return client.post(f"{API}/incidents/{incident_id}/reporter/erase", headers=headers)


def pin(when: datetime) -> None:
    clock_module.set_clock(clock_module.Clock(tz=get_settings().tz, fixed_now=when))


@pytest.fixture
def world(fixed_clock: Any) -> dict[str, Any]:
    seed_reference()
    organisation = make_organisation("Own NGO")
    return {
        "organisation": organisation,
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "partner": make_key("partner", organisation_id=organisation),
        "viewer": make_key("viewer"),
    }


# --- reporter erasure ------------------------------------------------------------------------


class TestEraseReporter:
    def test_erased_everywhere_the_incident_stays(self, client, world, monkeypatch) -> None:
        """A realistic life: created with an Idempotency-Key, the reporter edited, timeline
        notes, a staff note, a declined offer, a webhook subscription with fanned-out outbox
        events and delivery attempts, a CSV export — then one erasure, and the values are gone."""
        from app.services.webhooks import deliver_due, fan_out_pending

        admin, coordinator = world["admin"], world["coordinator"]
        monkeypatch.setattr(get_settings(), "webhooks_allow_private", True)
        subscription = client.post(
            f"{API}/webhooks",
            headers=admin,
            json={
                "url": "http://127.0.0.1:9/hook",
                "events": [
                    "incident.created",
                    "incident.status_changed",
                    "assignment.offered",
                    "assignment.declined",
                ],
            },
        )
        assert subscription.status_code == 201, subscription.text
        created = client.post(
            f"{API}/incidents",
            headers={**world["partner"], "Idempotency-Key": "create-1"},
            json=incident_body(
                reporter=REPORTER,
                description=f"{NAME} ({EMAIL}) saw the stickers.",
                title=f"Stickers reported by {NAME}",
            ),
        )
        assert created.status_code == 201, created.text
        incident_id = created.json()["id"]
        reference = created.json()["reference"]
        old_contact = EMAIL
        new_contact = "j.ae@example.net"
        patched = client.patch(
            f"{API}/incidents/{incident_id}",
            headers=coordinator,
            json={"reporter": {**REPORTER, "contact": new_contact}},
        )
        assert patched.status_code == 200, patched.text
        status = client.post(
            f"{API}/incidents/{incident_id}/status",
            headers={**coordinator, "Idempotency-Key": "triage-1"},
            json={"status": "triaged", "note": f"Called back {NAME} at {new_contact}"},
        )
        assert status.status_code == 200, status.text
        note = client.post(
            f"{API}/incidents/{incident_id}/notes",
            headers={**coordinator, "Idempotency-Key": "note-1"},
            json={"text": f"{NAME.upper()} wants to stay informed: {new_contact}"},
        )
        assert note.status_code == 201, note.text
        manager = make_dispatch_manager(competences=("mediation",))
        offered = client.post(
            f"{API}/assignments",
            headers=coordinator,
            json={"incident_id": incident_id, "manager_id": str(manager)},
        )
        assert offered.status_code == 201, offered.text
        declined = client.post(
            f"{API}/assignments/{offered.json()['id']}/decline",
            headers=coordinator,
            json={"reason": f"I know {NAME} privately"},
        )
        assert declined.status_code == 200, declined.text
        assert fan_out_pending() > 0
        deliver_due()
        export = client.get(f"{API}/incidents", headers={**coordinator, "Accept": "text/csv"})
        assert export.status_code == 200 and NAME in export.text
        assert (
            client.get(f"{API}/incidents/{incident_id}", headers=coordinator).json()["reporter"][
                "contact"
            ]
            == new_contact
        )
        with session_scope(write=False) as session:
            assert session.scalar(select(func.count()).select_from(WebhookDelivery)) > 0
            assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) >= 3
        dump = database_text()
        for value in (NAME, old_contact, new_contact):
            assert value.lower() in dump  # the scenario did store them

        response = erase(client, coordinator, incident_id)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reporter"] == {"name": None, "contact": None, "anonymous": False}
        assert body["title"] == f"Stickers reported by {ERASED}"
        assert body["description"] == f"{ERASED} ({ERASED}) saw the stickers."
        assert body["reference"] == reference and body["status"] == "triaged"
        assert_nowhere(NAME, old_contact, new_contact, "ämmerlein", "joerdis")
        # the incident, its timeline and its statistics stay
        events = timeline(incident_id)
        assert {"created", "updated", "status_changed", "note_added", "assignment_declined"} <= {
            e.type for e in events
        }
        (erased,) = [e for e in events if e.type == "reporter_erased"]
        assert erased.actor_id == key_id(coordinator) and erased.actor_role == "coordinator"
        assert erased.data["fields"] == ["reporter.contact", "reporter.name"]
        assert erased.data["reason"] == "request"
        assert {
            "title",
            "description",
            "notes",
            "timeline",
            "assignments",
            "webhook_outbox",
            "idempotency_records",
        } <= set(erased.data["redacted_in"])
        stats = client.get(
            f"{API}/stats/incidents", params={"group_by": "category"}, headers=coordinator
        )
        assert stats.status_code == 200 and stats.json()["total"] == 1
        # a replayed request returns the scrubbed response
        replay = client.post(
            f"{API}/incidents",
            headers={**world["partner"], "Idempotency-Key": "create-1"},
            json=incident_body(
                reporter=REPORTER,
                description=f"{NAME} ({EMAIL}) saw the stickers.",
                title=f"Stickers reported by {NAME}",
            ),
        )
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == incident_id
        assert replay.json()["reporter"] == {"name": None, "contact": None, "anonymous": False}

    def test_audited_and_idempotent(self, client, world) -> None:
        incident = make_incident(reporter=REPORTER)
        first = erase(client, world["admin"], incident.id)
        assert first.status_code == 200, first.text
        version = first.json()["version"]
        assert version == incident.version + 1
        second = erase(client, world["admin"], incident.id)
        assert second.status_code == 200
        assert second.json() == first.json()
        assert [e.type for e in timeline(incident.id)].count("reporter_erased") == 1
        with session_scope(write=False) as session:
            entries = list(
                session.scalars(select(AuditEvent).where(AuditEvent.action == "erase_reporter"))
            )
        assert len(entries) == 1
        (entry,) = entries
        assert (entry.kind, entry.resource, entry.resource_id) == (
            "write",
            "incident",
            str(incident.id),
        )
        assert entry.principal_id == key_id(world["admin"])
        assert entry.fields == ["reporter.contact", "reporter.name"]
        stored = stored_incident(incident.id)
        assert stored.reporter_erased_at == clock_module.get_clock().now()
        assert stored.has_reporter and stored.reporter_name is None

    @pytest.mark.parametrize("role", ["partner", "manager", "viewer"])
    def test_refused(self, client, world, role: str) -> None:
        incident = make_incident(reporter=REPORTER, organisation_id=world["organisation"])
        if role == "manager":
            manager = make_manager()
            make_assignment(incident.id, manager, role="lead", status="accepted")
            headers = make_key("manager", manager_id=manager)
        else:
            headers = world[role]
        before = database_text()
        assert_problem(erase(client, headers, incident.id), 403, "forbidden")
        assert database_text() == before
        stored = stored_incident(incident.id)
        assert (stored.reporter_name, stored.reporter_contact) == (NAME, EMAIL)

    def test_unknown_incident(self, client, world) -> None:
        assert_problem(erase(client, world["coordinator"], uuid.uuid4()), 404, "not-found")

    def test_without_reporter_changes_nothing(self, client, world) -> None:
        incident = make_incident(reporter=None)
        response = erase(client, world["coordinator"], incident.id)
        assert response.status_code == 200
        assert response.json()["reporter"] is None
        assert response.json()["version"] == incident.version
        assert "reporter_erased" not in [e.type for e in timeline(incident.id)]

    def test_short_values_are_not_erased_in_free_text(self) -> None:
        eraser = ValueEraser(["Li", "Anna Berg", "+49 361 1234"])
        text = "Anna Berg (anna berg, Annaberg) called from +49 361 1234; Li likes lilies."
        assert eraser.text(text) == (
            "[erased] ([erased], Annaberg) called from [erased]; Li likes lilies."
        )


# --- retention -------------------------------------------------------------------------------


def closed_incident(status: str, changed_at: datetime, **overrides: Any) -> uuid.UUID:
    """An incident in ``status`` since ``changed_at`` (written directly: fixture data)."""
    incident = make_incident(**overrides)
    with session_scope() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == incident.id)
            .values(status=status, status_changed_at=changed_at)
        )
    return incident.id


BERLIN_NOON = 10  # 12:00 in Berlin (CEST) is 10:00 UTC


class TestRetention:
    @pytest.fixture
    def incidents(self, world) -> dict[str, uuid.UUID]:
        # 2025-06-14 23:30 in Berlin (21:30 UTC): closed on local date 2025-06-14
        late = datetime(2025, 6, 14, 21, 30, tzinfo=UTC)
        # 2025-06-15 00:30 in Berlin (2025-06-14 22:30 UTC): withdrawn on local date 2025-06-15
        after_midnight = datetime(2025, 6, 14, 22, 30, tzinfo=UTC)
        long_ago = datetime(2024, 1, 1, tzinfo=UTC)
        return {
            "closed_0614": closed_incident("closed", late, reporter=REPORTER),
            "withdrawn_0615": closed_incident(
                "withdrawn",
                after_midnight,
                reporter={"name": "Kai Beispiel", "contact": "kai@example.org"},
            ),
            "referred_old": closed_incident("referred", long_ago, reporter=REPORTER),
            "resolved_old": closed_incident("resolved", long_ago, reporter=REPORTER),
            "open_old": closed_incident("triaged", long_ago, reporter=REPORTER),
            "closed_no_reporter": closed_incident("closed", long_ago, reporter=None),
        }

    @staticmethod
    def kept(incidents: dict[str, uuid.UUID]) -> set[str]:
        return {
            name
            for name, incident_id in incidents.items()
            if stored_incident(incident_id).reporter_contact is not None
        }

    def test_erases_exactly_past_the_limit_at_the_day_boundary(self, incidents) -> None:
        job = next(j for j in worker.JOBS if j.name == "privacy.retention")
        # 2026-06-14: the 0614 closing is 365 days ago — not *longer* ago: kept
        pin(datetime(2026, 6, 14, 21, 59, tzinfo=UTC))  # 23:59 in Berlin
        assert worker.run_once([job]) == {"privacy.retention": 1}
        assert self.kept(incidents) == {"closed_0614", "withdrawn_0615", "resolved_old", "open_old"}
        # 2026-06-15 00:00 in Berlin: 366 days — erased; the 0615 withdrawal is kept
        pin(datetime(2026, 6, 14, 22, 0, tzinfo=UTC))
        assert worker.run_once([job]) == {"privacy.retention": 1}
        assert self.kept(incidents) == {"withdrawn_0615", "resolved_old", "open_old"}
        pin(datetime(2026, 6, 15, 21, 59, tzinfo=UTC))
        assert worker.run_once([job]) == {"privacy.retention": 0}
        pin(datetime(2026, 6, 15, 22, 0, tzinfo=UTC))  # 2026-06-16 in Berlin
        assert worker.run_once([job]) == {"privacy.retention": 1}
        assert self.kept(incidents) == {"resolved_old", "open_old"}
        erased = [e for e in timeline(incidents["closed_0614"]) if e.type == "reporter_erased"]
        assert [(e.actor_id, e.actor_role, e.data["reason"]) for e in erased] == [
            (None, "admin", "retention")
        ]
        assert_nowhere("kai@example.org", "kai beispiel")

    def test_cutoff_is_the_start_of_the_local_day(self) -> None:
        from datetime import date

        assert retention_cutoff(date(2026, 6, 15), 365) == datetime(2025, 6, 14, 22, 0, tzinfo=UTC)
        assert retention_cutoff(date(2026, 1, 15), 30) == datetime(2025, 12, 15, 23, 0, tzinfo=UTC)

    def test_cli_dry_run_then_run(self, incidents, monkeypatch) -> None:
        from app.cli import cli

        monkeypatch.setattr(get_settings(), "reporter_retention_days", 30)
        pin(datetime(2026, 6, 15, BERLIN_NOON, tzinfo=UTC))
        references = {
            name: stored_incident(incident_id).reference for name, incident_id in incidents.items()
        }
        due = sorted(references[n] for n in ("closed_0614", "withdrawn_0615", "referred_old"))
        before = database_text()
        runner = CliRunner()
        dry = runner.invoke(cli, ["retention", "run", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert dry.stdout.split() == due
        assert "30 days" in dry.stderr and "dry run" in dry.stderr
        assert NAME not in dry.output and EMAIL not in dry.output
        assert database_text() == before
        real = runner.invoke(cli, ["retention", "run"])
        assert real.exit_code == 0, real.output
        assert sorted(real.stdout.split()) == due
        assert NAME not in real.output and EMAIL not in real.output
        assert self.kept(incidents) == {"resolved_old", "open_old"}
        again = runner.invoke(cli, ["retention", "run"])
        assert again.exit_code == 0 and again.stdout == ""

    def test_everything_erased_after_retention(self, client, world) -> None:
        """Retention reaches the copies too: idempotency responses and the timeline."""
        created = client.post(
            f"{API}/incidents",
            headers={**world["coordinator"], "Idempotency-Key": "k-1"},
            json=incident_body(reporter=REPORTER, description=f"Reported by {NAME}."),
        )
        incident_id = created.json()["id"]
        for status in ("withdrawn",):
            response = client.post(
                f"{API}/incidents/{incident_id}/status",
                headers={**world["coordinator"], "Idempotency-Key": "k-2"},
                json={"status": status, "note": f"{NAME} withdrew the report"},
            )
            assert response.status_code == 200, response.text
        # 20 days later (the idempotency records would expire after 24 h — keep them, to see
        # that retention scrubs them rather than relying on the purge)
        with session_scope() as session:
            session.execute(
                update(IdempotencyRecord).values(expires_at=datetime(2030, 1, 1, tzinfo=UTC))
            )
        pin(datetime(2026, 7, 5, BERLIN_NOON, tzinfo=UTC))
        from app.services.privacy import run_retention

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(get_settings(), "reporter_retention_days", 10)
            report = run_retention()
        assert report.references == [created.json()["reference"]]
        assert_nowhere(NAME, EMAIL)
        (erased,) = [e for e in timeline(incident_id) if e.type == "reporter_erased"]
        assert erased.data["reason"] == "retention"
        assert {"description", "timeline", "webhook_outbox", "idempotency_records"} <= set(
            erased.data["redacted_in"]
        )

    def test_purges_expired_idempotency_records(self, client, world) -> None:
        client.post(
            f"{API}/incidents",
            headers={**world["coordinator"], "Idempotency-Key": "a"},
            json=incident_body(reporter=REPORTER),
        )
        pin(datetime(2026, 6, 16, 10, 0, 1, tzinfo=UTC))  # 24 h and 1 s later
        assert worker.run_once([next(j for j in worker.JOBS if j.name == "privacy.retention")]) == {
            "privacy.retention": 1
        }
        with session_scope(write=False) as session:
            assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0

    def test_setting(self, monkeypatch) -> None:
        assert Settings().reporter_retention_days == 365
        monkeypatch.setenv("KOKOMA_REPORTER_RETENTION_DAYS", "90")
        assert Settings().reporter_retention_days == 90


# --- access logging --------------------------------------------------------------------------


class TestAccessLog:
    def test_single_read(self, client, world) -> None:
        incident = make_incident(reporter=REPORTER)
        response = client.get(f"{API}/incidents/{incident.id}", headers=world["coordinator"])
        assert response.status_code == 200
        (entry,) = access_entries()
        assert entry.principal_id == key_id(world["coordinator"])
        assert entry.principal_role == "coordinator"
        assert (entry.action, entry.resource, entry.resource_id) == (
            "read",
            "incident",
            str(incident.id),
        )
        assert entry.fields == ["reporter.contact", "reporter.name"]
        assert entry.at == clock_module.get_clock().now()
        assert "example.org" not in str(entry.model_dump()).lower()
        assert "jördis" not in str(entry.model_dump()).lower()

    def test_list_logs_each_incident_with_personal_data(self, client, world) -> None:
        with_data = [
            make_incident(reporter=REPORTER),
            make_incident(reporter={"name": None, "contact": "kai@example.org"}),
        ]
        make_incident(reporter=None)
        make_incident(reporter={"anonymous": True})
        response = client.get(f"{API}/incidents", headers=world["admin"])
        assert len(response.json()["items"]) == 4
        entries = access_entries()
        assert {(e.resource_id, tuple(e.fields)) for e in entries} == {
            (str(with_data[0].id), ("reporter.contact", "reporter.name")),
            (str(with_data[1].id), ("reporter.contact",)),
        }

    def test_only_reads_that_show_reporter_data(self, client, world) -> None:
        incident = make_incident(reporter=REPORTER, organisation_id=world["organisation"])
        offered = make_manager()
        make_assignment(incident.id, offered, role="lead", status="offered")
        manager = make_key("manager", manager_id=offered)
        assert (
            client.get(f"{API}/incidents/{incident.id}", headers=manager).json()["reporter"] is None
        )
        assert access_entries() == []
        assert (
            client.get(f"{API}/incidents/{incident.id}", headers=world["partner"]).json()[
                "reporter"
            ]["name"]
            == NAME
        )
        (entry,) = access_entries()
        assert entry.principal_role == "partner"

    def test_manager_as_accepted_lead(self, client, world) -> None:
        incident = make_incident(reporter=REPORTER)
        lead = make_manager()
        make_assignment(incident.id, lead, role="lead", status="accepted")
        headers = make_key("manager", manager_id=lead)
        assert client.get(f"{API}/incidents", headers=headers).json()["items"][0]["reporter"]
        (entry,) = access_entries()
        assert (entry.principal_role, entry.resource_id) == ("manager", str(incident.id))

    def test_export_is_logged(self, client, world) -> None:
        first = make_incident(reporter=REPORTER)
        make_incident(reporter=None)
        response = client.get(f"{API}/incidents", headers={**world["admin"], "Accept": "text/csv"})
        assert response.status_code == 200 and NAME in response.text
        (entry,) = access_entries()
        assert (entry.action, entry.resource_id) == ("export", str(first.id))
        geo = client.get(
            f"{API}/incidents", headers={**world["admin"], "Accept": "application/geo+json"}
        )
        assert geo.status_code == 200
        assert len(access_entries()) == 1  # no incident has a location: nothing else was shown
        make_incident(reporter=REPORTER, location={"lat": 50.98, "lon": 11.03})
        client.get(f"{API}/incidents", headers={**world["admin"], "Accept": "application/geo+json"})
        assert [e.action for e in access_entries()] == ["export", "export"]

    def test_writes_are_audited_as_writes_not_accesses(self, client, world) -> None:
        response = client.post(
            f"{API}/incidents", headers=world["coordinator"], json=incident_body(reporter=REPORTER)
        )
        assert response.status_code == 201
        assert access_entries() == []

    def test_readable_by_admins_only(self, client, world) -> None:
        incident = make_incident(reporter=REPORTER)
        client.get(f"{API}/incidents/{incident.id}", headers=world["coordinator"])
        listed = client.get(f"{API}/audit", params={"kind": "access"}, headers=world["admin"])
        assert listed.status_code == 200
        (item,) = listed.json()["items"]
        assert item["kind"] == "access" and item["resource_id"] == str(incident.id)
        assert item["fields"] == ["reporter.contact", "reporter.name"]
        assert NAME not in listed.text and EMAIL not in listed.text
        writes = client.get(f"{API}/audit", params={"kind": "write"}, headers=world["admin"])
        assert all(i["kind"] == "write" for i in writes.json()["items"])
        assert_problem(
            client.get(f"{API}/audit", params={"kind": "access"}, headers=world["coordinator"]),
            403,
            "forbidden",
        )


# --- subject access --------------------------------------------------------------------------


class TestSubjectAccess:
    def test_every_record_with_the_address(self, client, world) -> None:
        closed = closed_incident(
            "closed",
            datetime(2026, 1, 10, 12, tzinfo=UTC),
            reporter={"name": NAME, "contact": EMAIL.upper()},
        )
        open_ = make_incident(reporter=REPORTER)
        make_incident(reporter={"name": NAME, "contact": "other@example.org"})
        manager = make_manager(email=EMAIL, display_name=NAME)
        absence = make_absence(manager, "2026-07-01", "2026-07-03", reason="Kur")
        assignment = make_assignment(open_.id, manager, role="lead", status="offered")
        manager_key = make_key("manager", manager_id=manager)
        response = client.get(
            f"{API}/data-subject", params={"email": f" {EMAIL.title()} "}, headers=world["admin"]
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["email"] == EMAIL.title()
        assert [i["id"] for i in body["incidents"]] == sorted(
            [str(closed), str(open_.id)], key=lambda i: stored_incident(i).reference
        )
        by_id = {i["id"]: i for i in body["incidents"]}
        assert by_id[str(closed)]["reporter"] == {
            "name": NAME,
            "contact": EMAIL.upper(),
            "anonymous": False,
        }
        assert by_id[str(closed)]["retention_ends_on"] == "2027-01-11"
        assert by_id[str(open_.id)]["retention_ends_on"] is None
        (entry,) = body["managers"]
        assert entry["manager"]["id"] == str(manager) and entry["manager"]["email"] == EMAIL
        assert [(a["id"], a["reason"]) for a in entry["absences"]] == [(str(absence), "Kur")]
        assert [(a["id"], a["incident_reference"]) for a in entry["assignments"]] == [
            (str(assignment), open_.reference)
        ]
        assert [k["id"] for k in entry["api_keys"]] == [str(key_id(manager_key))]
        assert "incident.description" in body["not_searched"]
        logged = {(e.resource, e.resource_id, e.action) for e in access_entries()}
        assert logged == {
            ("incident", str(closed), "subject_access"),
            ("incident", str(open_.id), "subject_access"),
            ("manager", str(manager), "subject_access"),
        }
        assert EMAIL not in str([e.model_dump() for e in access_entries()]).lower()

    def test_nothing_found(self, client, world) -> None:
        response = client.get(
            f"{API}/data-subject", params={"email": "nobody@example.org"}, headers=world["admin"]
        )
        assert response.status_code == 200
        assert (response.json()["incidents"], response.json()["managers"]) == ([], [])
        assert access_entries() == []

    @pytest.mark.parametrize("email", ["not-an-address", "a b@example.org", "x" * 321 + "@x"])
    def test_invalid_address(self, client, world, email: str) -> None:
        response = client.get(
            f"{API}/data-subject", params={"email": email}, headers=world["admin"]
        )
        assert_problem(response, 422, "validation-error")

    @pytest.mark.parametrize("role", ["coordinator", "partner", "viewer"])
    def test_admins_only(self, client, world, role: str) -> None:
        make_incident(reporter=REPORTER)
        response = client.get(f"{API}/data-subject", params={"email": EMAIL}, headers=world[role])
        assert_problem(response, 403, "forbidden")
        assert access_entries() == []


# --- manager erasure -------------------------------------------------------------------------


class TestEraseManager:
    @pytest.fixture
    def retired(self, client, world) -> dict[str, Any]:
        created = client.post(
            f"{API}/managers",
            headers={**world["admin"], "Idempotency-Key": "m-1"},
            json={
                "display_name": "Mara Beispiel",
                "email": "mara.beispiel@example.org",
                "phone": "+49 361 555 0101",
                "home_district": "alpha",
                "languages": ["de"],
                "competences": [{"code": "mediation", "certified_on": "2025-01-01"}],
            },
        )
        assert created.status_code == 201, created.text
        manager_id = uuid.UUID(created.json()["id"])
        headers = make_key("manager", manager_id=manager_id)
        absence = make_absence(manager_id, "2026-07-01", "2026-07-02", reason="Arzttermin")
        for status in ("active", "retired"):
            response = client.post(
                f"{API}/managers/{manager_id}/status",
                headers=world["admin"],
                json={"status": status},
            )
            assert response.status_code == 200, response.text
        incident = make_incident(reporter=None)
        make_assignment(incident.id, manager_id, role="lead", status="completed")
        return {"id": manager_id, "headers": headers, "absence": absence}

    def test_pseudonymised(self, client, world, retired) -> None:
        manager_id = retired["id"]
        assert (
            client.get(f"{API}/managers/{manager_id}", headers=retired["headers"]).status_code
            == 200
        )
        response = client.post(f"{API}/managers/{manager_id}/erase", headers=world["admin"])
        assert response.status_code == 200, response.text
        body = response.json()
        name, email = manager_pseudonym(manager_id)
        assert (body["display_name"], body["email"], body["phone"]) == (name, email, None)
        assert name.startswith("Former manager ") and email == f"erased-{manager_id}@invalid"
        assert body["status"] == "retired" and body["home_district"] == "alpha"
        assert_nowhere("mara beispiel", "mara.beispiel@example.org", "555 0101", "arzttermin")
        with session_scope(write=False) as session:
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.manager_id == manager_id)
                )
                == 1
            )
            absence = session.get(Absence, retired["absence"])
            assert absence is not None and absence.reason is None
            keys = list(session.scalars(select(ApiKey).where(ApiKey.manager_id == manager_id)))
            assert keys and all(k.revoked_at is not None for k in keys)
            (entry,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "erase"))
        assert (entry.resource, entry.resource_id) == ("manager", str(manager_id))
        assert entry.fields == ["absences.reason", "display_name", "email", "phone"]
        assert_problem(
            client.get(f"{API}/managers/{manager_id}", headers=retired["headers"]),
            401,
            "unauthorized",
        )
        again = client.post(f"{API}/managers/{manager_id}/erase", headers=world["admin"])
        assert again.status_code == 200 and again.json() == body
        with session_scope(write=False) as session:
            assert session.get(Manager, manager_id).version == body["version"]  # type: ignore[union-attr]

    def test_only_retired(self, client, world) -> None:
        manager = make_manager(display_name="Still Active")
        response = client.post(f"{API}/managers/{manager}/erase", headers=world["admin"])
        assert_problem(response, 409, "not-retired")
        with session_scope(write=False) as session:
            assert session.get(Manager, manager).display_name == "Still Active"  # type: ignore[union-attr]

    @pytest.mark.parametrize("role", ["coordinator", "partner", "viewer"])
    def test_admins_only(self, client, world, role: str) -> None:
        manager = make_manager(display_name="Retired One", status="retired")
        response = client.post(f"{API}/managers/{manager}/erase", headers=world[role])
        assert_problem(response, 403, "forbidden")
        with session_scope(write=False) as session:
            assert session.get(Manager, manager).display_name == "Retired One"  # type: ignore[union-attr]

    def test_unknown(self, client, world) -> None:
        assert_problem(
            client.post(f"{API}/managers/{uuid.uuid4()}/erase", headers=world["admin"]),
            404,
            "not-found",
        )

    def test_contact_reads_are_logged(self, client, world) -> None:
        manager = make_manager(phone=None)
        client.get(f"{API}/managers/{manager}", headers=world["coordinator"])
        client.get(f"{API}/managers", headers=world["viewer"])  # the redacted view: nothing to log
        (entry,) = access_entries("manager")
        assert (entry.resource_id, entry.fields, entry.principal_role) == (
            str(manager),
            ["email"],
            "coordinator",
        )
        client.get(f"{API}/managers", headers=world["admin"])
        assert len(access_entries("manager")) == 2
