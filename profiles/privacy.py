"""What the CDP holds about a person, for access and erasure requests."""

from __future__ import annotations

from functools import partial

from django.db.models import Q

from cdphub.models import Delivery, DeliveryAttempt
from consent import registry
from consent.registry import Subject, delete_rows
from consent.retention import delete_in_batches, register_purger
from profiles import services
from profiles.destinations.erasure import destinations_erase
from profiles.eventstore import events_purge_before
from profiles.models import (
    ComputedTrait,
    ComputedTraitQuantiles,
    Destination,
    Event,
    EventCountDay,
    EventDailyCount,
    Identity,
    MergeConflict,
    ObservedField,
    PendingMessage,
    Profile,
    ProfileMerge,
    RateLimitedDay,
    RejectedMessage,
    SeenMessage,
    Segment,
    SegmentMembership,
    SegmentMembershipChange,
    SharedIdentifier,
    Source,
    TrackingPlan,
    TrackingPlanEvent,
    TrackingPlanSource,
    TrackingPlanViolation,
)


def _profiles(subject: Subject):
    return Profile.objects.filter(pk__in=subject.profile_ids)


registry.register(
    Profile,
    category="profile",
    title="Profile",
    find=_profiles,
    erase=delete_rows,
    personal_fields=("traits", "computed_traits"),
    erase_order=90,  # last: everything else finds its rows through the profile ids
    # first: it checks that a corrected identifier is no other person's, and moves it
    rectify=lambda rows, subject, corrections, actor: services.profiles_rectify(
        profiles=rows, corrections=corrections
    ),
    rectify_order=10,
)
registry.register(
    Identity,
    category="profile",
    title="Identifiers we know you by",
    find=lambda subject: Identity.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("value",),
    erase_order=80,
)
registry.register(
    Event,
    category="activity",
    title="Events",
    find=lambda subject: Event.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("properties", "context"),
    erase_order=80,
)
registry.register(
    SegmentMembership,
    category="activity",
    title="Segments you are in",
    find=lambda subject: SegmentMembership.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=80,
)
registry.register(
    ProfileMerge,
    category="profile",
    title="Profiles merged into yours",
    find=lambda subject: ProfileMerge.objects.filter(
        Q(survivor_id__in=subject.profile_ids) | Q(merged_id__in=subject.profile_ids)
    ),
    erase=delete_rows,
    personal_fields=("moved",),
    erase_order=80,
)
registry.register(
    SegmentMembershipChange,
    category="activity",
    title="Segments joined and left",
    find=lambda subject: SegmentMembershipChange.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    erase_order=80,
)


def _conflicts_of_person(rows, subject: Subject) -> list[dict]:
    """A conflict is between two people: the access file gets the person's side only (their
    identifier, what was decided), not the other person's user id or profile."""
    return [
        {
            "id": conflict.pk,
            "profile_id": next(
                pid
                for pid in (conflict.profile_id, conflict.other_profile_id)
                if pid in subject.profile_ids
            ),
            "identifier_kind": conflict.identifier_kind,
            "identifier_value": conflict.identifier_value,
            "status": conflict.status,
            "created_at": conflict.created_at,
            "decided_at": conflict.decided_at,
        }
        for conflict in rows
    ]


registry.register(
    MergeConflict,
    category="profile",
    title="Identifiers held by two profiles",
    find=lambda subject: MergeConflict.objects.filter(
        Q(profile_id__in=subject.profile_ids) | Q(other_profile_id__in=subject.profile_ids)
    ),
    erase=delete_rows,
    personal_fields=("identifier_value",),
    erase_order=80,
    export_rows=_conflicts_of_person,
)


def _shared_identifiers(subject: Subject):
    matching = Q(value__in=[value for _, value in subject.identifiers()])
    for user_id in subject.user_ids:
        matching |= Q(user_ids__contains=[user_id])
    return SharedIdentifier.objects.filter(matching)


def _shared_identifiers_of_person(rows, subject: Subject) -> list[dict]:
    # The other user ids seen with the device are other people's.
    return [
        {
            "kind": shared.kind,
            "value": shared.value,
            "user_ids": sorted(set(shared.user_ids) & subject.user_ids),
            "blocked": shared.blocked,
        }
        for shared in rows
    ]


registry.register(
    SharedIdentifier,
    category="profile",
    title="Identifiers shared by several people",
    find=_shared_identifiers,
    erase=delete_rows,
    personal_fields=("value", "user_ids"),
    erase_order=80,
    export_rows=_shared_identifiers_of_person,
)


def _raw_messages(model, subject: Subject):
    """Collected messages keep the identifiers inside their JSON payload (a scan, but erasure
    is rare and these tables are short-lived: staging is drained, rejects expire)."""
    values = [*subject.personal_strings(), *(value for _, value in subject.other_identifiers)]
    matching = Q(pk__in=[])
    for value in values:
        matching |= Q(payload__icontains=value)
    return model.objects.filter(matching)


