"""Computed traits over the API, and kept current by event processing: an integrator defines a
trait, collected events update it, and a segment selects on it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import ComputedTrait, Identity, SegmentMembership
from profiles.segments.membership import segment_refresh
from tests.factories import EventFactory, ProfileFactory, SegmentFactory, SourceFactory

pytestmark = pytest.mark.django_db

URL = "/api/computed-traits/"
DEFINITION = {
    "key": "eur_spent_30d",
    "name": "Spent in euros, last 30 days",
    "kind": "sum",
    "event_type": "track",
    "event_name": "Order Completed",
    "property": "revenue",
    "where": [{"property": "currency", "op": "eq", "value": "EUR"}],
    "window_days": 30,
}


@pytest.fixture
def writer(api_client_with_scopes):
    return api_client_with_scopes("profiles:read", "profiles:write")


def order(message_id: str, revenue, currency="EUR", days_ago=1) -> dict:
    return {
        "type": "track",
        "userId": "u-1",
        "event": "Order Completed",
        "properties": {"revenue": revenue, "currency": currency},
        "messageId": message_id,
        "timestamp": (timezone.now() - timedelta(days=days_ago)).isoformat(),
    }


def test_define_over_the_api_and_collected_events_keep_it_current(
    writer, settings, django_capture_on_commit_callbacks
):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(URL, DEFINITION, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "new"
    assert ComputedTrait.objects.get().status == ComputedTrait.Status.READY
    big_spenders = SegmentFactory(rule={"computed": "eur_spent_30d", "op": "gte", "value": 100})
    segment_refresh(segment=big_spenders)

    source = SourceFactory()
    messages_collect(
        source_id=source.pk,
        messages=[
            order("o-1", 60),
            order("o-2", "45.5"),
            order("o-3", 500, currency="USD"),
            order("o-4", 70, days_ago=45),
        ],
    )
    pending_process()

    profile = Identity.objects.get(kind="user_id", value="u-1").profile
    assert profile.computed_traits["eur_spent_30d"] == 105.5
    assert SegmentMembership.objects.filter(segment=big_spenders, profile=profile).exists()


def test_read_update_recompute_and_delete(writer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = writer.post(URL, DEFINITION, format="json").json()
    detail = f"{URL}{created['id']}/"
    assert writer.get(detail).json()["where"] == DEFINITION["where"]
    profile = ProfileFactory(traits={})
    EventFactory(
        profile=profile, name="Order Completed", properties={"revenue": 5, "currency": "EUR"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.patch(detail, {"window_days": None, "kind": "max"}, format="json")
    assert response.status_code == 200, response.json()
    profile.refresh_from_db()
    assert profile.computed_traits["eur_spent_30d"] == 5
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(f"{detail}recompute/")
    assert response.status_code == 202
    assert writer.get(detail).json()["status"] == "ready"
    with django_capture_on_commit_callbacks(execute=True):
        assert writer.delete(detail).status_code == 204
    profile.refresh_from_db()
    assert "eur_spent_30d" not in profile.computed_traits


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "lifetime_value"}, "key", "built-in"),
        ({"property": ""}, "property", "needs the property"),
        ({"where": [{"property": "currency", "op": "near"}]}, "where", "where[0]"),
        ({"window_days": 0}, "window_days", "greater than or equal to 1"),
        ({"kind": "median"}, "kind", "not a valid choice"),
    ],
)
def test_bad_definitions_are_refused_with_the_field(writer, changes, field, message):
    response = writer.post(URL, {**DEFINITION, **changes}, format="json")
    assert response.status_code == 400
    assert message in str(response.json()["errors"][field])
    assert not ComputedTrait.objects.exists()


def test_the_key_cannot_change(writer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = writer.post(URL, DEFINITION, format="json").json()
    response = writer.patch(f"{URL}{created['id']}/", {"key": "other"}, format="json")
    assert response.status_code == 400
    assert "cannot change" in str(response.json()["errors"]["key"])


def test_preview_masks_personal_values_without_the_scope(api_client_with_scopes):
    profile = ProfileFactory(traits={})
    EventFactory(profile=profile, name="Order Completed", properties={"email": "a@example.com"})
    definition = {**DEFINITION, "kind": "last", "property": "email", "where": [], "key": "mail"}
    plain = api_client_with_scopes("profiles:read", "profiles:write")
    body = plain.post(f"{URL}preview/", definition, format="json").json()
    assert body["with_value"] == 1
    assert "example.com" not in str(body["examples"])
    trusted = api_client_with_scopes("profiles:read", "profiles:write", "pii:read")
    body = trusted.post(f"{URL}preview/", definition, format="json").json()
    assert body["examples"] == [{"profile": profile.pk, "value": "a@example.com"}]
    assert not ComputedTrait.objects.exists()


def test_reading_needs_the_read_scope_and_writing_the_write_scope(api_client_with_scopes):
    assert api_client_with_scopes("crm:read").get(URL).status_code == 403
    reader = api_client_with_scopes("profiles:read")
    assert reader.get(URL).status_code == 200
    assert reader.post(URL, DEFINITION, format="json").status_code == 403


def test_a_trait_a_segment_reads_is_a_409(writer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = writer.post(URL, DEFINITION, format="json").json()
    SegmentFactory(rule={"computed": "eur_spent_30d", "op": "gt", "value": 10})
    response = writer.delete(f"{URL}{created['id']}/")
    assert response.status_code == 409
    assert "1 segments refer to it" in str(response.json())


def test_a_change_to_a_saved_trait_is_previewed_before_saving(
    writer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = writer.post(URL, DEFINITION, format="json").json()
    profile = ProfileFactory(traits={})
    EventFactory(
        profile=profile, name="Order Completed", properties={"revenue": 7, "currency": "EUR"}
    )
    change = {"id": created["id"], "kind": "count", "property": ""}
    response = writer.post(f"{URL}preview/", change, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["examples"] == [{"profile": profile.pk, "value": 1}]
    assert ComputedTrait.objects.get().kind == "sum"  # nothing saved


@pytest.mark.parametrize("body", [[1, 2], {"id": "abc", "kind": "count"}, {"id": 999999}])
def test_a_preview_of_something_that_is_no_definition_is_a_400(writer, body):
    response = writer.post(f"{URL}preview/", body, format="json")
    assert response.status_code == 400
