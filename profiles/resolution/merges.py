"""Profile merges and their undo, and the review queue of merges a rule forbade.

Merge rules: the oldest profile survives; two different user ids never merge automatically; an
anonymous or device id seen with more than CDPHUB_SHARED_ID_MAX_USERS user ids is no merge key.
Such cases become a MergeConflict for a person to approve (merge) or reject (keep apart). What
other apps keep about a profile follows a merge through the merge-followers registry."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from cdphub.audit import audit_record
from cdphub.errors import DomainError
from cdphub.sql import execute, query
from profiles.models import Event, Identity, MergeConflict, Profile, ProfileMerge
from profiles.resolution import followers


class MergeRefused(DomainError):
    """A merge or undo that cannot be done; the message says why."""


def profiles_lock(profile_ids: list[int]) -> dict[int, int | None]:
    """Row locks on profiles, in id order (so two transactions never wait on each other in a
    cycle); returns each profile's merged_into id."""
    rows = query(
        f"SELECT id, merged_into_id FROM {Profile._meta.db_table} WHERE id = ANY(%b::bigint[]) "  # noqa: S608 - table names from model metadata; values are parameters
        "ORDER BY id FOR NO KEY UPDATE",
        [sorted(set(profile_ids))],
    )
    return dict(rows)


def _traits_merge(survivor: Profile, merged: Profile) -> dict:
    """Traits of the merged profile that are newer (or missing) win; returns what they replaced."""
    replaced = {}
    for key, value in (merged.traits or {}).items():
        mine = (survivor.trait_timestamps or {}).get(key, {}).get("at", "")
        theirs = (merged.trait_timestamps or {}).get(key, {}).get("at", "")
        if key in survivor.traits and mine >= theirs:
            continue
        replaced[key] = {
            "had": key in survivor.traits,
            "old": survivor.traits.get(key),
            "old_at": (survivor.trait_timestamps or {}).get(key),
            "new": value,
        }
        survivor.traits[key] = value
        if key in (merged.trait_timestamps or {}):
            survivor.trait_timestamps[key] = merged.trait_timestamps[key]
    return replaced


@transaction.atomic
def profile_merge(*, survivor_id: int, merged_id: int, reason: str, merged_by=None) -> ProfileMerge:
    """Move everything of ``merged`` to ``survivor`` and keep an audit row listing what moved, so
    the merge can be undone. The merged profile stays, pointing to the survivor."""
    if survivor_id == merged_id:
        raise MergeRefused("a profile cannot be merged into itself")
    merged_into = profiles_lock([survivor_id, merged_id])
    if len(merged_into) != 2:
        raise MergeRefused("one of the profiles does not exist")
    if merged_into[survivor_id] or merged_into[merged_id]:
        raise MergeRefused("one of the profiles was already merged into another profile")
    survivor = Profile.objects.get(pk=survivor_id)
    merged = Profile.objects.get(pk=merged_id)
    moved: dict = {}
    for follower in followers.followers():
        moved.update(follower.merge(survivor_id, merged_id))
    moved["traits_replaced"] = _traits_merge(survivor, merged)
    survivor.first_seen_at = min(
        (t for t in (survivor.first_seen_at, merged.first_seen_at) if t), default=None
    )
    survivor.last_seen_at = max(
        (t for t in (survivor.last_seen_at, merged.last_seen_at) if t), default=None
    )
    survivor.save(
        update_fields=["traits", "trait_timestamps", "first_seen_at", "last_seen_at", "updated_at"]
    )
    Profile.objects.filter(pk=merged_id).update(
        merged_into_id=survivor_id, updated_at=timezone.now()
    )
    merge = ProfileMerge.objects.create(
        survivor_id=survivor_id,
        merged_id=merged_id,
        reason=reason[:255],
        moved=moved,
        merged_by=merged_by if getattr(merged_by, "pk", None) else None,
    )
    audit_record(
        actor=merged_by,
        action="profile.merge",
        obj=Profile(pk=survivor_id),
        note=f"profile #{merged_id} merged in (merge #{merge.pk})",
    )
    return merge


@transaction.atomic
def profiles_merge_manual(*, profile_ids: list[int], merged_by=None) -> list[ProfileMerge]:
    """A person's decision: merge these profiles (whatever their user ids) into the oldest."""
    from profiles.selectors import profile_resolve

    resolved = sorted({p.pk for p in (profile_resolve(pid) for pid in profile_ids) if p})
    if len(resolved) < 2:
        raise MergeRefused("give at least two different, existing profiles", field="profile_ids")
    survivor_id, *others = resolved
    return [
        profile_merge(
            survivor_id=survivor_id, merged_id=other, reason="manual merge", merged_by=merged_by
        )
        for other in others
    ]


