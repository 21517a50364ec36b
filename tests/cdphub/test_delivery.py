"""The delivery engine against a real local HTTP receiver: events collected and processed the
way a source sends them reach a webhook destination signed, in order, once; the receiver's
faults (down, slow, 5xx, 429, 4xx) are retried, dead-lettered or pause the destination; a
sender killed mid-batch loses nothing."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cdphub.delivery import (
    backoff_seconds,
    deliveries_retry,
    deliveries_send,
    delivery_counts,
)
from cdphub.models import AuditEntry, Delivery, DeliveryAttempt
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.services import consent_record
from profiles.destinations.services import (
    destination_create,
    destination_delete,
    destination_resume,
)
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Destination, Identity
from profiles.services import source_create
from tests.server import BASE_DIR, current_database_url, free_port

pytestmark = pytest.mark.django_db

PURPOSE = "analytics"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    hold: bool = False  # keep the request open until ``release()``


class ScriptedReceiver:
    """A webhook receiver on 127.0.0.1 in a thread: records every request (with the time it
    arrived) and answers the next scripted ``Answer``, then ``default``."""

    def __init__(self, *script: Answer, default: Answer | None = None) -> None:
        self.script = list(script)
        self.default = default or Answer()
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "at": time.monotonic(),
                    }
                )
                answer = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.arrived.set()
                if answer.hold:
                    receiver.released.wait(30)
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the sender is gone (timed out or killed)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def batches(self) -> list[list[dict]]:
        return [json.loads(request["body"])["batch"] for request in self.requests]

    @property
    def keys(self) -> list[str]:
        return [request["headers"]["Idempotency-Key"] for request in self.requests]


def signature_valid(request: dict, secret: str, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the HMAC over "<t>.<body>", compare in constant time,
    refuse an old timestamp."""
    parts = dict(item.split("=", 1) for item in request["headers"]["Cdphub-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - timestamp) < tolerance


@pytest.fixture
def engine(delivery_engine):
    return delivery_engine


@pytest.fixture
def source(engine):
    return source_create(name="Web shop")[0]


def webhook(url: str, **options) -> tuple[Destination, str]:
    return destination_create(
        name=options.pop("name", "Partner webhook"),
        kind="webhook",
        config={"url": url, "headers": options.pop("headers", {})},
        purpose_code=PURPOSE,
        **options,
    )


def collect(source, *events: str, user: str = "u-1", consent: bool = True) -> None:
    """Events as a source sends them, processed; the person consents to the purpose."""
    messages = [
        {"type": "track", "userId": user, "event": name, "messageId": f"{user}-{n}-{name}"}
        for n, name in enumerate(events)
    ]
    result = messages_collect(source_id=source.pk, messages=messages)
    assert not result.rejected, result.rejected
    pending_process()
    if consent:
        consent_grant(user)


def consent_grant(user: str, status: str = "granted") -> None:
    profile = Identity.objects.get(kind="user_id", value=user).profile
    consent_record(profile=profile, purpose=PURPOSE, status=status, method="web_form")


def test_events_reach_the_webhook_signed_in_order_with_the_resolved_profile(source):
    with ScriptedReceiver() as receiver:
        destination, secret = webhook(receiver.url, headers={"Authorization": "Bearer t0k"})
        collect(source, "Product Viewed", "Cart Viewed", "Order Completed")

        assert deliveries_send() == 1

    [request] = receiver.requests
    assert signature_valid(request, secret)
    assert not signature_valid(request, "whsec_wrong")
    assert request["headers"]["Authorization"] == "Bearer t0k"
    assert request["headers"]["Content-Type"] == "application/json"
    profile = Identity.objects.get(kind="user_id", value="u-1").profile_id
    [batch] = receiver.batches
    assert [item["event"] for item in batch] == ["Product Viewed", "Cart Viewed", "Order Completed"]
    assert {item["profileId"] for item in batch} == {profile}
    assert batch[0]["messageId"] == "u-1-0-Product Viewed"
    assert delivery_counts(destination)["delivered"] == 3
    attempt = DeliveryAttempt.objects.get(destination=destination)
    assert (attempt.outcome, attempt.status_code, attempt.items) == ("delivered", 200, 3)


def test_batches_respect_the_batch_size_and_order(source):
    with ScriptedReceiver() as receiver:
        webhook(receiver.url, batch_size=2)
        collect(source, "A", "B", "C", "D", "E")

        assert deliveries_send() == 3

    assert [[i["event"] for i in batch] for batch in receiver.batches] == [
        ["A", "B"],
        ["C", "D"],
        ["E"],
    ]
    assert len(set(receiver.keys)) == 3


def test_a_batch_waits_for_its_interval_to_fill(source):
    with ScriptedReceiver() as receiver:
        webhook(receiver.url, batch_size=10, batch_interval_seconds=60)
        collect(source, "A", "B")

        assert deliveries_send() == 0
        assert not receiver.requests


def test_receiver_down_is_retried_later_with_the_error_recorded(source, engine):
    engine.CDPHUB_DELIVERY_BACKOFF_SECONDS = 30
    destination, _ = webhook(f"http://127.0.0.1:{free_port()}/hook")
    collect(source, "A")

    assert deliveries_send() == 1

    delivery = Delivery.objects.get(destination=destination)
    assert delivery.status == "pending"
    assert delivery.attempts == 1
    assert "could not connect to 127.0.0.1" in delivery.last_error
    assert delivery.next_attempt_at > delivery.updated_at  # waits for its backoff
    assert delivery_counts(destination)["retrying"] == 1
    attempt = DeliveryAttempt.objects.get(destination=destination)
    assert attempt.outcome == "transient"
    assert attempt.status_code is None


def test_a_slow_receiver_times_out_and_the_resend_carries_the_same_key(source, engine):
    engine.CDPHUB_DELIVERY_TIMEOUT_SECONDS = 1
    with ScriptedReceiver(Answer(delay=2.5)) as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A")

        assert deliveries_send() == 2

    attempts = list(DeliveryAttempt.objects.filter(destination=destination).order_by("id"))
    assert [a.outcome for a in attempts] == ["transient", "delivered"]
    assert "did not answer within 1 seconds" in attempts[0].error
    assert receiver.keys[0] == receiver.keys[1]
    assert Delivery.objects.get(destination=destination).status == "delivered"


def test_500_then_success_is_delivered_once(source):
    with ScriptedReceiver(Answer(status=500), Answer(status=503)) as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A", "B")

        deliveries_send()

    assert len(receiver.requests) == 3
    assert len(set(receiver.keys)) == 1  # one batch, resent
    outcomes = DeliveryAttempt.objects.filter(destination=destination).order_by("id")
    assert [(a.outcome, a.status_code) for a in outcomes] == [
        ("transient", 500),
        ("transient", 503),
        ("delivered", 200),
    ]
    assert set(Delivery.objects.values_list("status", "attempts")) == {("delivered", 3)}
    assert Destination.objects.get(pk=destination.pk).consecutive_failures == 0


def test_429_waits_at_least_the_retry_after(source):
    with ScriptedReceiver(Answer(status=429, headers={"Retry-After": "1"})) as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A")

        assert deliveries_send() == 1  # the 429; the retry is not due yet
        delivery = Delivery.objects.get(destination=destination)
        assert delivery.status == "pending"
        assert (delivery.next_attempt_at - delivery.updated_at).total_seconds() >= 0.99

        deadline = time.monotonic() + 10
        while not deliveries_send() and time.monotonic() < deadline:
            time.sleep(0.1)

    assert len(receiver.requests) == 2
    assert receiver.requests[1]["at"] - receiver.requests[0]["at"] >= 1.0
    assert Delivery.objects.get(destination=destination).status == "delivered"


def test_a_4xx_is_a_dead_letter_with_the_response_and_retried_by_hand(source, superuser):
    refused = Answer(status=400, body=b'{"error": "unknown field userId"}')
    with ScriptedReceiver(refused) as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A", "B")

        deliveries_send()
        assert len(receiver.requests) == 1  # not retried by itself
        dead = Delivery.objects.filter(destination=destination, status="dead")
        assert dead.count() == 2
        assert dead.first().response_body == '{"error": "unknown field userId"}'
        assert dead.first().last_status_code == 400
        assert "answered 400 (refused)" in dead.first().last_error
        assert delivery_counts(destination)["dead"] == 2

        # When the receiver is fixed and the dead letters are retried
        assert deliveries_retry(deliveries=Delivery.objects.all(), actor=superuser) == 2
        deliveries_send()

    assert len(receiver.requests) == 2
    assert [i["event"] for i in receiver.batches[1]] == ["A", "B"]
    assert receiver.keys[0] != receiver.keys[1]  # a new batch: the first was refused
    assert delivery_counts(destination)["delivered"] == 2
    entry = AuditEntry.objects.get(action="delivery.retry")
    assert (entry.actor, entry.object_id, entry.note) == (
        superuser,
        str(destination.pk),
        "2 dead letters queued again",
    )


def test_a_destination_failing_again_and_again_is_paused_with_the_reason(source, engine):
    engine.CDPHUB_DELIVERY_PAUSE_AFTER_FAILURES = 3
    with ScriptedReceiver(default=Answer(status=502)) as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A")

        deliveries_send()

        assert len(receiver.requests) == 3
        destination.refresh_from_db()
        assert destination.status == "paused"
        assert destination.paused_reason.startswith(
            "paused automatically after 3 failed deliveries in a row; the last: "
        )
        assert "answered 502" in destination.paused_reason
        assert AuditEntry.objects.get(action="destination.pause").actor_label == "system"
        assert deliveries_send() == 0  # paused: nothing is sent
        collect(source, "B")  # events keep waiting for it

        receiver.default = Answer(status=200)
        destination_resume(destination=destination)
        deliveries_send()

    assert [i["event"] for batch in receiver.batches[3:] for i in batch] == ["A", "B"]
    assert delivery_counts(destination)["delivered"] == 2


def test_consent_withdrawn_while_a_delivery_waits_is_not_sent(source):
    with ScriptedReceiver() as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A", user="u-1")
        collect(source, "B", user="u-2")
        consent_grant("u-1", status="withdrawn")

        deliveries_send()

    assert [[i["event"] for i in batch] for batch in receiver.batches] == [["B"]]
    counts = delivery_counts(destination)
    assert (counts["skipped"], counts["delivered"], counts["dead"]) == (1, 1, 0)
    skipped = Delivery.objects.get(status="skipped")
    assert "no consent for analytics" in skipped.last_error


def test_nothing_is_sent_without_consent_and_nothing_when_the_person_is_erased(source):
    with ScriptedReceiver() as receiver:
        webhook(receiver.url)
        collect(source, "A", user="never-asked", consent=False)
        collect(source, "B", user="erased")
        request = dsar_create(kind="erasure", user_id="erased")
        dsar_verify(request=request)
        dsar_process(request=request)

        deliveries_send()

    # Neither event: only the erasure's deletion (tests/profiles/test_destination_erasure.py).
    assert [[item["type"] for item in batch] for batch in receiver.batches] == [["delete"]]
    assert not Delivery.objects.filter(payload__userId="erased").exists()


def test_a_destination_deleted_with_deliveries_pending_sends_nothing(source, superuser):
    with ScriptedReceiver() as receiver:
        destination, _ = webhook(receiver.url)
        collect(source, "A", "B")
        assert Delivery.objects.count() == 2

        destination_delete(destination=destination, actor=superuser)

        assert deliveries_send() == 0
    assert receiver.requests == []
    assert not Delivery.objects.exists()


def test_a_non_http_port_is_a_transient_failure(source):
    # A server that speaks another protocol (an SSH greeting) and hangs up.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    done = threading.Event()

    def greet_and_close():
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                connection_, _ = listener.accept()
                with connection_:
                    connection_.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    greeter = threading.Thread(target=greet_and_close, daemon=True)
    greeter.start()
    destination, _ = webhook(f"http://127.0.0.1:{port}/")
    collect(source, "A")

    deliveries_send()
    done.set()
    greeter.join(timeout=10)
    listener.close()

    attempt = DeliveryAttempt.objects.filter(destination=destination).first()
    assert attempt.outcome == "transient"
    assert attempt.error
    assert Delivery.objects.get().status == "pending"


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after(settings):
    settings.CDPHUB_DELIVERY_BACKOFF_SECONDS = 10
    settings.CDPHUB_DELIVERY_BACKOFF_MAX_SECONDS = 300
    first = [backoff_seconds(1) for _ in range(50)]
    assert all(5 <= d <= 10 for d in first) and len(set(first)) > 1
    assert all(20 <= backoff_seconds(3) <= 40 for _ in range(50))
    assert all(150 <= backoff_seconds(20) <= 300 for _ in range(50))
    assert backoff_seconds(1, retry_after=120) == 120


SENDER = (
    "import django; django.setup(); from cdphub.delivery import deliveries_send; deliveries_send()"
)


@pytest.mark.django_db(transaction=True)
def test_a_sender_killed_mid_batch_loses_nothing_and_resends_with_the_same_key(source):
    with ScriptedReceiver(Answer(hold=True)) as receiver:
        destination, secret = webhook(receiver.url)
        collect(source, "A", "B", "C")
        # Given a sender process in the middle of a batch (the receiver holds the request)
        env = {
            **os.environ,
            "DATABASE_URL": current_database_url(),
            "DJANGO_SETTINGS_MODULE": "cdphub.settings",
            "CDPHUB_OUTBOUND_ALLOWLIST": "127.0.0.1",
            "CDPHUB_DELIVERY": "off",
        }
        sender = subprocess.Popen([sys.executable, "-c", SENDER], cwd=BASE_DIR, env=env)  # noqa: S603
        try:
            assert receiver.arrived.wait(60)
        finally:
            # When it is killed
            sender.send_signal(signal.SIGKILL)
            sender.wait(timeout=30)
        assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}

        # Then the next sender sends the same batch again, with the same key
        deadline = time.monotonic() + 30
        while not deliveries_send() and time.monotonic() < deadline:
            time.sleep(0.2)  # until PostgreSQL notices the dead connection and rolls back

    assert len(receiver.requests) == 2
    assert receiver.keys[0] == receiver.keys[1]
    assert [[i["messageId"] for i in b] for b in receiver.batches] == [
        ["u-1-0-A", "u-1-1-B", "u-1-2-C"]
    ] * 2
    assert all(signature_valid(request, secret) for request in receiver.requests)
    assert delivery_counts(destination)["delivered"] == 3


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_a_background_thread_delivers(source, engine):
    engine.CDPHUB_INGEST_PROCESSING = "background"
    engine.CDPHUB_DELIVERY = "background"
    with ScriptedReceiver() as receiver:
        webhook(receiver.url)
        consent_user = "bg-user"
        messages_collect(
            source_id=source.pk,
            messages=[{"type": "identify", "userId": consent_user, "traits": {"plan": "pro"}}],
        )
        deadline = time.monotonic() + 20
        while not Identity.objects.filter(value=consent_user).exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        consent_grant(consent_user)
        messages_collect(
            source_id=source.pk,
            messages=[{"type": "track", "userId": consent_user, "event": "Signed Up"}],
        )
        while not any(i.get("event") == "Signed Up" for b in receiver.batches for i in b):
            assert time.monotonic() < deadline, receiver.requests
            time.sleep(0.1)


def test_celery_mode_queues_the_send_task_by_name_once_per_interval(settings, monkeypatch):
    from celery import current_app

    from cdphub import delivery
    from cdphub.background import Throttle

    settings.CDPHUB_DELIVERY = "celery"
    monkeypatch.setattr(delivery, "_task_throttle", Throttle())
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, *a, **k: sent.append(name))
    delivery.deliveries_schedule()
    delivery.deliveries_schedule()
    assert sent == [delivery.SEND_TASK]
    # The name is the task's (a worker finds cdphub.tasks by autodiscovery; beat uses it too).
    from cdphub.tasks import send_deliveries_task

    assert send_deliveries_task.name == delivery.SEND_TASK
    assert settings.CELERY_BEAT_SCHEDULE["send-deliveries"]["task"] == delivery.SEND_TASK
