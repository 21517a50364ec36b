"""What the DMP holds about a known person: the visitors linked to their profile."""

from __future__ import annotations

from audiences.models import (
    Audience,
    Category,
    DataProvider,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
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
registry.register_not_personal(
    ProviderFileImport, "a provider file's job record; its error lines hold cookie ids, no person"
)


def _purge_visitor_data(cutoff, batch_size: int) -> int:
    """Trait hits and visitors past their own (per provider) expiry, then visitors not seen
    within the policy's retention period, with what hangs off them."""
    from audiences.services import visitor_data_purge

    expired = sum(visitor_data_purge(batch_size=batch_size).values())
    stale = Visitor.objects.filter(last_seen_at__lt=cutoff)
    stale_hits = delete_in_batches(VisitorTraitHit.objects.filter(visitor__in=stale), batch_size)
    return expired + stale_hits + delete_in_batches(stale, batch_size)


register_purger("visitor_data", _purge_visitor_data)
