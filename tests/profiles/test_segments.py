from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from cdphub.outbound import OutboundRefused
from profiles.models import Segment, SegmentExport, SegmentMembership, SegmentMembershipChange
from profiles.segments.exports import (
    segment_export_request,
    segment_export_run,
    segment_export_webhook,
)
from profiles.segments.membership import (
    members_for_purpose,
    profile_activity_refresh,
    segment_refresh,
    segments_due,
    segments_refresh_for_profiles,
)
from profiles.tasks import refresh_due_segments_task
from tests.factories import (
    EventFactory,
    ProfileFactory,
    PurposeFactory,
    SegmentFactory,
    consent_state_create,
)
from tests.server import WebhookReceiver, free_port

pytestmark = pytest.mark.django_db

DUTCH = {"trait": "country", "op": "eq", "value": "NL"}


def member_ids(segment) -> set[int]:
    return set(
        SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    )


def history(segment) -> list[tuple[int, str]]:
    changes = SegmentMembershipChange.objects.filter(segment=segment).order_by("id")
    return list(changes.values_list("profile_id", "kind"))


def test_refresh_records_entered_and_exited_and_size():
    # Given two Dutch profiles and one Belgian
    anna = ProfileFactory(traits={"country": "NL"})
    bert = ProfileFactory(traits={"country": "NL"})
    ProfileFactory(traits={"country": "BE"})
    segment = SegmentFactory(rule=DUTCH)
    # When the segment is refreshed, then Anna moves to Belgium and it is refreshed again
    first = segment_refresh(segment=segment)
    anna.traits = {"country": "BE"}
    anna.save()
    second = segment_refresh(segment=segment)
    # Then the history says who entered and exited, and the size follows
    assert (first.entered, first.exited, first.size) == (2, 0, 2)
    assert (second.entered, second.exited, second.size) == (0, 1, 1)
    assert member_ids(segment) == {bert.pk}
    assert history(segment) == [
        *sorted([(anna.pk, "entered"), (bert.pk, "entered")]),
        (anna.pk, "exited"),
    ]
    segment.refresh_from_db()
    assert (segment.size, segment.status, segment.last_error) == (1, "ready", "")
    assert [s.size for s in segment.size_snapshots.order_by("taken_at")] == [2, 1]


def test_a_failing_refresh_is_recorded_not_left_calculating():
    segment = SegmentFactory(rule=DUTCH)
    with mock.patch(
        "profiles.segments.membership.membership_sync", side_effect=RuntimeError("disk full")
    ):
        result = segment_refresh(segment=segment)
    assert result.error == "RuntimeError: disk full"
    segment.refresh_from_db()
    assert segment.status == Segment.Status.FAILED
    assert "disk full" in segment.last_error
    # The next run retries and clears the error.
    assert segment in segments_due()
    segment_refresh(segment=segment)
    segment.refresh_from_db()
    assert (segment.status, segment.last_error) == (Segment.Status.READY, "")


def test_a_rule_broken_after_saving_fails_with_its_error():
    other = SegmentFactory(rule=DUTCH)
    segment = SegmentFactory(rule={"segment": other.pk})
    other.delete()
    ProfileFactory(traits={"country": "NL"})
    segment_refresh(segment=segment)
    segment.refresh_from_db()
    assert segment.status == Segment.Status.FAILED
    assert "does not exist" in segment.last_error


def test_due_segments_by_interval_failure_and_stale_calculation():
    now = timezone.now()
    fresh = SegmentFactory(status="ready", refreshed_at=now, refresh_interval_minutes=60)
    old = SegmentFactory(
        status="ready", refreshed_at=now - timedelta(hours=2), refresh_interval_minutes=60
    )
    manual = SegmentFactory(
        status="ready", refreshed_at=now - timedelta(days=9), refresh_interval_minutes=0
    )
    running = SegmentFactory(status="calculating", refresh_started_at=now - timedelta(minutes=1))
    dead = SegmentFactory(status="calculating", refresh_started_at=now - timedelta(hours=3))
    static = SegmentFactory(kind=Segment.Kind.STATIC, rule={}, status="new")
    due = set(segments_due(now))
    assert old in due and dead in due
    assert not due & {fresh, manual, running, static}


def test_refresh_due_segments_task_refreshes_them(django_capture_on_commit_callbacks):
    ProfileFactory(traits={"country": "NL"})
    segment = SegmentFactory(rule=DUTCH)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_due_segments_task()
    segment.refresh_from_db()
    assert (segment.status, segment.size) == ("ready", 1)


def test_on_event_refresh_touches_only_the_given_profiles():
    anna = ProfileFactory(traits={"country": "NL"})
    bert = ProfileFactory(traits={"country": "NL"})
    buyers = SegmentFactory(rule={"event": "Order Completed", "within_days": 30})
    dutch = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=buyers)
    segment_refresh(segment=dutch)
    EventFactory(profile=anna, name="Order Completed")
    EventFactory(profile=bert, name="Order Completed")
    bert.traits = {"country": "BE"}
    bert.save()
    changed = segments_refresh_for_profiles(profile_ids=[anna.pk])
    assert changed == {buyers.pk: (1, 0)}
    assert member_ids(buyers) == {anna.pk}  # Bert's order is not processed yet
    assert member_ids(dutch) == {anna.pk, bert.pk}
    buyers.refresh_from_db()
    assert buyers.size == 1


