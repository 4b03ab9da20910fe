"""E-mail notifications (issue 17): queued with the change, sent by ``kokoma worker`` over SMTP.

A real SMTP server (aiosmtpd) runs on a free loopback port for every test. Every incident here
carries marker strings in its title, description, reporter and notes; the inbox fixture scans
every message a test produced (headers and both parts) and fails when one of them appears.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from app.core import clock as clock_module
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.security import SYSTEM_PRINCIPAL
from app.models.assignment_schemas import AssignmentCreate
from app.models.incident import Incident
from app.models.notification import Notification
from app.services import notifications
from app.services.dispatch.expiry import expire_due_offers
from app.services.dispatch.service import DispatchService
from app.services.notifications import (
    collect_digests,
    deliver_mail,
    lease_seconds,
    queue_reminders,
    queue_triage_overdue,
)
from tests.factories import (
    make_dispatch_manager,
    make_incident,
    make_key,
    make_triaged_incident,
    seed_reference,
)

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # the fixed clock: Monday, 12:00 in Berlin
SENDER = "kokoma@stadt.example"
PUBLIC = "https://kokoma.stadt.example"
COORDINATORS = ["koordination@stadt.example", "leitstelle@stadt.example"]
MARKERS = {
    "title": "Titelmarke QX7TITLE",
    "description": "Beschreibungsmarke QX7DESC mit Namen",
    "name": "Reportermarke QX7NAME",
    "contact": "qx7contact@reporter.example",
    "note": "Notizmarke QX7NOTE",
}


# --- a real SMTP server on loopback ---------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")


class Inbox:
    """aiosmtpd handler: keeps every accepted message; can refuse (``answers``) or hold DATA."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.seen: list[Received] = []  # every DATA, accepted or not
        self.answers: list[str] = []  # scripted answers to the next DATA commands
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            message_from_bytes(envelope.content, policy=policy.default),  # type: ignore[arg-type]
            envelope.content,
        )
        self.seen.append(received)
        if self.hold is not None:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 60)
            return "451 4.3.0 connection lost"
        if self.answers:
            return self.answers.pop(0)
        self.messages.append(received)
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if m.rcpt_tos == [address]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scan(received: Received) -> None:
    """No reporter data, description, title or note in any part or header of a message."""
    parts = [
        received.raw.decode("utf-8", "replace"),
        received.text,
        received.html,
        str(received.message["Subject"]),
    ]
    for where in parts:
        for field, marker in MARKERS.items():
            for token in marker.split():
                if token.startswith("QX7") or "@" in token:
                    assert token not in where, f"{field} leaked into a mail: {token}"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    handler.port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    if handler.hold is not None:
        handler.hold.set()
    controller.stop()
    for received in handler.seen:
        _scan(received)


