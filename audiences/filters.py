import django_filters
from django.utils import timezone

from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit


class VisitorFilter(django_filters.FilterSet):
    linked = django_filters.BooleanFilter(
        field_name="profile", lookup_expr="isnull", exclude=True, label="Linked to a profile"
    )

    class Meta:
        model = Visitor
        fields = {
            "key": ["exact"],
            "key_kind": ["exact"],
            "country": ["exact"],
            "device_type": ["exact"],
            "profile": ["exact"],
            "last_seen_at": ["gte", "lte"],
            "expires_at": ["lte"],
        }


class DataProviderFilter(django_filters.FilterSet):
    class Meta:
        model = DataProvider
        fields = {"party": ["exact"], "is_active": ["exact"], "name": ["exact", "icontains"]}


class CategoryFilter(django_filters.FilterSet):
    parent_code = django_filters.CharFilter(field_name="parent__code")

    class Meta:
        model = Category
        fields = {
            "code": ["exact", "startswith"],
            "kind": ["exact"],
            "tier": ["exact"],
            "parent": ["exact"],
        }


class VisitorTraitHitFilter(django_filters.FilterSet):
    category_code = django_filters.CharFilter(field_name="category__code")
    active = django_filters.BooleanFilter(method="filter_active", label="Not expired yet")

    class Meta:
        model = VisitorTraitHit
        fields = {
            "visitor": ["exact"],
            "category": ["exact"],
            "provider": ["exact"],
            "observed_at": ["gte", "lte"],
        }

    def filter_active(self, queryset, name, value):
        now = timezone.now()
        return (
            queryset.filter(expires_at__gt=now) if value else queryset.filter(expires_at__lte=now)
        )


class AudienceFilter(django_filters.FilterSet):
    class Meta:
        model = Audience
        fields = {"kind": ["exact"], "name": ["exact", "icontains"], "seed_segment": ["exact"]}
