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


def test_each_role_sees_its_own_work_first(client, user_with_role):
    orders = {}
    for role in ("Sales", "Privacy officer", "Marketer"):
        client.force_login(user_with_role(role))
        orders[role] = client.get("/admin/").context["dashboard"]["order"]

    assert orders["Sales"][:2] == ["my_tasks", "my_pipeline"]
    assert orders["Privacy officer"][:2] == ["requests", "consent"]
    assert orders["Marketer"][:3] == ["segments", "destinations", "audiences"]
    assert all(sorted(order) == sorted(orders["Sales"]) for order in orders.values())


def test_a_sales_rep_sees_their_pipeline_and_tasks_due(client, user_with_role):
    from crm.models import Deal, Pipeline, Stage, Task

    rep = user_with_role("Sales")
    other = user_with_role("Sales", username="other-rep")
    pipeline = Pipeline.objects.create(name="New business")
    stage = Stage.objects.create(pipeline=pipeline, name="Proposal", order=1, probability=50)
    for owner, amount in ((rep, 1000), (rep, 500), (other, 9999)):
        Deal.objects.create(
            name="Deal",
            pipeline=pipeline,
            stage=stage,
            amount=amount,
            currency="EUR",
            probability=50,
            owner=owner,
        )
    now = timezone.now()
    Task.objects.create(title="Call Anna back", owner=rep, due_at=now - timedelta(hours=30))
    Task.objects.create(title="Send the offer", owner=rep, due_at=now + timedelta(minutes=1))
    Task.objects.create(title="Done already", owner=rep, due_at=now, done_at=now)
    Task.objects.create(title="Not mine", owner=other, due_at=now)
    client.force_login(rep)

    response = client.get("/admin/")

    dashboard = response.context["dashboard"]
    (row,) = dashboard["my_pipeline"]
    assert (row["count"], row["total"], row["weighted"]) == (2, 1500, 750)
    tasks = dashboard["my_tasks"]
    assert tasks["overdue"] == 1
    assert [task.title for task in tasks["items"]] == ["Call Anna back", "Send the offer"]
    page = response.content.decode()
    assert page.index("My tasks:") < page.index("My open deals") < page.index("Your recent jobs")
    assert "EUR 1,500" in page


def test_roles_that_only_look_at_the_crm_get_no_sales_panels(client, user_with_role):
    client.force_login(user_with_role("Marketer"))

    dashboard = client.get("/admin/").context["dashboard"]

    assert "my_pipeline" not in dashboard and "my_tasks" not in dashboard
    page = client.get("/admin/").content.decode()
    assert "My open deals" not in page and "My tasks:" not in page
