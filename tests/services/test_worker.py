"""``kokoma worker``: outbox fan-out and signed, retried, at-least-once webhook delivery.

A real HTTP receiver runs on 127.0.0.1 in a thread; signatures are checked with an independent
implementation of the Standard Webhooks scheme (not the ``standardwebhooks`` package).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.core import clock as clock_module
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.security import SYSTEM_PRINCIPAL
from app.models.outbox import OutboxEvent
from app.models.webhook import WebhookAttempt, WebhookDelivery
from app.services import webhooks
from app.services.incidents import IncidentService
from app.services.webhooks import (
    backoff_seconds,
    deliver_due,
    fan_out_pending,
    lease_seconds,
    message_id,
)
from app.services.worker import JOBS, PeriodicJob, run_forever, run_once
from tests.factories import make_incident, make_key, make_organisation, seed_reference


class Receiver:
    """A tiny webhook receiver: records every request, answers with scripted status codes."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.requests.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def setup(fixed_clock: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    seed_reference()
    settings = get_settings()
    monkeypatch.setattr(settings, "webhooks_allow_private", True)
    monkeypatch.setattr(settings, "webhook_backoff_seconds", 30.0)
    return make_key("admin")


def subscribe(client: Any, admin: dict[str, str], url: str, **overrides: Any) -> dict[str, Any]:
    body = {"url": url, "events": ["incident.created"], **overrides}
    response = client.post("/api/v1/webhooks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks, written from the spec: HMAC-SHA256 over ``id.timestamp.body`` with the
    base64-decoded secret (after ``whsec_``), sent as space-separated ``v1,<base64>``."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(candidate, f"v1,{expected}")
        for candidate in headers["webhook-signature"].split(" ")
    )


def advance(seconds: float) -> None:
    current = clock_module.get_clock()
    clock_module.set_clock(
        clock_module.Clock(tz=current.tz, fixed_now=current.now() + timedelta(seconds=seconds))
    )


def deliveries() -> list[WebhookDelivery]:
    with session_scope(write=False) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def attempts() -> list[WebhookAttempt]:
    with session_scope(write=False) as session:
        return list(session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.attempt)))