# An event belongs where its strongest id lives: its user id if it had one, else its anonymous id.
LATER_EVENTS_SQL = f"""
    UPDATE {Event._meta.db_table} e SET profile_id = %b::bigint
    FROM {Identity._meta.db_table} i
    WHERE e.profile_id = %b::bigint
      AND i.profile_id = %b::bigint
      AND (
        (e.user_id <> '' AND i.kind = 'user_id' AND i.value = e.user_id)
        OR (e.user_id = '' AND e.anonymous_id <> ''
            AND i.kind = 'anonymous_id' AND i.value = e.anonymous_id)
      )
"""  # noqa: S608 - table names from model metadata


def _later_events_move_back(survivor_id: int, merged_id: int) -> int:
    """Events that arrived after the merge through an id that now goes back to the merged
    profile (a visit with only that person's anonymous id, say) follow it; events that carried
    the survivor's user id stay."""
    return execute(LATER_EVENTS_SQL, [merged_id, survivor_id, merged_id])


@transaction.atomic
def profile_merge_undo(*, merge: ProfileMerge, undone_by=None) -> ProfileMerge:
    """Split a merge from its audit row: the rows it moved go back to the merged profile (those
    still on the survivor), replaced consent states and traits get their old values back.
    Events that arrived after the merge go with the profile that owns their user id (or, without
    one, their anonymous id) once the identities are back where they were."""
    merge = ProfileMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at:
        raise MergeRefused("this merge was already undone")
    merged_into = profiles_lock([merge.survivor_id, merge.merged_id])
    if merged_into.get(merge.merged_id) != merge.survivor_id:
        raise MergeRefused("the merged profile no longer points to the survivor")
    if merged_into.get(merge.survivor_id):
        raise MergeRefused("the survivor was merged again since: undo that merge first")
    moved = merge.moved or {}
    for follower in followers.followers():
        follower.undo(moved, merge.survivor_id, merge.merged_id)
    _later_events_move_back(merge.survivor_id, merge.merged_id)
    survivor = Profile.objects.get(pk=merge.survivor_id)
    for key, change in moved.get("traits_replaced", {}).items():
        if survivor.traits.get(key) != change["new"]:
            continue  # changed since the merge: the newer value stays
        if change["had"]:
            survivor.traits[key] = change["old"]
            survivor.trait_timestamps[key] = change["old_at"]
        else:
            survivor.traits.pop(key, None)
            survivor.trait_timestamps.pop(key, None)
    survivor.save(update_fields=["traits", "trait_timestamps", "updated_at"])
    Profile.objects.filter(pk=merge.merged_id).update(merged_into=None, updated_at=timezone.now())
    merge.undone_at = timezone.now()
    merge.save(update_fields=["undone_at"])
    audit_record(
        actor=undone_by,
        action="profile_merge.undo",
        obj=merge,
        note=f"profile #{merge.merged_id} split from profile #{merge.survivor_id}",
    )
    MergeConflict.objects.filter(merge=merge).update(
        status=MergeConflict.Status.KEPT_APART, decided_by=undone_by, decided_at=merge.undone_at
    )
    return merge


# --- The review queue -------------------------------------------------------------------------


@transaction.atomic
def merge_conflict_approve(*, conflict: MergeConflict, decided_by=None) -> MergeConflict:
    """Approve: merge the two profiles (the oldest survives)."""
    conflict = MergeConflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status != MergeConflict.Status.OPEN:
        raise MergeRefused("this conflict was already decided")
    merges = profiles_merge_manual(
        profile_ids=[conflict.profile_id, conflict.other_profile_id], merged_by=decided_by
    )
    conflict.status = MergeConflict.Status.MERGED
    conflict.merge = merges[0]
    conflict.decided_by = decided_by if getattr(decided_by, "pk", None) else None
    conflict.decided_at = timezone.now()
    conflict.save(update_fields=["status", "merge", "decided_by", "decided_at"])
    audit_record(actor=decided_by, action="merge_conflict.approve", obj=conflict)
    return conflict


@transaction.atomic
def merge_conflict_reject(*, conflict: MergeConflict, decided_by=None) -> MergeConflict:
    """Reject: keep the profiles apart; the pair is not raised again."""
    conflict = MergeConflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status != MergeConflict.Status.OPEN:
        raise MergeRefused("this conflict was already decided")
    conflict.status = MergeConflict.Status.KEPT_APART
    conflict.decided_by = decided_by if getattr(decided_by, "pk", None) else None
    conflict.decided_at = timezone.now()
    conflict.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(actor=decided_by, action="merge_conflict.reject", obj=conflict)
    return conflict
