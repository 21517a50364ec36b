"""Tracking plans over the API: writing plans (a bad schema is a 400 saying where), their
violations (counts and masked examples), what a source sends and a draft plan from it, and
who may do what."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cdphub.audit import audit_entries_for
from profiles.ingest import plans
from profiles.models import TrackingPlan, TrackingPlanSource
from tests.factories import EventFactory, ProfileFactory, SourceFactory
from tests.profiles.test_tracking_plans import ORDER_SCHEMA, order, send

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def source():
    return SourceFactory(name="Web shop")


@pytest.fixture
def writer(api_client_with_scopes):
    return api_client_with_scopes("profiles:read", "profiles:write")


def plan_body(source, **extra) -> dict:
    return {
        "name": "Shop plan",
        "status": "active",
        "events": [{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        "sources": [{"source": source.pk, "violation_action": "omit"}],
        **extra,
    }


def test_create_read_and_replace_a_plan(writer, source):
    created = writer.post("/api/tracking-plans/", plan_body(source), format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["name"], body["status"], body["version"]) == ("Shop plan", "active", 1)
    assert body["events"][0]["schema"] == ORDER_SCHEMA
    assert body["sources"] == [
        {"source": source.pk, "violation_action": "omit", "unplanned_event_action": "allow"}
    ]

    changed = writer.patch(
        f"/api/tracking-plans/{body['id']}/",
        {"events": [{"type": "page", "name": "Home", "schema": {}}]},
        format="json",
    )

    assert changed.status_code == 200, changed.json()
    assert changed.json()["version"] == 2
    assert [e["name"] for e in changed.json()["events"]] == ["Home"]
    assert changed.json()["sources"][0]["source"] == source.pk  # left as it was
    plan = TrackingPlan.objects.get()
    assert [a.action for a in audit_entries_for(plan).order_by("pk")] == [
        "tracking_plan.create",
        "tracking_plan.update",
    ]


def test_a_plan_with_an_invalid_schema_is_a_400_saying_where(writer, source):
    body = plan_body(source)
    body["events"].append(
        {"type": "track", "name": "Refund", "schema": {"properties": {"amount": {"type": "money"}}}}
    )

    response = writer.post("/api/tracking-plans/", body, format="json")

    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "invalid"
    assert list(error["errors"]) == ["events[1].schema"]
    assert error["errors"]["events[1].schema"][0].startswith(
        "at properties.amount.type: 'money' is not valid under any of the given schemas"
    )
    assert "events[1].schema: at properties.amount.type" in error["message"]
    assert not TrackingPlan.objects.exists()


def test_a_source_of_another_plan_is_refused_naming_the_plan(writer, source):
    assert writer.post("/api/tracking-plans/", plan_body(source), format="json").status_code == 201

    response = writer.post("/api/tracking-plans/", plan_body(source, name="Two"), format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "sources[0].source": [
            "the source 'Web shop' follows the tracking plan 'Shop plan': a source follows at "
            "most one plan, remove it there first"
        ]
    }


def test_violations_list_and_summary_show_counts_and_examples(api_client_with_scopes, source):
    plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source, "violation_action": "allow"}],
    )
    send(source, order("m-1", email="anna.example.com"), order("m-2", email="bob.example.com"))
    send(source, order("m-3", revenue="12"))
    reader = api_client_with_scopes("profiles:read", "pii:read")

    listed = reader.get("/api/tracking-plan-violations/", {"kind": "wrong_type"}).json()
    summary = reader.get(f"/api/tracking-plans/{TrackingPlan.objects.get().pk}/violations/")

    rows = {(row["property"], row["count"]) for row in listed["results"]}
    assert rows == {("email", 2), ("revenue", 1)}
    assert summary.status_code == 200
    first = summary.json()[0]
    assert (first["event_name"], first["property"], first["kind"], first["count"]) == (
        "Order Completed",
        "email",
        "wrong_type",
        2,
    )
    assert [(e["message_id"], e["value"]) for e in first["examples"]] == [
        ("m-2", "bob.example.com"),
        ("m-1", "anna.example.com"),
    ]
    assert first["examples"][0]["expected"] == "format: email"


def test_examples_are_masked_without_personal_data_access(api_client_with_scopes, source):
    plans.tracking_plan_create(
        name="Shop plan",
        status="active",
        events=[{"type": "track", "name": "Order Completed", "schema": ORDER_SCHEMA}],
        sources=[{"source": source}],
    )
    send(source, order("m-1", email="anna.example.com", coupon="+31 6 12345678"))
    reader = api_client_with_scopes("profiles:read")

    listed = reader.get("/api/tracking-plan-violations/").json()["results"]
    summary = reader.get(f"/api/tracking-plans/{TrackingPlan.objects.get().pk}/violations/")

    values = {row["property"]: row["examples"][0]["value"] for row in listed}
    assert values == {"email": "a•••", "coupon": "+•••"}
    assert {row["examples"][0]["value"] for row in summary.json()} == {"a•••", "+•••"}
    assert "anna.example.com" not in str(listed) + summary.content.decode()


def test_observed_events_and_a_generated_draft_plan(writer, source):
    profile = ProfileFactory()
    for price in (10, 12.5):
        EventFactory(
            source=source,
            profile=profile,
            type="track",
            name="Order Completed",
            properties={"order_id": "o-1", "price": price},
        )
    EventFactory(
        source=source,
        profile=profile,
        type="track",
        name="Order Completed",
        properties={"order_id": "o-2", "price": 3, "coupon": None},
    )

    observed = writer.get("/api/tracking-plans/observed/", {"source": source.pk, "days": 3})
    generated = writer.post("/api/tracking-plans/generate/", {"source": source.pk}, format="json")

    assert observed.status_code == 200, observed.json()
    assert observed.json()["sampled"] == 3
    assert observed.json()["events"] == [
        {
            "type": "track",
            "name": "Order Completed",
            "count": 3,
            "properties": [
                {"name": "coupon", "types": ["null"], "seen": 1, "required": False},
                {"name": "order_id", "types": ["string"], "seen": 3, "required": True},
                {"name": "price", "types": ["number"], "seen": 3, "required": True},
            ],
        }
    ]
    assert generated.status_code == 201, generated.json()
    plan = generated.json()
    assert plan["status"] == "draft"
    assert plan["name"].startswith("Web shop (observed ")
    assert plan["events"][0]["schema"] == {
        "type": "object",
        "properties": {
            "coupon": {"type": "null"},
            "order_id": {"type": "string"},
            "price": {"type": "number"},
        },
        "required": ["order_id", "price"],
    }
    assert plan["sources"][0]["source"] == source.pk


def test_generating_from_a_silent_source_is_a_400(writer, source):
    response = writer.post("/api/tracking-plans/generate/", {"source": source.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "source": ["'Web shop' sent no events in the last 7 days to plan from"]
    }


def test_observed_refuses_unknown_parameters(writer, source):
    response = writer.get("/api/tracking-plans/observed/", {"source": source.pk, "email": "x"})

    assert response.status_code == 400
    assert "email" in response.json()["errors"]


def test_reading_and_writing_need_their_scopes(api_client_with_scopes, source):
    plan = plans.tracking_plan_create(name="Shop plan")
    reader = api_client_with_scopes("profiles:read")
    outsider = api_client_with_scopes("crm:read")

    assert APIClient().get("/api/tracking-plans/").status_code == 401
    assert outsider.get("/api/tracking-plans/").status_code == 403
    assert outsider.get("/api/tracking-plan-violations/").status_code == 403
    assert outsider.get(f"/api/tracking-plans/{plan.pk}/violations/").status_code == 403
    assert reader.get("/api/tracking-plans/").status_code == 200
    assert reader.post("/api/tracking-plans/", plan_body(source), format="json").status_code == 403
    generate = reader.post("/api/tracking-plans/generate/", {"source": source.pk}, format="json")
    assert generate.status_code == 403
    assert reader.delete(f"/api/tracking-plans/{plan.pk}/").status_code == 403
    assert not TrackingPlanSource.objects.exists()


def test_a_role_without_the_permission_gets_403(client, user_with_role, source):
    plans.tracking_plan_create(name="Shop plan")
    client.force_login(user_with_role("Analyst"))

    assert client.get("/api/tracking-plans/").status_code == 200
    refused = client.post(
        "/api/tracking-plans/", plan_body(source), content_type="application/json"
    )
    assert refused.status_code == 403


def test_deleting_a_plan_is_recorded(writer, source):
    plan = plans.tracking_plan_create(name="Shop plan", sources=[{"source": source}])

    assert writer.delete(f"/api/tracking-plans/{plan.pk}/").status_code == 204

    assert not TrackingPlan.objects.exists()
    assert not TrackingPlanSource.objects.exists()
    assert audit_entries_for(plan).get(action="tracking_plan.delete").note == "Shop plan"


def test_a_partial_update_still_needs_each_link_to_name_its_source(writer, source):
    plan = plans.tracking_plan_create(name="Shop plan", sources=[{"source": source}])

    response = writer.patch(
        f"/api/tracking-plans/{plan.pk}/",
        {"sources": [{"violation_action": "block"}]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"sources": {"0": {"source": ["This field is required."]}}}
