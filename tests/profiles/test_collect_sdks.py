"""The unmodified Segment and RudderStack Python SDKs against a real cdphub server process."""

from __future__ import annotations

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from crm.models import Company
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    # Processing is left to the test: the server only collects.
    with running_server(
        database_url=current_database_url(), env={"CDPHUB_INGEST_PROCESSING": "off"}
    ) as url:
        yield url


def send_everything(client, user: str) -> None:
    client.identify(
        user, {"email": f"{user}@example.com", "name": "Anna"}, anonymous_id="a-" + user
    )
    client.track(user, "Order Completed", {"revenue": 42.5})
    client.page(user, "Shop", "Jackets", {"url": "https://shop.example.com/jackets"})
    client.screen(user, "App", "Basket", {"items": 2})
    client.group(user, "company-1", {"name": "Acme"})
    client.alias("a-" + user, user)
    client.flush()


def assert_delivered(source, user: str) -> None:
    assert not RejectedMessage.objects.exists()
    assert PendingMessage.objects.filter(source=source).count() == 6
    assert pending_process() == 6
    events = Event.objects.filter(source=source)
    assert sorted(events.values_list("type", flat=True)) == sorted(
        ["identify", "track", "page", "screen", "group", "alias"]
    )
    profile = Identity.objects.get(kind="user_id", value=user).profile
    assert {e.profile_id for e in events} == {profile.pk}
    assert profile.traits["email"] == f"{user}@example.com"
    assert events.get(type="track").properties == {"revenue": 42.5}
    assert events.get(type="page").name == "Jackets"
    # The category the SDK sends beside the name is kept, as analytics.js keeps it.
    assert events.get(type="page").properties == {
        "url": "https://shop.example.com/jackets",
        "category": "Shop",
    }
    assert events.get(type="screen").properties == {"items": 2, "category": "App"}
    # The sender's clock readings are kept beside the corrected time.
    assert all(e.original_timestamp and e.sent_at for e in events)
    # The group call made the account and linked the person to it.
    account = Company.objects.get(group_id="company-1")
    assert account.name == "Acme"
    assert list(account.members.values_list("profile_id", flat=True)) == [profile.pk]


def test_segment_sdk_delivers_every_call(server):
    source, key = source_create(name="Segment SDK")
    errors = []
    client = SegmentClient(
        write_key=key, host=server, sync_mode=True, on_error=lambda e, b: errors.append(e)
    )
    send_everything(client, "seg-user")
    assert errors == []
    assert_delivered(source, "seg-user")


def test_rudder_sdk_delivers_every_call_gzipped(server):
    source, key = source_create(name="Rudder SDK")
    errors = []
    client = RudderClient(
        write_key=key, host=server, sync_mode=True, on_error=lambda e, b: errors.append(e)
    )
    assert client.gzip is True  # its default
    send_everything(client, "rudder-user")
    assert errors == []
    assert_delivered(source, "rudder-user")


def test_sdk_with_wrong_write_key_gets_an_error(server):
    source_create(name="Real")
    errors = []
    client = SegmentClient(
        write_key="wk_wrong",
        host=server,
        sync_mode=True,
        max_retries=0,
        on_error=lambda e, b: errors.append(e),
    )
    with pytest.raises(Exception, match="401|write key"):
        client.track("u", "E")
    assert not PendingMessage.objects.exists()
