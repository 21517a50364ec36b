"""Consent rows that follow a profile merge (see profiles.resolution.followers): the ledger, the
current states (the newer state per purpose wins), a processing restriction (GDPR Art. 18: a
restricted person stays restricted whichever profile survives) and the person's requests."""

from __future__ import annotations

from consent.models import ConsentRecord, ConsentState, DataSubjectRequest, ProcessingRestriction
from profiles.resolution import followers

followers.register(ConsentRecord, key="consent_records")
followers.register(DataSubjectRequest, key="data_subject_requests")


def states_merge(survivor_id: int, merged_id: int) -> dict:
    """States are unique per profile and purpose: the newer one wins, the replaced one is
    recorded for undo."""
    moved, replaced = [], []
    survivor_states = {s.purpose_id: s for s in ConsentState.objects.filter(profile_id=survivor_id)}
    for state in ConsentState.objects.filter(profile_id=merged_id):
        kept = survivor_states.get(state.purpose_id)
        if kept is None:
            moved.append(state.pk)
        elif state.updated_at > kept.updated_at:
            replaced.append(
                {
                    "id": kept.pk,
                    "status": kept.status,
                    "record_id": kept.record_id,
                    "updated_at": kept.updated_at.isoformat(),
                }
            )
            kept.status, kept.record_id, kept.updated_at = (
                state.status,
                state.record_id,
                state.updated_at,
            )
            kept.save(update_fields=["status", "record", "updated_at"])
    ConsentState.objects.filter(pk__in=moved).update(profile_id=survivor_id)
    return {"consent_states": moved, "consent_states_replaced": replaced}


def states_unmerge(record: dict, survivor_id: int, merged_id: int) -> None:
    moved = record.get("consent_states") or []
    ConsentState.objects.filter(pk__in=moved, profile_id=survivor_id).update(profile_id=merged_id)
    for old in record.get("consent_states_replaced") or []:
        ConsentState.objects.filter(pk=old["id"]).update(
            status=old["status"], record_id=old["record_id"], updated_at=old["updated_at"]
        )


def restriction_merge(survivor_id: int, merged_id: int) -> dict:
    """One restriction per profile: the merged one's moves unless the survivor has its own."""
    if ProcessingRestriction.objects.filter(profile_id=survivor_id).exists():
        return {"processing_restriction": []}
    moved = list(
        ProcessingRestriction.objects.filter(profile_id=merged_id).values_list("pk", flat=True)
    )
    ProcessingRestriction.objects.filter(pk__in=moved).update(profile_id=survivor_id)
    return {"processing_restriction": moved}


def restriction_unmerge(record: dict, survivor_id: int, merged_id: int) -> None:
    moved = record.get("processing_restriction") or []
    ProcessingRestriction.objects.filter(pk__in=moved, profile_id=survivor_id).update(
        profile_id=merged_id
    )


followers.register(ConsentState, merge=states_merge, undo=states_unmerge)
followers.register(ProcessingRestriction, merge=restriction_merge, undo=restriction_unmerge)
