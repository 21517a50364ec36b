import django_filters
from django.db.models import Q
from django.utils import timezone

from consent.models import (
    ConsentRecord,
    ConsentState,
    DataSubjectRequest,
    ProcessingActivity,
    Purpose,
    Suppression,
)

OPEN_STATUSES = ("received", "verified", "in_progress")


class PurposeFilter(django_filters.FilterSet):
    class Meta:
        model = Purpose
        fields = {"code": ["exact"], "is_marketing": ["exact"], "is_active": ["exact"]}


class ConsentRecordFilter(django_filters.FilterSet):
    purpose = django_filters.CharFilter(field_name="purpose__code", label="Purpose code")

    class Meta:
        model = ConsentRecord
        fields = {
            "profile": ["exact"],
            "status": ["exact"],
            "method": ["exact"],
            "occurred_at": ["gte", "lt"],
        }


class ConsentStateFilter(django_filters.FilterSet):
    purpose = django_filters.CharFilter(field_name="purpose__code", label="Purpose code")

    class Meta:
        model = ConsentState
        fields = {"profile": ["exact"], "status": ["exact"]}


class DataSubjectRequestFilter(django_filters.FilterSet):
    overdue = django_filters.BooleanFilter(method="filter_overdue", label="Open and past due")

    class Meta:
        model = DataSubjectRequest
        fields = {
            "kind": ["exact"],
            "status": ["exact"],
            "profile": ["exact"],
            "received_at": ["gte", "lt"],
        }

    def filter_overdue(self, queryset, name, value):
        overdue = Q(status__in=OPEN_STATUSES, due_at__lt=timezone.now())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)


class SuppressionFilter(django_filters.FilterSet):
    class Meta:
        model = Suppression
        fields = {"identifier_kind": ["exact"], "value_hash": ["exact"]}


class ProcessingActivityFilter(django_filters.FilterSet):
    class Meta:
        model = ProcessingActivity
        fields = {"lawful_basis": ["exact"], "name": ["exact", "icontains"]}
