"""Audience syncs end to end against a real local receiver: a segment's members loaded once,
then only who enters and exits, consent followed both ways, the minimum audience size held,
and what a sync refuses. Segments change through the real processing path (identify calls
processed, the segment refreshed for the profiles they touched)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.urls import reverse

from cdphub.delivery import deliveries_send, delivery_counts
from cdphub.models import Delivery
from consent.services import consent_record
from profiles.destinations.audience import audience_syncs_queue
from profiles.destinations.services import destination_create
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Destination, Identity
from profiles.segments.membership import segment_refresh
from profiles.services import source_create
from tests.cdphub.test_delivery import ScriptedReceiver
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db

PURPOSE = "advertising"
GOLD = {"trait": "plan", "op": "eq", "value": "gold"}


@pytest.fixture
def engine(delivery_engine):
    delivery_engine.CDPHUB_MIN_AUDIENCE_SIZE = 2
    return delivery_engine


@pytest.fixture
def source(engine):
    return source_create(name="Web shop")[0]


@pytest.fixture
def gold(source):
    return SegmentFactory(name="Gold customers", rule=GOLD)


def identify(source, user: str, plan: str, n: int = 0) -> None:
    message = {
        "type": "identify",
        "userId": user,
        "traits": {"plan": plan, "email": f"{user}@example.com"},
        "messageId": f"{user}-{plan}-{n}",
    }
    assert not messages_collect(source_id=source.pk, messages=[message]).rejected
    pending_process()


def consent(user: str, status: str = "granted") -> None:
    profile = Identity.objects.get(kind="user_id", value=user).profile
    consent_record(profile=profile, purpose=PURPOSE, status=status, method="web_form")


def sync(url: str, segment, **options):
    return destination_create(
        name=options.pop("name", "Ad audience"),
        kind="webhook",
        config={"url": url},
        purpose_code=PURPOSE,
        segment=segment,
        **options,
    )[0]


def sent(receiver) -> list[tuple[str, str]]:
    return [(item["event"], item["userId"]) for batch in receiver.batches for item in batch]


def test_loaded_once_then_only_who_enters_and_exits(
    source, gold, django_capture_on_commit_callbacks
):
    for user in ("u-1", "u-2", "u-3"):
        identify(source, user, "gold")
        consent(user)
    identify(source, "u-4", "gold")  # a member without the purpose: not sent
    identify(source, "u-5", "silver")
    consent("u-5")
    segment_refresh(segment=gold)

    with ScriptedReceiver() as receiver:
        with django_capture_on_commit_callbacks(execute=True):
            destination = sync(receiver.url, gold)
        deliveries_send()
        [load] = receiver.batches
        assert sorted(sent(receiver)) == [
            ("Audience Entered", "u-1"),
            ("Audience Entered", "u-2"),
            ("Audience Entered", "u-3"),
        ]
        item = load[0]
        assert item["properties"]["audience_key"] == "gold_customers"
        assert item["properties"]["gold_customers"] is True
        assert item["context"]["traits"]["email"] == "u-1@example.com"
        assert item["messageId"].startswith(f"audience-{gold.pk}-load-")

        gold.name = "Best customers"  # renamed: the receiver's audience keeps its key
        gold.save()
        with django_capture_on_commit_callbacks(execute=True):
            identify(source, "u-5", "gold", 1)
            identify(source, "u-1", "silver", 1)
        deliveries_send()

    # The changes alone, in the order they happened: never the whole list again.
    assert sent(receiver)[3:] == [("Audience Entered", "u-5"), ("Audience Exited", "u-1")]
    [_, changes] = receiver.batches
    assert changes[1]["properties"]["gold_customers"] is False
    assert {item["properties"]["audience_key"] for item in changes} == {"gold_customers"}
    assert delivery_counts(destination)["delivered"] == 5
    assert audience_syncs_queue() == 0  # nothing left behind, nothing queued twice


def test_consent_is_followed_both_ways(source, gold, django_capture_on_commit_callbacks):
    for user in ("u-1", "u-2"):
        identify(source, user, "gold")
        consent(user)
    identify(source, "u-3", "gold")
    segment_refresh(segment=gold)
    with ScriptedReceiver() as receiver:
        with django_capture_on_commit_callbacks(execute=True):
            sync(receiver.url, gold)
        deliveries_send()
        assert sorted(sent(receiver)) == [("Audience Entered", "u-1"), ("Audience Entered", "u-2")]

        # Withdrawn: removed at once, though the person no longer consents to anything sent.
        consent("u-2", "withdrawn")
        consent("u-2", "withdrawn")  # said twice: removed once
        # Granted by a member who was not sent: added now.
        consent("u-3")
        deliveries_send()
        assert sent(receiver)[2:] == [("Audience Exited", "u-2"), ("Audience Entered", "u-3")]

        consent("u-2")
        deliveries_send()
    assert sent(receiver)[4:] == [("Audience Entered", "u-2")]


def test_an_entry_waiting_when_consent_is_withdrawn_is_not_sent_but_the_exit_is(
    source, gold, django_capture_on_commit_callbacks
):
    for user in ("u-1", "u-2"):
        identify(source, user, "gold")
        consent(user)
    segment_refresh(segment=gold)
    with ScriptedReceiver() as receiver:
        with django_capture_on_commit_callbacks(execute=True):
            destination = sync(receiver.url, gold)
        consent("u-1", "withdrawn")  # before the load is sent
        deliveries_send()
    assert sent(receiver) == [("Audience Entered", "u-2"), ("Audience Exited", "u-1")]
    assert Delivery.objects.get(destination=destination, status="skipped").profile_id == (
        Identity.objects.get(value="u-1").profile_id
    )


def test_under_the_minimum_size_nothing_is_sent_and_the_destination_says_why(
    source, gold, engine, django_capture_on_commit_callbacks
):
    engine.CDPHUB_MIN_AUDIENCE_SIZE = 3
    for user in ("u-1", "u-2"):
        identify(source, user, "gold")
        consent(user)
    segment_refresh(segment=gold)
    with django_capture_on_commit_callbacks(execute=True):
        destination = sync("http://127.0.0.1:9/hook", gold)
    destination.refresh_from_db()
    assert not Delivery.objects.exists()
    assert destination.sync_loaded_at is None
    assert "has 2 members, fewer than the minimum audience size (3)" in (
        destination.sync_waiting_reason
    )

    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-3", "gold")  # the third member: loaded (u-3 has no consent yet)
    consent("u-3")  # a loaded sync hears the grant of a member
    destination.refresh_from_db()
    assert destination.sync_waiting_reason == ""
    assert destination.sync_loaded_at is not None
    queued = Delivery.objects.filter(destination=destination).order_by("id")
    assert [(d.payload["event"], d.payload["userId"]) for d in queued] == [
        ("Audience Entered", "u-1"),
        ("Audience Entered", "u-2"),
        ("Audience Entered", "u-3"),
    ]

    # Under the minimum again: an exit still goes, an entry waits until it is large enough.
    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-1", "silver", 1)
    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-1", "gold", 2)  # back: three members, the entry goes
    assert [(d.payload["event"], d.payload["userId"]) for d in queued.all()][3:] == [
        ("Audience Exited", "u-1"),
        ("Audience Entered", "u-1"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-2", "silver", 1)
        identify(source, "u-4", "gold")  # in the same refreshes: two members, then three
    assert [(d.payload["event"], d.payload["userId"]) for d in queued.all()][5:] == [
        ("Audience Exited", "u-2"),
        ("Audience Entered", "u-4"),
    ]
    engine.CDPHUB_MIN_AUDIENCE_SIZE = 5
    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-5", "gold")  # four members: the entry waits
    assert queued.all().count() == 7
    destination.refresh_from_db()
    assert "has 4 members, fewer than the minimum audience size (5)" in (
        destination.sync_waiting_reason
    )
    with django_capture_on_commit_callbacks(execute=True):
        identify(source, "u-6", "gold")  # five: both entries go, in order
    assert [(d.payload["event"], d.payload["userId"]) for d in queued.all()][7:] == [
        ("Audience Entered", "u-5"),
        ("Audience Entered", "u-6"),
    ]


def test_a_sync_receives_no_events_and_refuses_event_filters(source, gold):
    identify(source, "u-1", "gold")
    consent("u-1")
    with pytest.raises(ValidationError) as refused:
        sync("http://127.0.0.1:9/hook", gold, event_names=["Order Completed"], source=source)
    assert set(refused.value.message_dict) == {"event_names", "source"}
    assert "receives its segment's members, not events" in str(refused.value)

    destination = sync("http://127.0.0.1:9/hook", gold)
    identify(source, "u-1", "gold", 1)
    assert not Delivery.objects.filter(destination=destination, payload__type="identify").exists()
    with pytest.raises(ProtectedError):
        gold.delete()


def test_the_admin_creates_a_sync_and_says_what_it_receives(
    admin_client, source, gold, django_capture_on_commit_callbacks
):
    for user in ("u-1", "u-2"):
        identify(source, user, "gold")
        consent(user)
    segment_refresh(segment=gold)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:profiles_destination_add"),
            {
                "name": "Ads",
                "kind": "webhook",
                "segment": gold.pk,
                "config": '{"url": "http://127.0.0.1:9/hook"}',
                "purpose_code": PURPOSE,
                "batch_size": "100",
                "batch_interval_seconds": "0",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    destination = Destination.objects.get(name="Ads")
    assert Delivery.objects.filter(destination=destination).count() == 2  # the initial load

    listing = admin_client.get(reverse("admin:profiles_destination_changelist")).content.decode()
    assert "Audience sync of Gold customers" in listing
    page = admin_client.get(reverse("admin:profiles_destination_change", args=[destination.pk]))
    assert 'name="segment"' in page.content.decode()  # shown, not changeable
    assert "disabled" in page.content.decode().split('name="segment"')[1][:200]


def test_the_api_creates_a_sync_and_refuses_to_move_it_to_another_segment(
    api_client_with_scopes, gold
):
    client = api_client_with_scopes("profiles:read", "profiles:write")
    body = {
        "name": "Ads",
        "kind": "webhook",
        "config": {"url": "http://127.0.0.1:9/hook"},
        "purpose_code": PURPOSE,
        "segment": gold.pk,
    }
    created = client.post("/api/destinations/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["segment"] == gold.pk
    assert "sync_waiting_reason" in created.json()

    other = SegmentFactory(rule=GOLD)
    moved = client.patch(
        f"/api/destinations/{created.json()['id']}/", {"segment": other.pk}, format="json"
    )
    assert moved.status_code == 400
    assert "cannot be changed" in str(moved.json())
    refused = client.post(
        "/api/destinations/", {**body, "name": "Ads 2", "event_types": ["track"]}, format="json"
    )
    assert refused.status_code == 400
    assert "not events" in str(refused.json()["errors"]["event_types"])
