import django_filters
from rest_framework.exceptions import PermissionDenied

from cdphub.pii import can_view_pii, looks_personal
from profiles.models import (
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    RejectedMessage,
    Segment,
    Source,
)
from profiles.resolution.normalize import lookup_condition


class SourceFilter(django_filters.FilterSet):
    class Meta:
        model = Source
        fields = {"kind": ["exact"], "is_active": ["exact"], "name": ["exact", "icontains"]}


class ProfileFilter(django_filters.FilterSet):
    identity = django_filters.CharFilter(
        method="filter_identity", label="Normalised identifier value (e-mail, phone, user id...)"
    )
    merged = django_filters.BooleanFilter(
        field_name="merged_into", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Profile
        fields = {
            "last_seen_at": ["gte", "lte"],
            "first_seen_at": ["gte", "lte"],
            "created_at": ["gte", "lte"],
        }

    def filter_identity(self, queryset, name, value):
        # The admin's search: any form of the value, through the (kind, value) index.
        refuse_personal_lookup(self.request, value)
        owners = Identity.objects.filter(lookup_condition(value)).values("profile_id")
        return queryset.filter(pk__in=owners)


class IdentityFilter(django_filters.FilterSet):
    class Meta:
        model = Identity
        fields = {"kind": ["exact"], "value": ["exact"], "profile": ["exact"], "source": ["exact"]}

    def filter_queryset(self, queryset):
        value = self.form.cleaned_data.get("value")
        kind = self.form.cleaned_data.get("kind")
        if value:
            refuse_personal_lookup(self.request, value, personal=kind in Identity.PII_KINDS)
        return super().filter_queryset(queryset)


def refuse_personal_lookup(request, value: str, *, personal: bool = False) -> None:
    """Looking a profile up by an e-mail or phone answers whether that person is known: not
    for callers who may not see personal data (whatever the answer, so the refusal tells
    nothing either)."""
    if request is None or can_view_pii(request.user, request.auth):
        return
    if personal or looks_personal(value):
        raise PermissionDenied(
            "looking up by an e-mail address, phone number or other personal identifier needs "
            "personal data access (pii:read)"
        )


class EventFilter(django_filters.FilterSet):
    class Meta:
        model = Event
        fields = {
            "profile": ["exact"],
            "source": ["exact"],
            "type": ["exact"],
            "name": ["exact"],
            "timestamp": ["gte", "lt"],
        }


class SegmentFilter(django_filters.FilterSet):
    class Meta:
        model = Segment
        fields = {"kind": ["exact"], "name": ["exact", "icontains"]}


class ProfileMergeFilter(django_filters.FilterSet):
    profile = django_filters.NumberFilter(method="filter_profile", label="Survivor or merged id")

    class Meta:
        model = ProfileMerge
        fields = ["survivor", "merged"]

    def filter_profile(self, queryset, name, value):
        return queryset.filter(survivor_id=value) | queryset.filter(merged_id=value)


class MergeConflictFilter(django_filters.FilterSet):
    class Meta:
        model = MergeConflict
        fields = ["status", "identifier_kind", "profile", "other_profile"]


class RejectedMessageFilter(django_filters.FilterSet):
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")

    class Meta:
        model = RejectedMessage
        fields = ["source", "status", "type"]
