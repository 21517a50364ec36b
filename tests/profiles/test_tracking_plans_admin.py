"""Tracking plans in the admin: writing a plan with its events and sources (a bad schema is
refused on the form, saying where), its violations with examples (masked for the roles that
may not see personal data), the violations list, what a source sends and a draft plan of it."""

from __future__ import annotations

import pytest

from cdphub.audit import audit_entries_for
from profiles.ingest import plans
from profiles.models import TrackingPlan, TrackingPlanSource
from tests.factories import EventFactory, ProfileFactory, SourceFactory
from tests.profiles.test_tracking_plans import ORDER_SCHEMA, order, send

pytestmark = pytest.mark.django_db

ADD = "/admin/profiles/trackingplan/add/"
OBSERVED = "/admin/profiles/trackingplan/observed/"


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def source():
    return SourceFactory(name="Web shop")


def form_data(source, schema: str) -> dict:
    return {
        "name": "Shop plan",
        "description": "",
        "status": "active",
        "events-TOTAL_FORMS": "1",
        "events-INITIAL_FORMS": "0",
        "events-0-type": "track",
        "events-0-name": "Order Completed",
        "events-0-description": "",
        "events-0-schema": schema,
        "sources-TOTAL_FORMS": "1",
        "sources-INITIAL_FORMS": "0",
        "sources-0-source": str(source.pk),
        "sources-0-violation_action": "block",
        "sources-0-unplanned_event_action": "allow",
    }


def test_a_plan_is_written_with_its_events_and_sources(admin_client, source):
    response = admin_client.post(ADD, form_data(source, '{"required": ["order_id"]}'))

    assert response.status_code == 302, response.context["errors"]
    plan = TrackingPlan.objects.get()
    assert list(plan.events.values_list("name", "schema")) == [
        ("Order Completed", {"required": ["order_id"]})
    ]
    link = TrackingPlanSource.objects.get()
    assert (link.source, link.violation_action) == (source, "block")
    assert audit_entries_for(plan).get().action == "tracking_plan.create"

    change = admin_client.post(
        f"/admin/profiles/trackingplan/{plan.pk}/change/",
        {
            **form_data(source, "{}"),
            "events-INITIAL_FORMS": "1",
            "events-0-id": str(plan.events.get().pk),
            "events-0-plan": str(plan.pk),
            "sources-INITIAL_FORMS": "1",
            "sources-0-id": str(link.pk),
            "sources-0-plan": str(plan.pk),
        },
    )

    assert change.status_code == 302
    plan.refresh_from_db()
    assert plan.version == 2
    assert plan.events.get().schema == {}


def test_an_invalid_schema_is_refused_on_the_form_saying_where(admin_client, source):
    response = admin_client.post(
        ADD, form_data(source, '{"properties": {"revenue": {"type": "money"}}}')
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "at properties.revenue.type: &#x27;money&#x27; is not valid under any of" in page
    assert not TrackingPlan.objects.exists()


def test_a_source_of_another_plan_is_refused_on_the_form(admin_client, source):
    plans.tracking_plan_create(name="Other", sources=[{"source": source}])

    response = admin_client.post(ADD, form_data(source, "{}"))

    assert response.status_code == 200
    assert "This source follows another tracking plan already." in response.content.decode()
    assert TrackingPlan.objects.count() == 1


@pytest.fixture
def violated(source):
    plan = plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source}],
    )
    send(source, order("m-1", email="anna.example.com"), order("m-2", revenue="12"))
    return plan


def test_the_plan_page_counts_violations_with_examples(admin_client, violated):
    page = admin_client.get(f"/admin/profiles/trackingplan/{violated.pk}/change/")

    content = page.content.decode()
    assert page.status_code == 200
    assert "<code>email</code></td><td>Wrong type or value</td><td>1</td>" in content
    assert "<code>anna.example.com</code> (format: email) message <code>m-1</code>" in content
    assert "<code>12</code> (type: number) message <code>m-2</code>" in content


def test_roles_without_personal_data_access_see_examples_masked(client, user_with_role, violated):
    client.force_login(user_with_role("Data engineer"))

    plan_page = client.get(f"/admin/profiles/trackingplan/{violated.pk}/change/")
    violation = violated.violations.get(property="email")
    detail = client.get(f"/admin/profiles/trackingplanviolation/{violation.pk}/change/")

    for page in (plan_page, detail):
        assert page.status_code == 200
        content = page.content.decode()
        assert "anna.example.com" not in content
        assert "<code>a•••</code> (format: email) message <code>m-1</code>" in content


def test_the_violations_list_filters_by_plan_and_kind(admin_client, violated):
    url = "/admin/profiles/trackingplanviolation/"

    every = admin_client.get(url, {"plan__id__exact": violated.pk})
    wrong = admin_client.get(url, {"kind__exact": "missing_required"})

    assert every.status_code == 200
    assert {v.property for v in every.context["cl"].result_list} == {"email", "revenue"}
    assert list(wrong.context["cl"].result_list) == []


def test_what_a_source_sends_and_a_draft_plan_of_it(admin_client, source):
    profile = ProfileFactory()
    for price in (10, 11):
        EventFactory(
            source=source,
            profile=profile,
            name="Order Completed",
            properties={"order_id": "o-1", "price": price},
        )

    shown = admin_client.get(OBSERVED, {"source": source.pk, "days": 7})
    created = admin_client.post(OBSERVED, {"source": source.pk, "days": 7, "name": "From shop"})

    content = shown.content.decode()
    assert "2 events of the last 7 days" in content
    assert "<code>price</code>: integer (2, required)" in content
    plan = TrackingPlan.objects.get(name="From shop")
    assert created.status_code == 302
    assert created["Location"] == f"/admin/profiles/trackingplan/{plan.pk}/change/"
    assert plan.status == "draft"
    assert plan.events.get().schema["properties"]["price"] == {"type": "integer"}


def test_a_draft_plan_of_a_silent_source_is_refused_with_the_reason(admin_client, source):
    response = admin_client.post(OBSERVED, {"source": source.pk, "days": 7, "name": ""})

    assert response.status_code == 200
    assert "&#x27;Web shop&#x27; sent no events in the last 7 days" in response.content.decode()
    assert not TrackingPlan.objects.exists()


def test_a_role_that_reads_profiles_sees_plans_but_creates_none(client, user_with_role, source):
    client.force_login(user_with_role("Analyst"))

    assert client.get("/admin/profiles/trackingplan/").status_code == 200
    assert client.get(OBSERVED, {"source": source.pk, "days": 7}).status_code == 200
    assert client.post(OBSERVED, {"source": source.pk, "days": 7}).status_code == 403
    assert client.get(ADD).status_code == 403
    assert not TrackingPlan.objects.exists()


def test_staff_without_a_role_cannot_open_plans_or_violations(client, django_user_model, source):
    staff = django_user_model.objects.create_user("staff", password="pw-for-tests-1", is_staff=True)
    client.force_login(staff)

    assert client.get("/admin/profiles/trackingplan/").status_code == 403
    assert client.get("/admin/profiles/trackingplanviolation/").status_code == 403
    assert client.get(OBSERVED, {"source": source.pk}).status_code == 403