def test_profile_activity_refresh_updates_traits_then_segments():
    anna = ProfileFactory(traits={})
    big_spenders = SegmentFactory(rule={"computed": "lifetime_value", "op": "gte", "value": 100})
    segment_refresh(segment=big_spenders)
    EventFactory(profile=anna, name="Order Completed", properties={"revenue": 120})
    profile_activity_refresh(profile_ids=[anna.pk])
    assert member_ids(big_spenders) == {anna.pk}
    assert history(big_spenders) == [(anna.pk, "entered")]


def test_nested_segment_refresh_is_independent_of_order():
    dutch_profile = ProfileFactory(traits={"country": "NL", "vip": True})
    base = SegmentFactory(rule=DUTCH)
    nested = SegmentFactory(
        rule={"all": [{"segment": base.pk}, {"trait": "vip", "op": "eq", "value": True}]}
    )
    segment_refresh(segment=nested)  # before its base was ever refreshed
    assert member_ids(nested) == {dutch_profile.pk}


def test_members_for_purpose_needs_consent_granted_now():
    purpose = PurposeFactory(code="sms")
    granted, withdrawn, silent = (ProfileFactory(traits={"country": "NL"}) for _ in range(3))
    consent_state_create(granted, purpose, "granted")
    consent_state_create(withdrawn, purpose, "granted")
    consent_state_create(withdrawn, purpose, "withdrawn")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    assert member_ids(segment) == {granted.pk, withdrawn.pk, silent.pk}
    assert set(members_for_purpose(segment, "sms")) == {granted}


def test_webhook_export_posts_consented_members_only(settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    purpose = PurposeFactory(code="advertising")
    yes, no = ProfileFactory(traits={"country": "NL"}), ProfileFactory(traits={"country": "NL"})
    consent_state_create(yes, purpose, "granted")
    consent_state_create(no, purpose, "denied")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    with WebhookReceiver() as receiver:
        sent = segment_export_webhook(segment=segment, purpose_code="advertising", url=receiver.url)
    assert sent == 1
    (body,) = receiver.bodies
    assert [p["profile_id"] for p in body["profiles"]] == [yes.pk]
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match="must start with https"):
        segment_export_webhook(segment=segment, purpose_code="advertising", url="file:///etc/x")


# --- webhook exports: requested, run, recorded ---------------------------------------------------


@pytest.fixture
def consenting_segment():
    purpose = PurposeFactory(code="advertising")
    member = ProfileFactory(traits={"country": "NL"})
    consent_state_create(member, purpose, "granted")
    segment = SegmentFactory(rule=DUTCH)
    segment_refresh(segment=segment)
    return segment


def test_a_requested_export_is_checked_again_when_it_runs(consenting_segment, settings):
    # Given an export requested while its address was allowed
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with WebhookReceiver() as receiver:
        export = segment_export_request(
            segment=consenting_segment, purpose_code="advertising", url=receiver.url
        )
        # When the address is no longer allowed by the time it runs
        settings.CDPHUB_OUTBOUND_ALLOWLIST = []
        export = segment_export_run(export=export)

    # Then nothing is sent and the refusal is recorded
    assert receiver.requests == []
    assert export.status == SegmentExport.Status.FAILED
    assert "127.0.0.1 is a loopback address" in export.message
    assert export.finished_at is not None


def test_a_run_export_records_what_it_sent_and_runs_once(consenting_segment, settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with WebhookReceiver() as receiver:
        export = segment_export_request(
            segment=consenting_segment, purpose_code="advertising", url=receiver.url
        )
        export = segment_export_run(export=export)
        segment_export_run(export=export)  # the task delivered twice

    assert len(receiver.requests) == 1
    assert (export.status, export.sent, export.message) == (SegmentExport.Status.DONE, 1, "")


def test_an_unreachable_receiver_is_recorded_not_raised(consenting_segment, settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url = f"http://127.0.0.1:{free_port()}/hook"
    export = segment_export_request(segment=consenting_segment, purpose_code="advertising", url=url)

    export = segment_export_run(export=export)

    assert export.status == SegmentExport.Status.FAILED
    assert export.message.startswith("could not deliver to 127.0.0.1:")
    assert export.sent == 0


def test_a_refused_url_is_not_recorded(consenting_segment):
    with pytest.raises(OutboundRefused, match="cloud metadata"):
        segment_export_request(
            segment=consenting_segment,
            purpose_code="advertising",
            url="http://169.254.169.254/latest/meta-data/",
        )
    assert not SegmentExport.objects.exists()


def test_on_event_refresh_with_event_counts_and_negation():
    # Given a segment of profiles with two page views and no order
    rule = {
        "all": [
            {"event": "Page Viewed", "count": {"op": "gte", "value": 2}},
            {"not": {"event": "Order Completed"}},
        ]
    }
    anna, bert = ProfileFactory(), ProfileFactory()
    segment = SegmentFactory(rule=rule)
    EventFactory(profile=anna, name="Page Viewed")
    EventFactory(profile=bert, name="Page Viewed")
    EventFactory(profile=bert, name="Page Viewed")
    segment_refresh(segment=segment)
    assert member_ids(segment) == {bert.pk}
    # When Anna views a second page and Bert orders
    EventFactory(profile=anna, name="Page Viewed")
    EventFactory(profile=bert, name="Order Completed")
    segments_refresh_for_profiles(profile_ids=[anna.pk, bert.pk])
    # Then Anna entered and Bert exited
    assert member_ids(segment) == {anna.pk}
    assert history(segment)[-2:] == [(anna.pk, "entered"), (bert.pk, "exited")]
    segment.refresh_from_db()
    assert segment.size == 1
