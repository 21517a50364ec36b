"""Every relation a CRM serializer accepts offers only the records the caller sees."""

from __future__ import annotations

import inspect

import pytest
from rest_framework.relations import ManyRelatedField, RelatedField
from rest_framework.serializers import BaseSerializer

from crm import serializers
from crm.selectors import VISIBILITY_RULES

pytestmark = pytest.mark.django_db


def crm_serializers() -> list[type[BaseSerializer]]:
    return [
        cls
        for _, cls in inspect.getmembers(serializers, inspect.isclass)
        if issubclass(cls, BaseSerializer) and cls.__module__ == serializers.__name__
    ]


def related_querysets(serializer: BaseSerializer):
    for name, field in serializer.fields.items():
        relation = field.child_relation if isinstance(field, ManyRelatedField) else field
        if isinstance(relation, RelatedField) and relation.queryset is not None:
            yield f"{type(serializer).__name__}.{name}", relation.get_queryset()


def test_every_relation_to_a_crm_record_offers_only_visible_records(rf, sales_org, hidden_records):
    # Given a person of team North writing through the API
    request = rf.post("/")
    request.user = sales_org.me
    checked = []

    for serializer_class in crm_serializers():
        serializer = serializer_class(context={"request": request})
        for label, queryset in related_querysets(serializer):
            if queryset.model not in VISIBILITY_RULES:
                continue
            hidden = hidden_records[queryset.model]
            assert not queryset.filter(pk=hidden.pk).exists(), f"{label} reaches a hidden record"
            checked.append(label)

    assert {"DealSerializer.contact", "ActivitySerializer.deal", "TicketSerializer.company"} <= set(
        checked
    )


def test_without_a_request_no_crm_record_is_reachable(sales_org):
    serializer = serializers.DealSerializer()

    assert not serializer.fields["contact"].get_queryset().exists()
