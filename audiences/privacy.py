"""What the DMP holds about a known person: the visitors linked to their profile."""

from __future__ import annotations

from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit
from consent import registry
from consent.registry import delete_rows

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
