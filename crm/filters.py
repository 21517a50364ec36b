import django_filters

from crm.models import Activity, Company, Contact, Deal, Pipeline, Stage, Tag, Task, Ticket
from profiles.filters import refuse_personal_lookup


class TagFilter(django_filters.FilterSet):
    class Meta:
        model = Tag
        fields = {"name": ["exact", "icontains"]}


class CompanyFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__name", label="Tag name", distinct=True)

    class Meta:
        model = Company
        fields = {
            "name": ["exact", "icontains"],
            "domain": ["exact"],
            "industry": ["exact"],
            "size": ["exact"],
            "country": ["exact"],
            "owner": ["exact", "isnull"],
            "updated_at": ["gte", "lte"],
        }


class ContactFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__name", label="Tag name", distinct=True)
    email = django_filters.CharFilter(method="filter_email", label="E-mail (any case)")

    class Meta:
        model = Contact
        fields = {
            "lifecycle_stage": ["exact", "in"],
            "owner": ["exact", "isnull"],
            "company": ["exact"],
            "profile": ["exact"],
            "external_id": ["exact"],
            "country": ["exact"],
            "updated_at": ["gte", "lte"],
            "created_at": ["gte", "lte"],
        }

    def filter_email(self, queryset, name, value):
        refuse_personal_lookup(self.request, value, personal=True)
        return queryset.filter(email=value.strip().lower())


class PipelineFilter(django_filters.FilterSet):
    class Meta:
        model = Pipeline
        fields = {"name": ["exact", "icontains"]}


class StageFilter(django_filters.FilterSet):
    class Meta:
        model = Stage
        fields = {"pipeline": ["exact"], "is_won": ["exact"], "is_lost": ["exact"]}


class DealFilter(django_filters.FilterSet):
    class Meta:
        model = Deal
        fields = {
            "pipeline": ["exact"],
            "stage": ["exact"],
            "status": ["exact"],
            "owner": ["exact", "isnull"],
            "company": ["exact"],
            "contact": ["exact"],
            "currency": ["exact"],
            "amount": ["gte", "lte"],
            "expected_close_date": ["gte", "lte"],
        }


class ActivityFilter(django_filters.FilterSet):
    done = django_filters.BooleanFilter(field_name="done_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Activity
        fields = {
            "kind": ["exact"],
            "contact": ["exact"],
            "deal": ["exact"],
            "company": ["exact"],
            "owner": ["exact"],
            "due_at": ["gte", "lte"],
        }


class TicketFilter(django_filters.FilterSet):
    class Meta:
        model = Ticket
        fields = {
            "status": ["exact", "in"],
            "priority": ["exact"],
            "channel": ["exact"],
            "contact": ["exact"],
            "company": ["exact"],
            "owner": ["exact", "isnull"],
        }


class TaskFilter(django_filters.FilterSet):
    done = django_filters.BooleanFilter(field_name="done_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Task
        fields = {
            "priority": ["exact"],
            "contact": ["exact"],
            "deal": ["exact"],
            "owner": ["exact"],
            "due_at": ["gte", "lte"],
        }