class TestDelivery:
    def test_signed_per_standard_webhooks(self, client, setup, receiver) -> None:
        subscription = subscribe(client, setup, receiver.url)
        incident = make_incident(external_id="x-1")
        handled = run_once()
        assert (handled["webhooks.fan_out"], handled["webhooks.deliver"]) == (1, 1)
        [(headers, body)] = receiver.requests
        assert verify_signature(subscription["secret"], headers, body)
        assert not verify_signature(subscription["secret"], headers, body + b" ")
        assert headers["webhook-id"] == message_id(_event_id(), uuid.UUID(subscription["id"]))
        assert headers["webhook-timestamp"] == str(int(clock_module.get_clock().now().timestamp()))
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert payload["type"] == "incident.created"
        assert payload["data"]["incident"]["id"] == str(incident.id)
        assert payload["data"]["incident"]["reporter"] is None
        assert b"erika" not in body.lower()  # no reporter data in webhooks
        listed = client.get(
            f"/api/v1/webhooks/{subscription['id']}/deliveries", headers=setup
        ).json()["items"]
        assert [
            (a["attempt"], a["succeeded"], a["status_code"], a["next_retry_at"]) for a in listed
        ] == [(1, True, 200, None)]
        assert listed[0]["webhook_id"] == headers["webhook-id"]
        assert listed[0]["event_type"] == "incident.created"
        assert [d.status for d in deliveries()] == ["delivered"]

    def test_receiver_failing_twice_gets_it_on_the_third_try(self, client, setup, receiver) -> None:
        receiver.statuses = [500, 503]
        subscribe(client, setup, receiver.url)
        make_incident()
        fan_out_pending()
        assert deliver_due() == 1
        [first] = attempts()
        assert (first.succeeded, first.status_code, first.error) == (False, 500, "HTTP 500")
        delay = (first.next_retry_at - first.finished_at).total_seconds()
        assert 15 <= delay <= 30  # base 30 s, equal jitter
        assert deliver_due() == 0  # not due yet
        advance(31)
        assert deliver_due() == 1
        second = attempts()[1]
        assert second.status_code == 503
        assert 30 <= (second.next_retry_at - second.finished_at).total_seconds() <= 60
        advance(61)
        assert deliver_due() == 1
        assert [(a.attempt, a.succeeded) for a in attempts()] == [(1, False), (2, False), (3, True)]
        assert len(set(receiver.ids())) == 1 and len(receiver.ids()) == 3
        [delivery] = deliveries()
        assert (delivery.status, delivery.attempts) == ("delivered", 3)
        advance(3600)
        assert deliver_due() == 0

    def test_gives_up_after_max_attempts(self, client, setup, receiver, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "webhook_max_attempts", 2)
        receiver.statuses = [500] * 5
        subscribe(client, setup, receiver.url)
        make_incident()
        fan_out_pending()
        deliver_due()
        advance(120)
        deliver_due()
        advance(3600)
        assert deliver_due() == 0
        assert [d.status for d in deliveries()] == ["failed"]
        assert [a.next_retry_at is None for a in attempts()] == [False, True]
        assert len(receiver.requests) == 2

    def test_worker_killed_after_claiming_loses_nothing(self, client, setup, receiver) -> None:
        subscription = subscribe(client, setup, receiver.url)
        make_incident()
        fan_out_pending()

        def crash(_claims: Any) -> None:
            raise RuntimeError("worker killed")

        with pytest.raises(RuntimeError):
            deliver_due(on_claimed=crash)
        assert receiver.requests == [] and attempts() == []
        assert deliver_due() == 0  # the dead worker's lease still holds
        advance(lease_seconds(get_settings()) + 1)
        assert deliver_due() == 1
        assert receiver.ids() == [message_id(_event_id(), uuid.UUID(subscription["id"]))]
        assert [d.status for d in deliveries()] == ["delivered"]

    def test_worker_killed_after_sending_redelivers_with_the_same_id(
        self, client, setup, receiver, monkeypatch
    ) -> None:
        subscribe(client, setup, receiver.url)
        make_incident()
        fan_out_pending()
        real_record = webhooks.record
        calls = {"n": 0}

        def dying_record(*args: Any, **kwargs: Any) -> bool:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("worker killed before recording")
            return real_record(*args, **kwargs)

        monkeypatch.setattr(webhooks, "record", dying_record)
        with pytest.raises(RuntimeError):
            deliver_due()
        assert len(receiver.requests) == 1 and [d.status for d in deliveries()] == ["pending"]
        advance(lease_seconds(get_settings()) + 1)
        assert deliver_due() == 1
        ids = receiver.ids()
        assert len(ids) == 2 and ids[0] == ids[1]  # at least once, same webhook-id
        assert [d.status for d in deliveries()] == ["delivered"]

    def test_two_workers_deliver_each_event_once(self, client, setup, receiver) -> None:
        subscribe(client, setup, receiver.url)
        for n in range(24):
            make_incident(external_id=f"p-{n}")
        fan_out_pending()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if deliver_due(limit=3) == 0 and _pending() == 0:
                        return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        ids = receiver.ids()
        assert len(ids) == 24 and len(set(ids)) == 24
        assert {d.status for d in deliveries()} == {"delivered"}
        assert len(attempts()) == 24

    def test_timeout_is_a_failed_attempt(self, client, setup, monkeypatch) -> None:
        slow = Receiver(delay=1.5)
        slow.thread.start()
        try:
            monkeypatch.setattr(get_settings(), "webhook_timeout_seconds", 0.3)
            subscribe(client, setup, slow.url)
            make_incident()
            fan_out_pending()
            deliver_due()
        finally:
            slow.server.shutdown()
            slow.server.server_close()
        [attempt] = attempts()
        assert attempt.error.startswith("timeout") and attempt.status_code is None

    def test_private_target_refused_at_delivery(self, client, setup, receiver, monkeypatch) -> None:
        subscribe(client, setup, receiver.url)
        make_incident()
        fan_out_pending()
        monkeypatch.setattr(get_settings(), "webhooks_allow_private", False)
        deliver_due()
        assert receiver.requests == []
        [attempt] = attempts()
        assert attempt.error.startswith("target refused")

    def test_unresolvable_target_fails_the_attempt(self, client, setup, monkeypatch) -> None:
        monkeypatch.setattr(get_settings(), "webhooks_allow_private", False)
        subscribe(client, setup, "https://no-such-host.invalid/hook")
        make_incident()
        fan_out_pending()
        deliver_due()
        [attempt] = attempts()
        assert attempt.error == "target refused: host cannot be resolved"
        assert [d.status for d in deliveries()] == ["pending"]  # retried later

    def test_connects_to_the_checked_address(self, client, setup, monkeypatch) -> None:
        """DNS rebinding: the name is resolved once, checked, and the request goes to exactly that
        address — Host and the TLS server name stay the subscription's host."""
        lookups: list[str] = []

        def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
            lookups.append(host)
            return [
                (
                    webhooks.socket.AF_INET,
                    webhooks.socket.SOCK_STREAM,
                    6,
                    "",
                    ("93.184.216.34", 443),
                )
            ]

        monkeypatch.setattr(webhooks.socket, "getaddrinfo", resolve)
        monkeypatch.setattr(get_settings(), "webhooks_allow_private", False)
        subscribe(client, setup, "https://hooks.example:8443/kokoma?x=1")
        make_incident()
        fan_out_pending()
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(204)

        deliver_due(client=httpx.Client(transport=httpx.MockTransport(handler)))
        [request] = seen
        assert lookups == ["hooks.example", "hooks.example"]  # on creation, before the delivery
        # an IP literal: the connection cannot be redirected by a later DNS answer
        assert str(request.url) == "https://93.184.216.34:8443/kokoma?x=1"
        assert request.headers["host"] == "hooks.example:8443"
        assert request.extensions["sni_hostname"] == "hooks.example"
        assert [a.succeeded for a in attempts()] == [True]

    def test_redirects_are_not_followed(self, client, setup) -> None:
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return httpx.Response(302, headers={"location": "http://169.254.169.254/"})

        subscribe(client, setup, "http://127.0.0.1:9/hook")
        make_incident()
        fan_out_pending()
        deliver_due(client=httpx.Client(transport=httpx.MockTransport(handler)))
        assert seen == ["http://127.0.0.1:9/hook"]
        assert attempts()[0].error == "HTTP 302"


