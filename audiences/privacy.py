"""What the DMP holds about a known person: the visitors linked to their profile."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit
from consent import registry
from consent.registry import delete_rows
from consent.retention import delete_in_batches, register_purger

registry.register(
    VisitorTraitHit,
    find=lambda subject: VisitorTraitHit.objects.filter(
        visitor__profile_id__in=subject.profile_ids
    ),
    erase=delete_rows,
    erase_order=20,
)
# A visitor linked to an erased person is removed entirely: its cookie id and categories
# describe that person's behaviour.
registry.register(
    Visitor,
    find=lambda subject: Visitor.objects.filter(profile_id__in=subject.profile_ids),
    erase=delete_rows,
    personal_fields=("key",),
    erase_order=30,
)
registry.register_not_personal(DataProvider, "data suppliers")
registry.register_not_personal(Category, "taxonomy")
registry.register_not_personal(Audience, "an audience's name and rule")


def _purge_visitor_data(cutoff, batch_size: int) -> int:
    """Trait hits past their own expiry, then visitors past theirs or not seen within the
    retention period (their remaining hits go with them)."""
    now = timezone.now()
    hits = delete_in_batches(VisitorTraitHit.objects.filter(expires_at__lt=now), batch_size)
    stale = Visitor.objects.filter(Q(expires_at__lt=now) | Q(last_seen_at__lt=cutoff))
    stale_hits = delete_in_batches(VisitorTraitHit.objects.filter(visitor__in=stale), batch_size)
    return hits + stale_hits + delete_in_batches(stale, batch_size)


register_purger("visitor_data", _purge_visitor_data)
