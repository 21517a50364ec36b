from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audiences.models import Audience, Category
from tests.factories import (
    AudienceFactory,
    CategoryFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db


def test_visitor_key_is_unique_per_kind():
    VisitorFactory(key_kind="cookie", key="k1")
    VisitorFactory(key_kind="device", key="k1")  # another kind: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        VisitorFactory(key_kind="cookie", key="k1")


def test_one_hit_per_visitor_category_and_provider():
    hit = VisitorTraitHitFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        VisitorTraitHitFactory(visitor=hit.visitor, category=hit.category, provider=hit.provider)


@pytest.mark.parametrize("reach", [0, 101])
def test_reach_percent_is_a_percentage(reach):
    with pytest.raises(IntegrityError), transaction.atomic():
        AudienceFactory(reach_percent=reach)


def test_lookalike_needs_a_seed_segment():
    with pytest.raises(IntegrityError), transaction.atomic():
        AudienceFactory(kind=Audience.Kind.LOOKALIKE, seed_segment=None)


def test_category_parent_is_protected():
    parent = CategoryFactory(code="INT")
    CategoryFactory(code="INT-A", parent=parent, tier=2)
    with pytest.raises(Exception, match="protected"):
        parent.delete()


def test_category_tree_rules():
    parent = CategoryFactory(code="INT", kind="interest", tier=1)
    Category(code="INT-A", name="A", kind="interest", parent=parent, tier=2).full_clean()
    with pytest.raises(ValidationError) as wrong_tier:
        Category(code="INT-B", name="B", kind="interest", parent=parent, tier=1).full_clean()
    assert "tier" in wrong_tier.value.message_dict
    with pytest.raises(ValidationError) as top_tier:
        Category(code="TOP", name="T", kind="interest", tier=2).full_clean()
    assert "tier" in top_tier.value.message_dict


def test_deleting_a_visitor_deletes_its_hits():
    hit = VisitorTraitHitFactory(expires_at=timezone.now() + timedelta(days=1))
    hit.visitor.delete()
    assert not type(hit).objects.exists()