@pytest.fixture
def mail(fixed_clock: Any, inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> Inbox:
    """Mail configured against the inbox; reference data seeded; the clock at NOW."""
    seed_reference()
    settings = get_settings()
    for name, value in {
        "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port,
        "mail_from": SENDER,
        "public_url": PUBLIC,
        "coordinator_emails": ", ".join(COORDINATORS),
        "mail_language": "de",
        "coordinator_digest_minutes": None,
        "mail_backoff_seconds": 60.0,
        "mail_backoff_max_seconds": 600.0,
        "mail_max_attempts": 8,
        "offer_reminder_hours": 12.0,
        "triage_sla_hours": 48.0,
        "smtp_timeout_seconds": 5.0,
    }.items():
        monkeypatch.setattr(settings, name, value)
    return inbox


# --- helpers ----------------------------------------------------------------------------------


def set_now(at: datetime) -> None:
    clock_module.set_clock(clock_module.Clock(tz=get_settings().tz, fixed_now=at))


def marked_incident(**overrides: Any) -> uuid.UUID:
    fields = {
        "title": MARKERS["title"],
        "description": MARKERS["description"],
        "reporter": {"name": MARKERS["name"], "contact": MARKERS["contact"], "anonymous": False},
        **overrides,
    }
    incident_id = make_triaged_incident(**fields)
    return incident_id


def add_note(client: Any, staff: dict[str, str], incident_id: uuid.UUID) -> None:
    response = client.post(
        f"/api/v1/incidents/{incident_id}/notes", headers=staff, json={"text": MARKERS["note"]}
    )
    assert response.status_code == 201, response.text


def offer(
    client: Any,
    staff: dict[str, str],
    incident_id: uuid.UUID,
    manager_id: uuid.UUID | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"incident_id": str(incident_id)}
    if manager_id is not None:
        body["manager_id"] = str(manager_id)
    if role is not None:
        body["role"] = role
    response = client.post("/api/v1/assignments", headers=staff, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def answer(
    client: Any,
    headers: dict[str, str],
    assignment_id: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> None:
    response = client.post(
        f"/api/v1/assignments/{assignment_id}/{action}", headers=headers, json=body
    )
    assert response.status_code == 200, response.text


def rows(**where: Any) -> list[Notification]:
    with session_scope(write=False) as session:
        stmt = select(Notification).order_by(Notification.created_at, Notification.recipient)
        for name, value in where.items():
            stmt = stmt.where(getattr(Notification, name) == value)
        return list(session.scalars(stmt))


def reference_of(incident_id: uuid.UUID) -> str:
    with session_scope(write=False) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident.reference


def manager(name: str = "Mara Beispiel", email: str | None = None, **fields: Any) -> uuid.UUID:
    return make_dispatch_manager(
        display_name=name, email=email or f"{uuid.uuid4().hex[:8]}@ehrenamt.example", **fields
    )


def email_of(manager_id: uuid.UUID) -> str:
    from app.models.manager import Manager

    with session_scope(write=False) as session:
        found = session.get(Manager, manager_id)
        assert found is not None
        return found.email


# --- to the manager -------------------------------------------------------------------------


class TestOfferMail:
    def test_offer_reaches_the_manager_in_one_worker_round(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara = manager("Mara Beispiel", "mara@ehrenamt.example")
        incident_id = marked_incident()
        add_note(client, staff, incident_id)
        made = offer(client, staff, incident_id, mara)
        reference = reference_of(incident_id)

        assert deliver_mail() == 1
        (received,) = mail.messages
        assert received.rcpt_tos == ["mara@ehrenamt.example"]
        assert received.mail_from == SENDER
        message = received.message
        assert message["Subject"] == f"Neue Anfrage: {reference} in Alpha (Leitung)"
        assert message["From"] == SENDER and message["To"] == "mara@ehrenamt.example"
        (row,) = rows()
        assert message["Message-ID"] == row.message_id
        assert row.message_id.endswith("@stadt.example>")
        assert message["Auto-Submitted"] == "auto-generated"
        link = f"{PUBLIC}/assignments/{made['id']}"
        assert received.text == (
            "Hallo Mara Beispiel,\n\n"
            "Sie haben eine neue Einsatzanfrage im Konfliktmanagement:\n\n"
            f"  Vorgang:     {reference}\n"
            "  Stadtteil:   Alpha\n"
            "  Kategorie:   Rechtsextremismus\n"
            "  Eskalation:  Stufe 3 von 9 (nach Glasl)\n"
            "  Rolle:       Leitung\n"
            "  Antwort bis: Mi., 17.06.2026, 12:00 Uhr\n\n"
            f"Annehmen: {link}?answer=accept\n"
            f"Ablehnen: {link}?answer=decline\n"
            f"Details:  {link}\n\n"
            "Ohne Antwort bis dahin verfällt die Anfrage und geht an die nächste passende "
            "Person.\nAngaben zu den Beteiligten sehen Sie erst, wenn Sie die Anfrage "
            "angenommen haben.\n\n"
            "-- \n"
            "Diese Nachricht hat kokoma (Kommunales Konfliktmanagement) automatisch "
            "verschickt.\nAntworten auf diese E-Mail liest niemand. Ob Sie Anfragen per "
            "E-Mail erhalten,\nstellen Sie in Ihrem Profil ein (notify_by_email).\n"
        )
        html = received.html
        assert f'<a href="{link}?answer=accept">Annehmen</a>' in html
        assert "<strong>" + reference + "</strong>" in html
        assert "Mi., 17.06.2026, 12:00 Uhr" in html
        assert row.status == "sent" and row.attempts == 1 and row.sent_at == NOW
        # nothing else was queued (no coordinator mail: the offer found a manager)
        assert deliver_mail() == 0

    def test_english_when_configured(self, client, mail, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "mail_language", "en")
        staff = make_key("coordinator")
        mara = manager("Mara Beispiel", "mara@ehrenamt.example")
        incident_id = marked_incident(category="hate_speech")
        offer(client, staff, incident_id, mara)
        deliver_mail()
        (received,) = mail.messages
        reference = reference_of(incident_id)
        assert received.message["Subject"] == f"New offer: {reference} in Alpha (lead)"
        assert "  Category:    Hate speech\n" in received.text
        assert "  Answer by:   Wed 17 Jun 2026, 12:00 (Europe/Berlin)\n" in received.text
        assert received.text.startswith("Hello Mara Beispiel,\n")

    def test_a_change_that_rolls_back_mails_nobody(self, mail) -> None:
        mara = manager()
        incident_id = marked_incident()
        with pytest.raises(RuntimeError), session_scope() as session:
            DispatchService(session).create(
                AssignmentCreate(incident_id=incident_id, manager_id=mara), SYSTEM_PRINCIPAL
            )
            assert len(session.scalars(select(Notification)).all()) == 1  # queued with it …
            raise RuntimeError("the request failed after the offer")
        assert rows() == []  # … and gone with the rollback
        assert deliver_mail() == 0 and mail.seen == []

    def test_not_configured_queues_nothing(self, client, mail, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "smtp_host", None)
        staff = make_key("coordinator")
        incident_id = marked_incident()
        made = offer(client, staff, incident_id, manager())
        answer(client, staff, made["id"], "decline", {"reason": "keine Zeit"})  # no candidate
        set_now(NOW + timedelta(hours=100))
        assert queue_reminders() == 0 and queue_triage_overdue() == 0
        assert deliver_mail() == 0
        assert rows() == [] and mail.seen == []

    def test_manager_who_wants_no_mail_gets_none(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara = manager()
        own = make_key("manager", manager_id=mara)
        other = make_key(
            "manager", manager_id=manager(email="other@ehrenamt.example", competences=())
        )
        response = client.patch(
            f"/api/v1/managers/{mara}", headers=other, json={"notify_by_email": False}
        )
        assert response.status_code == 403
        response = client.patch(
            f"/api/v1/managers/{mara}", headers=own, json={"notify_by_email": False}
        )
        assert response.status_code == 200, response.text
        assert response.json()["notify_by_email"] is False
        made = offer(client, staff, marked_incident(), mara)
        set_now(NOW + timedelta(hours=37))
        assert queue_reminders() == 0
        answer(client, staff, made["id"], "withdraw", {"reason": "x"})
        assert rows(manager_id=mara) == []
        assert {r.kind for r in rows()} == {"no_candidate"}  # the coordinators still hear
        # a manager key still may not change anything but its own languages and this flag
        response = client.patch(
            f"/api/v1/managers/{mara}", headers=own, json={"max_open_assignments": 5}
        )
        assert response.status_code == 403

    def test_reminder_once_before_expiry_while_unanswered(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara = manager("Mara Beispiel", "mara@ehrenamt.example")
        jon = manager("Jon Probe", "jon@ehrenamt.example")
        incident_id = marked_incident()
        offer(client, staff, incident_id, mara)
        answered = offer(client, staff, marked_incident(), jon)
        answer(client, staff, answered["id"], "accept")
        deliver_mail()
        mail.messages.clear()

        set_now(NOW + timedelta(hours=35, minutes=59))  # expiry NOW+48h: 12 h before is 36 h
        assert queue_reminders() == 0
        set_now(NOW + timedelta(hours=36))
        assert queue_reminders() == 1  # Jon accepted: no reminder for him
        assert queue_reminders() == 0  # once
        set_now(NOW + timedelta(hours=40))
        assert queue_reminders() == 0
        assert deliver_mail() == 1
        (received,) = mail.messages
        assert received.rcpt_tos == ["mara@ehrenamt.example"]
        assert received.message["Subject"] == (
            f"Erinnerung: Anfrage {reference_of(incident_id)} verfällt Mi., 17.06.2026, 12:00 Uhr"
        )
        assert "Ihre Einsatzanfrage ist noch unbeantwortet und verfällt bald:" in received.text
        assert [r.kind for r in rows(kind="offer_reminder")] == ["offer_reminder"]

    def test_withdrawal_note(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara = manager("Mara Beispiel", "mara@ehrenamt.example")
        incident_id = marked_incident()
        made = offer(client, staff, incident_id, mara)
        deliver_mail()
        answer(client, staff, made["id"], "withdraw", {"reason": "Fehlzuordnung QX7NOTE"})
        deliver_mail()
        to_mara = sorted(
            mail.to("mara@ehrenamt.example"), key=lambda m: m.message["X-Kokoma-Notification"]
        )
        assert [m.message["Subject"] for m in to_mara] == [
            f"Neue Anfrage: {reference_of(incident_id)} in Alpha (Leitung)",
            f"Zurückgezogen: {reference_of(incident_id)} in Alpha",
        ]
        assert (
            "die Anfrage an Sie wurde zurückgezogen – Sie brauchen nicht mehr zu antworten:"
            in to_mara[1].text
        )


# --- to the coordinators --------------------------------------------------------------------


class TestCoordinatorMail:
    def test_offer_expired_with_nobody_next(self, client, mail) -> None:
        staff = make_key("coordinator")
        incident_id = marked_incident()
        offer(client, staff, incident_id, manager())
        deliver_mail()
        mail.messages.clear()
        set_now(NOW + timedelta(hours=48, seconds=1))
        assert expire_due_offers() == 1
        assert deliver_mail() == 2
        reference = reference_of(incident_id)
        assert sorted(m.rcpt_tos[0] for m in mail.messages) == sorted(COORDINATORS)
        for received in mail.messages:
            assert received.message["Subject"] == (
                f"Anfrage verfallen, niemand mehr frei: {reference} in Alpha"
            )
            assert received.text.startswith(
                "Guten Tag,\n\nein Vorgang braucht eine Koordinatorin oder einen Koordinator:\n"
            )
            assert (
                "Was ist passiert: eine Anfrage ist verfallen, und es gibt niemanden, der "
                "sie als Nächstes bekommen kann (Leitung)."
            ) in received.text
            assert f"Vorgang öffnen: {PUBLIC}/incidents/{incident_id}" in received.text
        assert len({m.message["Message-ID"] for m in mail.messages}) == 2

    def test_declined_with_no_candidate(self, client, mail) -> None:
        staff = make_key("coordinator")
        incident_id = marked_incident()
        made = offer(client, staff, incident_id, manager())
        answer(client, staff, made["id"], "decline", {"reason": "krank"})
        deliver_mail()
        subjects = [m.message["Subject"] for m in mail.messages if m.rcpt_tos[0] in COORDINATORS]
        assert subjects == [f"Niemand passt: {reference_of(incident_id)} in Alpha"] * 2

    def test_tandem_slot_stays_open(self, client, mail) -> None:
        staff = make_key("coordinator")
        lead, co = manager(), manager()
        incident_id = marked_incident(escalation_level=4)
        made_lead = offer(client, staff, incident_id, lead, role="lead")
        made_co = offer(client, staff, incident_id, co, role="co")
        answer(client, staff, made_lead["id"], "accept")
        answer(client, staff, made_co["id"], "decline", {"reason": "zu weit"})
        deliver_mail()
        reference = reference_of(incident_id)
        to_coordinators = [m for m in mail.messages if m.rcpt_tos[0] in COORDINATORS]
        assert [m.message["Subject"] for m in to_coordinators] == [
            f"Tandem unvollständig: {reference} in Alpha"
        ] * 2
        assert (
            "die Co-Mediation des Tandems bleibt offen: niemand passt für die zweite Person."
        ) in to_coordinators[0].text
        assert "  Eskalation:  Stufe 4 von 9 (nach Glasl)\n" in to_coordinators[0].text

    def test_batch_dispatch_tells_once_per_incident(self, client, mail) -> None:
        staff = make_key("coordinator")
        incident_id = marked_incident(required_competences=["youth_work"])
        for _ in range(2):
            response = client.post("/api/v1/dispatch/auto", headers=staff, json={})
            assert response.status_code == 200, response.text
            assert response.json()["unassigned"] == [
                {"incident_id": str(incident_id), "reason": "no_candidate"}
            ]
        assert deliver_mail() == 2  # one per coordinator, not one per run
        assert sorted(m.rcpt_tos[0] for m in mail.messages) == sorted(COORDINATORS)
        assert mail.messages[0].message["Subject"] == (
            f"Niemand passt: {reference_of(incident_id)} in Alpha"
        )
        response = client.post("/api/v1/dispatch/auto", headers=staff, json={"dry_run": True})
        assert response.status_code == 200
        assert deliver_mail() == 0

    def test_above_the_volunteer_level_a_coordinator_must_pick(self, client, mail) -> None:
        staff = make_key("coordinator")
        incident_id = marked_incident(escalation_level=7)
        made = offer(client, staff, incident_id, manager(), role="lead")
        answer(client, staff, made["id"], "decline", {"reason": "zu heikel"})
        response = client.post(
            "/api/v1/dispatch/auto", headers=staff, json={"incident_ids": [str(incident_id)]}
        )
        assert response.json()["unassigned"] == [
            {"incident_id": str(incident_id), "reason": "escalation_above_volunteer_level"}
        ]
        deliver_mail()
        reference = reference_of(incident_id)
        to_coordinators = [m for m in mail.messages if m.rcpt_tos[0] in COORDINATORS]
        # the refused refill, and the batch run (its own event: once per incident version)
        assert [m.message["Subject"] for m in to_coordinators] == [
            f"Bitte Person auswählen: {reference} (Stufe 7)"
        ] * 4
        lines = sorted(
            line
            for m in to_coordinators
            for line in m.text.splitlines()
            if line.startswith("Was ist passiert:")
        )
        assert (
            lines
            == [
                "Was ist passiert: die Eskalationsstufe liegt über der Stufe für Ehrenamtliche: "
                "bitte wählen Sie selbst eine Person aus (Leitung).",  # the refill knows the role
            ]
            * 2
            + [
                "Was ist passiert: die Eskalationsstufe liegt über der Stufe für Ehrenamtliche: "
                "bitte wählen Sie selbst eine Person aus.",  # the batch run names none
            ]
            * 2
        )

    def test_batch_dispatch_without_a_tandem_partner(self, client, mail) -> None:
        staff = make_key("coordinator")
        incident_id = marked_incident(escalation_level=4)
        manager()  # only one person fits: a lead without a co
        response = client.post("/api/v1/dispatch/auto", headers=staff, json={})
        assert response.json()["unassigned"] == [
            {"incident_id": str(incident_id), "reason": "no_tandem_partner"}
        ]
        deliver_mail()
        assert [m.message["Subject"] for m in mail.messages] == [
            f"Tandem unvollständig: {reference_of(incident_id)} in Alpha"
        ] * 2

    def test_triage_timer_fires_once_per_incident(self, client, mail) -> None:
        reported = make_incident(title=MARKERS["title"], description=MARKERS["description"])
        make_triaged_incident()  # triaged in time: never overdue
        set_now(NOW + timedelta(hours=47, minutes=59))
        assert queue_triage_overdue() == 0
        set_now(NOW + timedelta(hours=48))
        assert queue_triage_overdue() == 1
        assert queue_triage_overdue() == 0
        set_now(NOW + timedelta(hours=200))
        assert queue_triage_overdue() == 0
        assert deliver_mail() == 2
        assert sorted(m.rcpt_tos[0] for m in mail.messages) == sorted(COORDINATORS)
        for received in mail.messages:
            assert received.message["Subject"] == (
                f"Seit 48 Stunden nicht gesichtet: {reported.reference} in Alpha"
            )
            assert (
                "Was ist passiert: seit Mo., 15.06.2026, 12:00 Uhr gemeldet und nach 48 "
                "Stunden noch nicht gesichtet (Status „gemeldet“)."
            ) in received.text
        assert len(rows(kind="triage_overdue")) == 2

    def test_triage_timer_with_two_workers_at_once(self, mail) -> None:
        for _ in range(5):
            make_incident()
        set_now(NOW + timedelta(hours=49))
        results: list[int] = []
        barrier = threading.Barrier(2)

        def work() -> None:
            barrier.wait()
            results.append(queue_triage_overdue())

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(rows(kind="triage_overdue")) == 5 * len(COORDINATORS)

    def test_digest_bundles_the_events(self, client, mail, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "coordinator_digest_minutes", 30)
        staff = make_key("coordinator")
        first = marked_incident()
        second = marked_incident(district="delta")
        for incident_id, home in ((first, "alpha"), (second, "delta")):
            made = offer(client, staff, incident_id, manager(home_district=home))
            answer(client, staff, made["id"], "decline", {"reason": "nein"})
        assert deliver_mail() == 2  # the two offers (declined meanwhile: not sent)
        assert all(m.rcpt_tos[0] not in COORDINATORS for m in mail.messages)
        set_now(NOW + timedelta(minutes=29))
        assert collect_digests() == 0
        set_now(NOW + timedelta(minutes=30))
        assert collect_digests() == 2  # one per coordinator
        assert collect_digests() == 0
        assert deliver_mail() == 2
        digests = [m for m in mail.messages if m.rcpt_tos[0] in COORDINATORS]
        assert sorted(m.rcpt_tos[0] for m in digests) == sorted(COORDINATORS)
        text = digests[0].text
        assert digests[0].message["Subject"] == "kokoma-Übersicht: 2 Vorgänge brauchen Koordination"
        assert f"- {reference_of(first)} (Alpha, Rechtsextremismus, Stufe 3):" in text
        assert f"- {reference_of(second)} (Delta, Rechtsextremismus, Stufe 3):" in text
        events = rows(kind="no_candidate")
        assert len(events) == 4 and {e.status for e in events} == {"sent"}
        assert all(e.digest_id is not None for e in events)


# --- delivery: retries, failures, crashes, several workers ---------------------------------


class TestDelivery:
    def test_refused_twice_arrives_on_the_third_try_with_the_same_message_id(
        self, client, mail
    ) -> None:
        staff = make_key("coordinator")
        mara = manager(email="mara@ehrenamt.example")
        offer(client, staff, marked_incident(), mara)
        mail.answers = ["451 4.7.1 Greylisted, try again later"] * 2
        assert deliver_mail() == 1
        (row,) = rows()
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.last_error == "451 4.7.1 Greylisted, try again later"
        assert deliver_mail() == 0  # backing off
        set_now(row.next_attempt_at)
        assert deliver_mail() == 1
        set_now(rows()[0].next_attempt_at)
        assert deliver_mail() == 1
        (row,) = rows()
        assert (row.status, row.attempts) == ("sent", 3)
        assert len(mail.messages) == 1 and len(mail.seen) == 3
        assert {m.message["Message-ID"] for m in mail.seen} == {row.message_id}

    def test_an_offer_answered_before_its_mail_went_out_is_not_mailed(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara = manager(email="mara@ehrenamt.example")
        made = offer(client, staff, marked_incident(), mara)
        mail.answers = ["421 4.3.2 Service shutting down"]
        assert deliver_mail() == 1
        answer(client, make_key("manager", manager_id=mara), made["id"], "accept")
        set_now(rows()[0].next_attempt_at)
        assert deliver_mail() == 1
        (row,) = rows()
        assert (row.status, row.attempts) == ("failed", 1)
        assert row.last_error == "not sent: the offer is accepted meanwhile"
        assert mail.messages == [] and len(mail.seen) == 1

    def test_a_manager_mail_goes_to_the_address_they_have_when_it_is_sent(
        self, client, mail
    ) -> None:
        staff = make_key("coordinator")
        mara, jon = manager(email="mara@ehrenamt.example"), manager(email="jon@ehrenamt.example")
        offer(client, staff, marked_incident(), mara)
        offer(client, staff, marked_incident(), jon)
        response = client.patch(
            f"/api/v1/managers/{mara}", headers=staff, json={"email": "mara.neu@ehrenamt.example"}
        )
        assert response.status_code == 200, response.text
        response = client.patch(
            f"/api/v1/managers/{jon}",
            headers=make_key("manager", manager_id=jon),
            json={"notify_by_email": False},
        )
        assert response.status_code == 200, response.text
        assert deliver_mail() == 2
        assert [m.rcpt_tos for m in mail.messages] == [["mara.neu@ehrenamt.example"]]
        assert rows(manager_id=mara)[0].recipient == "mara.neu@ehrenamt.example"
        (row,) = rows(manager_id=jon)
        assert (row.status, row.last_error) == (
            "failed",
            "not sent: the manager turned e-mail off meanwhile",
        )

    def test_a_permanently_failing_address_ends_failed_and_is_listed(
        self, client, mail, monkeypatch
    ) -> None:
        monkeypatch.setattr(get_settings(), "mail_max_attempts", 3)
        staff = make_key("coordinator")
        admin = make_key("admin")
        mara = manager(email="gone@ehrenamt.example")
        offer(client, staff, marked_incident(), mara)
        mail.answers = ["550 5.1.1 No such user"] * 3
        for _ in range(3):
            assert deliver_mail() == 1
            if rows()[0].status == "pending":
                set_now(rows()[0].next_attempt_at)
        assert rows()[0].status == "failed"
        set_now(NOW + timedelta(days=30))
        assert deliver_mail() == 0
        response = client.get("/api/v1/notifications", headers=admin, params={"status": "failed"})
        assert response.status_code == 200
        (item,) = response.json()["items"]
        assert item["recipient"] == "gone@ehrenamt.example"
        assert (item["kind"], item["status"], item["attempts"]) == ("offer", "failed", 3)
        assert item["last_error"] == "550 5.1.1 No such user"
        assert item["manager_id"] == str(mara) and item["next_attempt_at"] is None

    def test_due_mail_is_a_worker_queue_in_the_metrics(self, client, mail) -> None:
        from app.core.metrics import queue_depths

        staff = make_key("coordinator")
        offer(client, staff, marked_incident(), manager())
        assert queue_depths()["mail"] == 1
        deliver_mail()
        assert queue_depths()["mail"] == 0

    def test_server_down_is_a_failed_attempt(self, client, mail, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "smtp_port", _free_port())
        staff = make_key("coordinator")
        offer(client, staff, marked_incident(), manager())
        assert deliver_mail() == 1
        (row,) = rows()
        assert row.status == "pending" and row.attempts == 1
        assert row.last_error is not None and "ConnectionRefusedError" in row.last_error

    def test_two_workers_send_each_mail_once(self, client, mail) -> None:
        staff = make_key("coordinator")
        for _ in range(6):
            offer(client, staff, marked_incident(), manager())
        barrier = threading.Barrier(2)

        def work() -> None:
            barrier.wait()
            while deliver_mail(limit=2):
                pass

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(mail.messages) == 6
        assert len({m.message["Message-ID"] for m in mail.messages}) == 6
        assert {r.status for r in rows()} == {"sent"}

    def test_a_crash_after_claiming_loses_nothing(self, client, mail) -> None:
        staff = make_key("coordinator")
        offer(client, staff, marked_incident(), manager())

        def crash(_claims: Any) -> None:
            raise SystemExit("worker died")

        with pytest.raises(SystemExit):
            deliver_mail(on_claimed=crash)
        assert deliver_mail() == 0  # leased
        set_now(NOW + timedelta(seconds=lease_seconds(get_settings()) + 1))
        assert deliver_mail() == 1
        assert len(mail.messages) == 1 and rows()[0].status == "sent"

    def test_one_round_of_the_real_worker_delivers_an_api_offer(
        self, client, inbox, monkeypatch
    ) -> None:
        """``kokoma worker --once`` (one round of every job), as its own process."""
        seed_reference()
        staff = make_key("coordinator")
        env = {
            **os.environ,
            "KOKOMA_SMTP_HOST": "127.0.0.1",
            "KOKOMA_SMTP_PORT": str(inbox.port),
            "KOKOMA_MAIL_FROM": SENDER,
            "KOKOMA_LOG_LEVEL": "WARNING",
        }
        for name, value in {
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,
            "mail_from": SENDER,
        }.items():
            monkeypatch.setattr(get_settings(), name, value)
        made = offer(client, staff, marked_incident(), manager(email="mara@ehrenamt.example"))
        finished = subprocess.run(
            [sys.executable, "-m", "app.cli", "worker", "--once"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert finished.returncode == 0, finished.stderr.decode()[-2000:]
        (received,) = inbox.messages
        assert received.rcpt_tos == ["mara@ehrenamt.example"]
        assert f"/assignments/{made['id']}" not in received.text  # no KOKOMA_PUBLIC_URL: no link
        assert "Bitte antworten Sie in der kokoma-Anwendung." in received.text
        assert rows()[0].status == "sent"

    def test_worker_killed_mid_send_loses_nothing_and_retries_with_the_same_id(
        self, client, inbox, monkeypatch, tmp_path
    ) -> None:
        """A real ``kokoma worker`` process is killed (SIGKILL) while the SMTP server holds its
        DATA; the mail is sent again, with the same Message-ID, once the lease ran out."""
        seed_reference()
        settings = get_settings()
        port = inbox.port
        env = {
            **os.environ,
            "KOKOMA_SMTP_HOST": "127.0.0.1",
            "KOKOMA_SMTP_PORT": str(port),
            "KOKOMA_MAIL_FROM": SENDER,
            "KOKOMA_PUBLIC_URL": PUBLIC,
            "KOKOMA_LOG_LEVEL": "WARNING",
            "KOKOMA_WORKERS": "1",
        }
        for name, value in {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "mail_from": SENDER,
            "public_url": PUBLIC,
        }.items():
            monkeypatch.setattr(settings, name, value)
        staff = make_key("coordinator")
        offer(client, staff, marked_incident(), manager(email="mara@ehrenamt.example"))
        inbox.hold = threading.Event()
        log = tmp_path / "worker.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                reached = inbox.holding.wait(60)
                assert reached, f"the worker never reached DATA: {log.read_text()[-2000:]}"
                process.send_signal(signal.SIGKILL)
                process.wait(10)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
        assert process.returncode == -signal.SIGKILL
        held = inbox.seen[0].message["Message-ID"]
        inbox.hold.set()
        inbox.hold = None
        (row,) = rows()
        assert row.status == "pending" and row.attempts == 0 and row.locked_until is not None
        assert deliver_mail() == 0  # the dead worker's lease still holds
        set_now(row.locked_until + timedelta(seconds=1))
        assert deliver_mail() == 1
        (received,) = inbox.messages
        assert received.message["Message-ID"] == held == row.message_id
        assert received.rcpt_tos == ["mara@ehrenamt.example"]
        assert rows()[0].status == "sent"


# --- the record -------------------------------------------------------------------------------


class TestNotificationList:
    def test_filters_pagination_and_roles(self, client, mail) -> None:
        staff = make_key("coordinator")
        mara, jon = manager(email="mara@ehrenamt.example"), manager(email="jon@ehrenamt.example")
        first, second = marked_incident(), marked_incident()
        offer(client, staff, first, mara)
        set_now(NOW + timedelta(minutes=1))
        offer(client, staff, second, jon)
        deliver_mail()
        response = client.get("/api/v1/notifications", headers=staff, params={"limit": 1})
        assert response.status_code == 200
        page = response.json()
        assert [i["recipient"] for i in page["items"]] == ["jon@ehrenamt.example"]  # newest first
        response = client.get(
            "/api/v1/notifications",
            headers=staff,
            params={"limit": 1, "cursor": page["next_cursor"]},
        )
        assert [i["recipient"] for i in response.json()["items"]] == ["mara@ehrenamt.example"]
        assert response.json()["next_cursor"] is None
        by_manager = client.get(
            "/api/v1/notifications", headers=staff, params={"manager_id": str(mara)}
        ).json()["items"]
        assert [i["incident_id"] for i in by_manager] == [str(first)]
        by_incident = client.get(
            "/api/v1/notifications", headers=staff, params={"incident_id": str(second)}
        ).json()["items"]
        assert [i["manager_id"] for i in by_incident] == [str(jon)]
        assert (
            client.get("/api/v1/notifications", headers=staff, params={"status": "pending"}).json()[
                "items"
            ]
            == []
        )
        assert (
            client.get(
                "/api/v1/notifications", headers=staff, params={"status": "bogus"}
            ).status_code
            == 422
        )
        for role in ("viewer", "partner", "manager"):
            kwargs: dict[str, Any] = {}
            if role == "manager":
                kwargs["manager_id"] = mara
            if role == "partner":
                from tests.factories import make_organisation

                kwargs["organisation_id"] = make_organisation()
            response = client.get("/api/v1/notifications", headers=make_key(role, **kwargs))
            assert response.status_code == 403
            assert response.headers["content-type"].startswith("application/problem+json")

    def test_erasure_removes_the_address(self, client, mail) -> None:
        staff = make_key("coordinator")
        admin = make_key("admin")
        mara = manager(email="mara@ehrenamt.example")
        made = offer(client, staff, marked_incident(), mara)
        mail.answers = ["452 4.2.2 <mara@ehrenamt.example>: mailbox full"]
        deliver_mail()
        set_now(rows()[0].next_attempt_at)
        deliver_mail()  # sent on the second try; the first error quoted the address
        answer(client, staff, made["id"], "withdraw", None)  # queued, not yet sent
        response = client.post(
            f"/api/v1/managers/{mara}/status", headers=staff, json={"status": "retired"}
        )
        assert response.status_code == 200, response.text
        response = client.post(f"/api/v1/managers/{mara}/erase", headers=admin)
        assert response.status_code == 200, response.text
        items = client.get(
            "/api/v1/notifications", headers=admin, params={"manager_id": str(mara)}
        ).json()["items"]
        assert {i["recipient"] for i in items} == {None}
        assert sorted((i["kind"], i["status"], i["last_error"]) for i in items) == [
            ("offer", "sent", "452 4.2.2 <[erased]>: mailbox full"),
            ("offer_withdrawn", "failed", "recipient erased"),
        ]
        mail.messages.clear()
        deliver_mail()  # the coordinators' "nobody fits" after the withdrawal; not to Mara
        assert sorted(m.rcpt_tos[0] for m in mail.messages) == sorted(COORDINATORS)
        with session_scope(write=False) as session:
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.recipient == "mara@ehrenamt.example")
                )
                == 0
            )


class TestManagerField:
    def test_default_true_and_import_export(self, client, mail) -> None:
        staff = make_key("coordinator")
        csv_body = (
            "email,display_name,home_district,notify_by_email\n"
            "a@ehrenamt.example,Anna,alpha,false\n"
            "b@ehrenamt.example,Ben,alpha,\n"
        )
        response = client.post(
            "/api/v1/imports/managers",
            headers={**staff, "content-type": "text/csv"},
            content=csv_body,
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 2
        listed = client.get("/api/v1/managers", headers=staff).json()["items"]
        flags = {m["email"]: m["notify_by_email"] for m in listed}
        assert flags == {"a@ehrenamt.example": False, "b@ehrenamt.example": True}
        response = client.post(
            "/api/v1/imports/managers",
            headers={**staff, "content-type": "text/csv"},
            content="email,display_name,home_district,notify_by_email\n"
            "b@ehrenamt.example,Ben,alpha,nein\n",
        )
        assert response.json()["updated"] == 1
        response = client.post(
            "/api/v1/imports/managers",
            headers={**staff, "content-type": "text/csv"},
            content="email,display_name,home_district,notify_by_email\n"
            "c@ehrenamt.example,Cem,alpha,vielleicht\n",
        )
        assert response.json()["errors"][0]["field"] == "notify_by_email"
        listed = client.get("/api/v1/managers", headers=staff).json()["items"]
        assert {m["email"]: m["notify_by_email"] for m in listed} == {
            "a@ehrenamt.example": False,
            "b@ehrenamt.example": False,
        }


def test_rendering_never_uses_fields_outside_the_payload() -> None:
    """The templates see only the payload: a payload with reporter or description keys is not
    rendered with them (they are not in any template)."""
    settings = get_settings().model_copy(update={"public_url": PUBLIC, "mail_from": SENDER})
    payload = {
        "incident_id": str(uuid.uuid4()),
        "reference": "KOK-2026-00042",
        "district": "alpha",
        "district_name": "Alpha",
        "category": "racism_discrimination",
        "escalation_level": 5,
        "assignment_id": str(uuid.uuid4()),
        "role": "co",
        "expires_at": "2026-01-10T09:30:00+00:00",
        "description": MARKERS["description"],
        "reporter": MARKERS["name"],
    }
    mail = notifications.render("offer", payload, settings, "Mara")
    assert mail.subject == "Neue Anfrage: KOK-2026-00042 in Alpha (Co-Mediation im Tandem)"
    assert "Sa., 10.01.2026, 10:30 Uhr" in mail.text  # winter time: UTC+1
    for text in (mail.text, mail.html):
        assert "QX7" not in text


def test_settings_refuse_a_bad_coordinator_address_and_need_host_and_sender() -> None:
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="KOKOMA_COORDINATOR_EMAILS"):
        Settings(coordinator_emails="koordination@stadt.example, kein-mail")
    settings = Settings(coordinator_emails=" A@Stadt.example ,b@stadt.example,a@stadt.example,")
    assert settings.coordinator_addresses == ["a@stadt.example", "b@stadt.example"]
    assert not Settings(smtp_host="mail.example").mail_enabled
    assert not Settings(mail_from=SENDER).mail_enabled
    assert Settings(smtp_host="mail.example", mail_from=SENDER).mail_enabled
