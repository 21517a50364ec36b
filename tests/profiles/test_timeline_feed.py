"""The profile's timeline as an activity feed: icons per kind of event, readable properties,
grouping by day or by session, masked for roles without personal data."""

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cdphub.pii import mask_json, mask_properties
from profiles.selectors import timeline_feed
from tests.factories import EventFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.get_current_timezone())


@pytest.fixture
def profile():
    return ProfileFactory()


@pytest.fixture
def source():
    return SourceFactory(name="Web shop")


@pytest.fixture
def event(source):
    def make(profile, minutes_before_noon, **fields):
        moment = NOON - timedelta(minutes=minutes_before_noon)
        return EventFactory(profile=profile, source=source, timestamp=moment, **fields)

    return make


def newest_first(profile):
    return profile.events.select_related("source").order_by("-timestamp", "-id")


def test_each_kind_of_event_has_its_icon_and_a_title_a_person_reads(profile, event):
    event(profile, 5, type="track", name="Order Completed")
    event(profile, 4, type="track", name="Newsletter Signed Up")
    event(profile, 3, type="page", name="")
    event(profile, 2, type="identify", name="")
    event(profile, 1, type="screen", name="Checkout")

    (day,) = timeline_feed(newest_first(profile), group_by="day", pii=True)

    shown = [(entry["icon"], entry["title"]) for entry in day.entries]
    assert shown == [
        ("screen", "Checkout"),
        ("identify", "Identified"),
        ("page", "Viewed a page"),
        ("track", "Newsletter Signed Up"),
        ("commerce", "Order Completed"),
    ]
    assert day.label == "Monday 30 November 2026 · 5 events"


def test_events_group_by_day_newest_first(profile, event):
    event(profile, 0)
    event(profile, 60 * 24)
    event(profile, 60 * 24 + 1)

    groups = timeline_feed(newest_first(profile), group_by="day", pii=True)

    assert [len(group.entries) for group in groups] == [1, 2]
    assert groups[1].label.startswith("Sunday 29 November 2026")


def test_sessions_follow_the_clients_session_id_or_half_an_hour_of_quiet(profile, event):
    # Without session ids: 10 and 25 minutes apart is one visit, 31 minutes more is another.
    event(profile, 0)
    event(profile, 10)
    event(profile, 35)
    event(profile, 66)
    # With session ids: the id decides, whatever the gap.
    event(profile, 200, context={"sessionId": 7})
    event(profile, 300, context={"sessionId": 7})
    event(profile, 301, context={"sessionId": 6})

    groups = timeline_feed(newest_first(profile), group_by="session", pii=True)

    assert [len(group.entries) for group in groups] == [3, 1, 2, 1]
    assert groups[0].label == "Session on Mon 30 Nov 2026, 11:25–12:00 · 3 events"


def test_the_page_shows_readable_properties_not_dicts(admin_client, profile, event):
    properties = {"order_id": "o-1", "total": 59.9, "products": [{"sku": "A-1", "name": "Mug"}]}
    event(profile, 1, type="track", name="Order Completed", properties=properties)
    url = reverse("admin:profiles_profile_timeline", args=[profile.pk])

    content = admin_client.get(url, {"group": "session"}).content.decode()

    assert "{&#x27;" not in content and "{'" not in content and '{"' not in content
    assert '<th scope="row">order_id</th><td>o-1</td>' in content
    assert '<th scope="row">name</th><td>Mug</td>' in content
    assert "#cdp-icon-commerce" in content and "Session on" in content


def test_the_profile_page_shows_the_latest_events_as_the_same_feed(admin_client, profile, event):
    long_text = "x" * 500
    event(profile, 1, type="track", name="Note Added", properties={"text": long_text})

    content = admin_client.get(f"/admin/profiles/profile/{profile.pk}/change/").content.decode()

    assert long_text in content  # nothing cut off
    assert "#cdp-icon-track" in content


def test_an_unknown_filter_or_grouping_is_refused_clearly(admin_client, profile):
    url = reverse("admin:profiles_profile_timeline", args=[profile.pk])

    response = admin_client.get(url, {"group": "week"})

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_without_personal_data_people_are_masked_but_products_keep_their_names(
    client, user_with_role, profile, event
):
    properties = {"email": "anna@example.com", "name": "Blue mug", "firstName": "Anna"}
    event(profile, 1, type="track", name="Product Viewed", properties=properties)
    client.force_login(user_with_role("Analyst"))

    content = client.get(
        reverse("admin:profiles_profile_timeline", args=[profile.pk])
    ).content.decode()

    assert "anna@example.com" not in content and "Anna" not in content
    assert "Blue mug" in content


def test_event_properties_keep_product_names_but_never_contact_details():
    shown = mask_properties(
        {"name": "Blue mug", "products": [{"name": "Cup"}], "customerName": "Anna de Vries"}
    )

    assert shown["name"] == "Blue mug" and shown["products"] == [{"name": "Cup"}]
    assert shown["customerName"] != "Anna de Vries"
    assert mask_properties({"name": "anna@example.com"})["name"] != "anna@example.com"
    assert mask_json("traits", {"name": "Anna de Vries"})["name"] != "Anna de Vries"