for message_model, title in (
    (PendingMessage, "Messages received, not processed yet"),
    (RejectedMessage, "Messages refused as malformed"),
):
    registry.register(
        message_model,
        category="activity",
        title=title,
        find=partial(_raw_messages, message_model),
        erase=delete_rows,
        personal_fields=("payload",),
        erase_order=10,
    )

registry.register_not_personal(Source, "a sending system's name, not a person's")
registry.register_not_personal(Destination, "a receiving system's name and settings")
# The outbox of destinations: an event as it was (or will be) sent, found by the profile it was
# resolved to; erasing the rows also means a waiting delivery is never sent.
registry.register(
    Delivery,
    category="shared",
    title="Data sent to other systems",
    find=lambda subject: Delivery.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("payload", "response_body"),
    erase_order=80,
)
registry.register_not_personal(ComputedTraitQuantiles, "bucket bounds over all profiles")
registry.register_not_personal(
    ComputedTrait, "a definition (its name labels the trait); the values are on the profiles"
)
# The systems the person's data was sent to are told to delete it too.
registry.register_erasure_notifier(destinations_erase)
registry.register_not_personal(EventDailyCount, "event counts per day and name, no person")
registry.register_not_personal(EventCountDay, "when daily counts were computed")
registry.register_not_personal(RateLimitedDay, "counts of refused messages per source and day")
registry.register_not_personal(Segment, "a segment's name; members are SegmentMembership rows")
registry.register_not_personal(TrackingPlan, "a tracking plan's name")
registry.register_not_personal(TrackingPlanEvent, "event names and JSON Schemas, no values")
registry.register_not_personal(
    SeenMessage, "message ids (random, chosen by the sending library) and when they came"
)
registry.register_not_personal(TrackingPlanSource, "which source follows which plan")
registry.register_not_personal(
    ObservedField,
    "field names and a few example values; personal keys and values are never kept",
)


def _example_is_theirs(example: dict, subject: Subject) -> bool:
    if example.get("profile") in subject.profile_ids:
        return True
    text = str(example.get("value") or "").lower()
    return any(value.lower() in text for value in subject.personal_strings())


def _violations(subject: Subject):
    """Violation counts keep a few example values, with the profile they came from (none for
    a blocked message): the person's examples are found by profile or by value."""
    matching = Q(pk__in=[])
    for profile_id in subject.profile_ids:
        matching |= Q(examples__contains=[{"profile": profile_id}])
    for value in subject.personal_strings():
        matching |= Q(examples__icontains=value)
    return TrackingPlanViolation.objects.filter(matching)


def _violation_examples_erase(rows, subject: Subject) -> int:
    """The counts stay (they are about the sender's data quality); the examples go."""
    changed = 0
    for violation in rows.only("pk", "examples"):
        kept = [e for e in violation.examples if not _example_is_theirs(e, subject)]
        if kept != violation.examples:
            TrackingPlanViolation.objects.filter(pk=violation.pk).update(examples=kept)
            changed += 1
    return changed


def _violation_examples_of_person(rows, subject: Subject) -> list[dict]:
    return [
        {
            "event_type": violation.event_type,
            "event_name": violation.event_name,
            "property": violation.property,
            "kind": violation.kind,
            "day": violation.day,
            "examples": [e for e in violation.examples if _example_is_theirs(e, subject)],
        }
        for violation in rows
    ]


registry.register(
    TrackingPlanViolation,
    category="activity",
    title="Data quality findings",
    find=_violations,
    erase=_violation_examples_erase,
    personal_fields=("examples",),
    erase_order=80,
    export_rows=_violation_examples_of_person,
)


register_purger("raw_events", events_purge_before)


def _purge_rejected_messages(cutoff, batch_size: int) -> int:
    return delete_in_batches(RejectedMessage.objects.filter(received_at__lt=cutoff), batch_size)


register_purger("rejected_messages", _purge_rejected_messages)


def _purge_violations(cutoff, batch_size: int) -> int:
    # Their examples are values of messages: kept no longer than the rejected messages.
    return delete_in_batches(
        TrackingPlanViolation.objects.filter(day__lt=cutoff.date()), batch_size
    )


register_purger("rejected_messages", _purge_violations)


def _purge_deliveries(cutoff, batch_size: int) -> int:
    # Only what is done with: waiting rows and dead letters stay until they are sent or retried.
    done = Delivery.objects.filter(
        status__in=[Delivery.Status.DELIVERED, Delivery.Status.SKIPPED], created_at__lt=cutoff
    )
    attempts = DeliveryAttempt.objects.filter(created_at__lt=cutoff)
    return delete_in_batches(done, batch_size) + delete_in_batches(attempts, batch_size)


register_purger("deliveries", _purge_deliveries)
