"""A DMP audience (visitors) synced to destinations, against real local receivers: its visitors
loaded once, then only who enters and exits (from the audience's membership history, written by
the refresh that saw it), a visitor purged at the end of its retention leaving the receiver, a
known person's visitors following the person's consent, the minimum size held, and what a link
refuses. Meta's fake takes the devices by their advertising ids."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from audiences.models import Audience, AudienceMembershipChange, AudienceSync, Visitor
from audiences.services import audience_refresh, visitor_data_purge
from audiences.syncs import audience_sync_link
from cdphub.delivery import deliveries_send
from cdphub.models import Delivery
from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.services import consent_record
from profiles.destinations.audience import audience_syncs_queue
from profiles.destinations.services import destination_create
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Destination, Identity
from profiles.services import source_create
from tests.audiences.test_meta_destination import AUDIENCE, TOKEN, FakeMeta
from tests.cdphub.test_delivery import ScriptedReceiver
from tests.factories import VisitorFactory

pytestmark = pytest.mark.django_db

PURPOSE = "advertising"
GERMANS = {"visitor": "country", "op": "eq", "value": "DE"}


@pytest.fixture
def engine(delivery_engine):
    delivery_engine.CDPHUB_MIN_AUDIENCE_SIZE = 2
    return delivery_engine


@pytest.fixture
def germans(engine):
    return Audience.objects.create(name="Visitors in Germany", rule=GERMANS)


@pytest.fixture
def receiver():
    with ScriptedReceiver() as receiver:
        yield receiver


def device_id() -> str:
    return str(uuid.uuid4())


def webhook(url: str, **options) -> Destination:
    return destination_create(
        name=options.pop("name", "DMP hook"),
        kind="webhook",
        config={"url": url},
        purpose_code=PURPOSE,
        receiving=Destination.Receiving.AUDIENCE,
        **options,
    )[0]


def linked(audience, destination, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        audience_sync_link(audience=audience, destination=destination)


def refreshed(audience, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        audience_refresh(audience=audience)


def sent(receiver) -> list[tuple[str, str]]:
    """(event, the visitor's key) of every item the receiver got, in order."""
    return [
        (item["event"], item.get("anonymousId") or item["context"]["device"]["advertisingId"])
        for batch in receiver.batches
        for item in batch
    ]


def test_loaded_once_then_only_who_enters_and_exits(
    germans, receiver, django_capture_on_commit_callbacks
):
    phone = device_id()
    VisitorFactory(key="c-1", country="DE")
    VisitorFactory(key="c-2", country="DE")
    VisitorFactory(key=phone, key_kind=Visitor.KeyKind.DEVICE, country="DE")
    VisitorFactory(key="c-9", country="NL")
    refreshed(germans, django_capture_on_commit_callbacks)
    destination = webhook(receiver.url)
    linked(germans, destination, django_capture_on_commit_callbacks)
    deliveries_send()
    assert sorted(sent(receiver)) == sorted(
        [("Audience Entered", "c-1"), ("Audience Entered", "c-2"), ("Audience Entered", phone)]
    )
    item = receiver.batches[0][0]
    assert item["properties"]["audience_key"] == "visitors_in_germany"
    assert item["properties"]["visitors_in_germany"] is True
    assert "traits" not in item["context"]  # a visitor is named by its own key only

    Visitor.objects.filter(key="c-2").update(country="NL")
    VisitorFactory(key="c-3", country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    deliveries_send()
    assert sent(receiver)[3:] == [("Audience Exited", "c-2"), ("Audience Entered", "c-3")]
    exited = receiver.batches[-1][0]
    assert exited["properties"]["visitors_in_germany"] is False

    refreshed(germans, django_capture_on_commit_callbacks)  # nothing changed
    assert audience_syncs_queue() == 0  # nothing left behind, nothing queued twice
    assert Delivery.objects.filter(destination=destination).count() == 5


def test_a_visitor_purged_at_the_end_of_its_retention_leaves_the_receiver(
    germans, receiver, django_capture_on_commit_callbacks
):
    for key in ("c-1", "c-2", "c-3"):
        VisitorFactory(key=key, country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    linked(germans, webhook(receiver.url), django_capture_on_commit_callbacks)
    deliveries_send()
    Visitor.objects.filter(key="c-2").update(expires_at=timezone.now() - timedelta(days=1))
    Visitor.objects.filter(key="c-3").update(last_seen_at=timezone.now() - timedelta(days=200))

    visitor_data_purge(unseen_since=timezone.now() - timedelta(days=90))
    deliveries_send()

    assert sorted(sent(receiver)[3:]) == [("Audience Exited", "c-2"), ("Audience Exited", "c-3")]
    germans.refresh_from_db()
    assert germans.size == 1
    assert not Visitor.objects.filter(key__in=["c-2", "c-3"]).exists()


def test_a_known_persons_visitors_follow_their_consent(
    germans, receiver, django_capture_on_commit_callbacks
):
    """Ann's cookie is her visitor whether or not it is linked (links need consent): it is
    not sent before she grants the purpose, added when she does, removed when she withdraws.
    A visitor of no one known is sent as the DMP's files are."""
    source = source_create(name="Web")[0]
    message = {"type": "identify", "userId": "ann", "anonymousId": "c-ann", "messageId": "m-1"}
    assert not messages_collect(source_id=source.pk, messages=[message]).rejected
    pending_process()
    ann = Identity.objects.get(kind="user_id", value="ann").profile
    VisitorFactory(key="c-ann", country="DE")
    VisitorFactory(key="c-anonymous", country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    destination = webhook(receiver.url)
    linked(germans, destination, django_capture_on_commit_callbacks)
    deliveries_send()
    assert sent(receiver) == [("Audience Entered", "c-anonymous")]

    with django_capture_on_commit_callbacks(execute=True):
        consent_record(profile=ann, purpose=PURPOSE, status="granted", method="web_form")
    deliveries_send()
    assert sent(receiver)[1:] == [("Audience Entered", "c-ann")]
    assert Visitor.objects.get(key="c-ann").profile_id == ann.pk  # linked under consent

    with django_capture_on_commit_callbacks(execute=True):
        consent_record(profile=ann, purpose=PURPOSE, status="withdrawn", method="web_form")
    deliveries_send()
    assert sent(receiver)[2:] == [("Audience Exited", "c-ann")]

    # Her cookie moving out and back in while she has no consent: the exit goes, the entry
    # waits for a grant (skipped at send time, as every delivery to someone without it).
    Visitor.objects.filter(key="c-ann").update(country="NL")
    refreshed(germans, django_capture_on_commit_callbacks)
    Visitor.objects.filter(key="c-ann").update(country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    deliveries_send()
    assert sent(receiver)[3:] == [("Audience Exited", "c-ann")]
    entry = Delivery.objects.filter(destination=destination).latest("id")
    assert entry.status == Delivery.Status.SKIPPED and entry.profile_id == ann.pk


def test_under_the_minimum_size_nothing_is_loaded_and_the_destination_says_why(
    germans, receiver, django_capture_on_commit_callbacks
):
    VisitorFactory(key="c-1", country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    destination = webhook(receiver.url)
    linked(germans, destination, django_capture_on_commit_callbacks)
    destination.refresh_from_db()
    assert destination.sync_loaded_at is None
    assert "the audience has 1 members, fewer than the minimum" in destination.sync_waiting_reason
    assert not Delivery.objects.filter(destination=destination).exists()

    VisitorFactory(key="c-2", country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    deliveries_send()
    assert sorted(sent(receiver)) == [("Audience Entered", "c-1"), ("Audience Entered", "c-2")]


def test_meta_takes_the_devices_by_advertising_id_and_leaves_cookies_out(
    germans, django_capture_on_commit_callbacks
):
    phones = [device_id().upper(), device_id()]
    for key in phones:
        VisitorFactory(key=key, key_kind=Visitor.KeyKind.DEVICE, country="DE")
    VisitorFactory(key="c-1", country="DE")  # a cookie: nothing Meta can match
    refreshed(germans, django_capture_on_commit_callbacks)
    fake = FakeMeta()
    try:
        destination = destination_create(
            name="Meta devices",
            kind="meta_custom_audience",
            config={"audience_id": AUDIENCE, "access_token": TOKEN, "api_url": fake.url},
            purpose_code=PURPOSE,
            receiving=Destination.Receiving.AUDIENCE,
        )[0]
        linked(germans, destination, django_capture_on_commit_callbacks)
        deliveries_send()
        assert fake.members == {(key.lower(),) for key in phones}

        Visitor.objects.filter(key=phones[0]).update(country="NL")
        refreshed(germans, django_capture_on_commit_callbacks)
        deliveries_send()
        assert fake.members == {(phones[1],)}
        assert [method for method, _ in fake.requests] == ["POST", "DELETE"]
    finally:
        fake.close()


def test_a_link_is_refused_unless_the_destination_receives_an_audience(
    germans, receiver, django_capture_on_commit_callbacks
):
    events = destination_create(
        name="Events", kind="webhook", config={"url": receiver.url}, purpose_code=PURPOSE
    )[0]
    with pytest.raises(ValidationError, match="does not receive a DMP audience"):
        audience_sync_link(audience=germans, destination=events)
    destination = webhook(receiver.url)
    linked(germans, destination, django_capture_on_commit_callbacks)
    other = Audience.objects.create(name="Others", rule=GERMANS)
    with pytest.raises(ValidationError, match="already syncs an audience"):
        audience_sync_link(audience=other, destination=destination)
    with pytest.raises(ProtectedError):
        germans.delete()
    with pytest.raises(ValidationError) as refused:
        destination_create(
            name="Meta events",
            kind="meta_custom_audience",
            config={"audience_id": AUDIENCE, "access_token": TOKEN, "api_url": receiver.url},
            purpose_code=PURPOSE,
        )
    assert "or receive a DMP audience" in str(refused.value)


def test_the_admin_links_an_audience_and_the_api_lists_it(
    admin_client, api_client_with_scopes, germans, receiver, django_capture_on_commit_callbacks
):
    for key in ("c-1", "c-2"):
        VisitorFactory(key=key, country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    response = admin_client.post(
        reverse("admin:profiles_destination_add"),
        {
            "name": "DMP hook",
            "kind": "webhook",
            "receiving": "audience",
            "config": f'{{"url": "{receiver.url}"}}',
            "purpose_code": PURPOSE,
            "batch_size": "100",
            "batch_interval_seconds": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    destination = Destination.objects.get(name="DMP hook")
    listing = admin_client.get(reverse("admin:profiles_destination_changelist")).content.decode()
    assert "none linked yet" in listing

    page = admin_client.get(reverse("admin:audiences_audience_change", args=[germans.pk]))
    assert f'<option value="{destination.pk}">DMP hook</option>' in page.content.decode()
    form = {
        "name": germans.name,
        "description": "",
        "kind": "rule",
        "rule": '{"visitor": "country", "op": "eq", "value": "DE"}',
        "reach_percent": "5",
        "syncs-TOTAL_FORMS": "1",
        "syncs-INITIAL_FORMS": "0",
        "syncs-MIN_NUM_FORMS": "0",
        "syncs-MAX_NUM_FORMS": "1000",
        "syncs-0-destination": str(destination.pk),
        "syncs-0-audience": str(germans.pk),
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:audiences_audience_change", args=[germans.pk]), form
        )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert AudienceSync.objects.get(destination=destination).audience == germans
    assert Delivery.objects.filter(destination=destination).count() == 2  # the initial load
    listing = admin_client.get(reverse("admin:profiles_destination_changelist")).content.decode()
    assert "Audience sync of the DMP audience visitors_in_germany" in listing

    client = api_client_with_scopes("audiences:read", "audiences:write")
    answer = client.get("/api/audiences/syncs/", {"audience": germans.pk})
    assert answer.status_code == 200
    [row] = answer.json()["results"]
    assert row["destination"] == destination.pk and row["sync_loaded_at"]
    again = client.post(
        "/api/audiences/syncs/", {"audience": germans.pk, "destination": destination.pk}
    )
    assert again.status_code == 400 and "destination" in again.json()["errors"]


def test_an_erasure_takes_the_persons_visitors_out_of_the_history_and_the_platform(
    germans, django_capture_on_commit_callbacks
):
    """The history keeps visitors' keys past the visitors: an erasure finds the person's
    (by their cookie and device ids) and deletes them; Meta is told to remove their device."""
    source = source_create(name="App")[0]
    phone = device_id()
    message = {
        "type": "identify",
        "userId": "ann",
        "anonymousId": "c-ann",
        "context": {"device": {"id": phone}},
        "messageId": "m-1",
    }
    assert not messages_collect(source_id=source.pk, messages=[message]).rejected
    pending_process()
    assert Identity.objects.filter(kind="device_id", value=phone).exists()
    VisitorFactory(key="c-ann", country="DE")
    VisitorFactory(key="c-other", country="DE")
    refreshed(germans, django_capture_on_commit_callbacks)
    assert AudienceMembershipChange.objects.filter(key="c-ann", kind="entered").exists()
    fake = FakeMeta()
    try:
        destination_create(
            name="Meta devices",
            kind="meta_custom_audience",
            config={"audience_id": AUDIENCE, "access_token": TOKEN, "api_url": fake.url},
            purpose_code=PURPOSE,
            receiving=Destination.Receiving.AUDIENCE,
        )
        request = dsar_create(kind="erasure", user_id="ann")
        dsar_verify(request=request)
        dsar_process(request=request)
        deliveries_send()
        assert ("DELETE", {"schema": ["MADID"], "data": [[phone]]}) in [
            (method, body["payload"]) for method, body in fake.requests
        ]
    finally:
        fake.close()
    assert not AudienceMembershipChange.objects.filter(key="c-ann").exists()
    assert AudienceMembershipChange.objects.filter(key="c-other").exists()
