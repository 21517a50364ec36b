from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from consent.models import DataSubjectRequest
from profiles.models import Segment
from tests.factories import EventFactory, IdentityFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def activity():
    web, app = SourceFactory(name="Website"), SourceFactory(name="App")
    for index in range(12):
        profile = ProfileFactory()
        if index % 3 == 0:
            IdentityFactory(profile=profile)
        EventFactory(profile=profile, source=web if index % 2 else app, name="Order Completed")
    Segment.objects.create(name="Loyal customers", size=1234)


def test_dashboard_shows_the_key_figures(admin_client, activity, django_assert_max_num_queries):
    with django_assert_max_num_queries(50):  # fixed: per panel, and per purpose
        response = admin_client.get("/admin/")

    page = response.content.decode()
    numbers = response.context["dashboard"]
    assert numbers["profiles"]["total"] == 12
    assert numbers["profiles"]["new_this_week"] == 12
    assert numbers["profiles"]["identified_share"] == pytest.approx(4 / 12)
    assert numbers["events_total"] == 12
    assert "<svg" in page and "Website" in page and "App" in page
    assert "Order Completed" in page
    assert "Loyal customers" in page and "1,234" in page


def test_dashboard_numbers_are_cached_and_refreshable(admin_client, activity):
    admin_client.get("/admin/")
    ProfileFactory()

    cached = admin_client.get("/admin/").context["dashboard"]["profiles"]["total"]
    refreshed = admin_client.get("/admin/?refresh=1").context["dashboard"]["profiles"]["total"]

    assert (cached, refreshed) == (12, 13)


def test_overdue_requests_are_flagged(client, user_with_role):
    DataSubjectRequest.objects.create(
        kind="erasure", subject_email="x@example.com", due_at=timezone.now() - timedelta(days=2)
    )
    DataSubjectRequest.objects.create(kind="access", subject_email="y@example.com")
    client.force_login(user_with_role("Privacy officer"))

    response = client.get("/admin/")

    requests = response.context["dashboard"]["requests"]
    assert (requests["open"], requests["overdue"]) == (2, 1)
    assert 'class="cdp-overdue"' in response.content.decode()


def test_panels_follow_permissions(client, user_with_role):
    client.force_login(user_with_role("Sales"))

    panels = client.get("/admin/").context["dashboard"]

    assert "requests" not in panels  # only privacy officers handle data subject requests
    assert "audiences" not in panels
    assert "profiles" in panels


def test_empty_dashboard_explains_what_to_do(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert "No events in the last 30 days" in page
    assert "Create the first one" in page