class TestFanOut:
    def test_event_types_and_organisation_scope(self, client, setup) -> None:
        mine, other = make_organisation("Mine"), make_organisation("Other")
        everything = subscribe(client, setup, "http://127.0.0.1:9/a")
        scoped = subscribe(
            client,
            setup,
            "http://127.0.0.1:9/b",
            organisation_id=str(mine),
            events=["incident.created", "incident.status_changed"],
        )
        status_only = subscribe(
            client, setup, "http://127.0.0.1:9/c", events=["incident.status_changed"]
        )
        inactive = subscribe(client, setup, "http://127.0.0.1:9/d")
        client.patch(f"/api/v1/webhooks/{inactive['id']}", json={"active": False}, headers=setup)
        ours = make_incident(organisation_id=str(mine))
        make_incident(organisation_id=str(other))
        make_incident()
        with session_scope() as session:
            IncidentService(session).set_status(ours.id, "triaged", None, SYSTEM_PRINCIPAL)
        assert fan_out_pending() == 4
        got: dict[str, list[str]] = {}
        for delivery in deliveries():
            got.setdefault(str(delivery.subscription_id), []).append(delivery.event_type)
        assert sorted(got[everything["id"]]) == ["incident.created"] * 3
        assert sorted(got[scoped["id"]]) == ["incident.created", "incident.status_changed"]
        assert got[status_only["id"]] == ["incident.status_changed"]
        assert inactive["id"] not in got

    def test_a_new_subscription_gets_no_backlog(self, client, setup) -> None:
        early = subscribe(client, setup, "http://127.0.0.1:9/early")
        before = make_incident()
        advance(60)
        late = subscribe(client, setup, "http://127.0.0.1:9/late")
        after = make_incident()
        assert fan_out_pending() == 2  # both events fanned out (and marked), once
        got: dict[str, list[str]] = {}
        with session_scope(write=False) as session:
            for delivery in deliveries():
                payload = session.get(OutboxEvent, delivery.event_id).payload
                got.setdefault(str(delivery.subscription_id), []).append(
                    payload["incident"]["reference"]
                )
        assert sorted(got[early["id"]]) == sorted([before.reference, after.reference])
        assert got[late["id"]] == [after.reference]

    def test_repeated_fan_out_duplicates_nothing(self, client, setup) -> None:
        subscribe(client, setup, "http://127.0.0.1:9/a")
        make_incident()
        fan_out_pending()
        with session_scope() as session:  # as if the worker died before marking the events
            session.execute(update(OutboxEvent).values(fanned_out_at=None))
        assert fan_out_pending() == 1
        assert len(deliveries()) == 1
        assert fan_out_pending() == 0


class TestBackoff:
    def test_exponential_capped_with_jitter(self, setup, monkeypatch) -> None:
        import random

        settings = get_settings()
        monkeypatch.setattr(settings, "webhook_backoff_max_seconds", 600.0)
        rng = random.Random(7)
        for attempt, full in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (9, 600)]:
            delays = [backoff_seconds(attempt, settings, rng) for _ in range(50)]
            assert all(full / 2 <= d <= full for d in delays)
            assert max(delays) - min(delays) > 0  # jittered


class TestWorkerLoop:
    def test_runs_jobs_until_stopped_and_survives_a_failing_job(self) -> None:
        stop = threading.Event()
        calls = {"ok": 0, "bad": 0}

        def ok() -> int:
            calls["ok"] += 1
            if calls["ok"] >= 3:
                stop.set()
            return 0

        def bad() -> int:
            calls["bad"] += 1
            raise RuntimeError("boom")

        jobs = [PeriodicJob("bad", bad, 0.01), PeriodicJob("ok", ok, 0.01)]
        thread = threading.Thread(target=run_forever, kwargs={"jobs": jobs, "stop": stop})
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert calls["ok"] == 3 and calls["bad"] >= 2

    def test_busy_job_runs_again_at_once(self) -> None:
        stop = threading.Event()
        backlog = [5]

        def drain() -> int:
            if backlog[0] == 0:
                stop.set()
                return 0
            backlog[0] -= 1
            return 1

        started = time.monotonic()
        run_forever([PeriodicJob("drain", drain, interval_seconds=5.0)], stop)
        assert backlog == [0] and time.monotonic() - started < 2.0


def _event_id() -> uuid.UUID:
    with session_scope(write=False) as session:
        return session.scalars(select(OutboxEvent.id)).one()


def _pending() -> int:
    with session_scope(write=False) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == "pending")
            )
            or 0
        )


class TestOutboxPruning:
    def test_old_finished_events_go_with_their_deliveries(self, client, setup) -> None:
        subscribe(client, setup, "http://127.0.0.1:9/hook")
        done, retrying = make_incident(title="Done"), make_incident(title="Retrying")

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200 if b"Done" in request.content else 500)

        assert fan_out_pending() == 2
        deliver_due(client=httpx.Client(transport=httpx.MockTransport(handler)))
        late_fan_out = make_incident(title="Not fanned out")  # stays pending in the outbox
        advance(31 * 86400)  # past KOKOMA_OUTBOX_RETENTION_DAYS (30)
        recent = make_incident(title="Recent")
        assert webhooks.prune_outbox() == 1
        assert webhooks.prune_outbox() == 0
        with session_scope(write=False) as session:
            left = {e.payload["incident"]["id"] for e in session.scalars(select(OutboxEvent))}
        assert left == {str(retrying.id), str(late_fan_out.id), str(recent.id)}
        assert str(done.id) not in left
        assert [d.status for d in deliveries()] == ["pending"]  # the delivered one went with it
        assert [a.succeeded for a in attempts()] == [False]
        assert any(job.name == "outbox.prune" for job in JOBS)
