import django_filters

from crm.models import Activity, Company, Contact, Deal, Pipeline, Stage, Tag, Task, Ticket
from crm.reminders import DUE_CHOICES, tasks_due
from crm.selectors import VISIBILITY_RULES, visible_to
from profiles.filters import refuse_personal_lookup


class VisibleFilterSet(django_filters.FilterSet):
    """A filter on a linked CRM record (``?company=``, ``?contact=``, ``?deal=``) chooses
    among the records the caller sees: a hidden id is refused exactly like one that does not
    exist, instead of answering an empty list that tells it exists."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for filter_ in self.filters.values():
            choices = getattr(filter_, "queryset", None)
            if hasattr(choices, "model") and choices.model in VISIBILITY_RULES:
                user = getattr(self.request, "user", None)
                filter_.queryset = visible_to(user, choices) if user else choices.none()


class TagFilter(VisibleFilterSet):
    class Meta:
        model = Tag
        fields = {"name": ["exact", "icontains"]}


class CompanyFilter(VisibleFilterSet):
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


class ContactFilter(VisibleFilterSet):
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


class PipelineFilter(VisibleFilterSet):
    class Meta:
        model = Pipeline
        fields = {"name": ["exact", "icontains"]}


class StageFilter(VisibleFilterSet):
    class Meta:
        model = Stage
        fields = {"pipeline": ["exact"], "is_won": ["exact"], "is_lost": ["exact"]}


class DealFilter(VisibleFilterSet):
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


class ActivityFilter(VisibleFilterSet):
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


class TicketFilter(VisibleFilterSet):
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


class TaskFilter(VisibleFilterSet):
    done = django_filters.BooleanFilter(field_name="done_at", lookup_expr="isnull", exclude=True)
    mine = django_filters.BooleanFilter(method="mine_filter", help_text="Only the caller's tasks.")
    due = django_filters.ChoiceFilter(
        choices=list(DUE_CHOICES.items()),
        method="due_filter",
        help_text="Open tasks past their due time, due today (in the site's time zone), or "
        "all open ones.",
    )

    def mine_filter(self, queryset, name, value):
        user = self.request.user if self.request else None
        if value and getattr(user, "pk", None):
            return queryset.filter(owner=user)
        return queryset.none() if value else queryset

    def due_filter(self, queryset, name, value):
        return tasks_due(queryset, value)

    class Meta:
        model = Task
        fields = {
            "priority": ["exact"],
            "contact": ["exact"],
            "deal": ["exact"],
            "owner": ["exact"],
            "due_at": ["gte", "lte"],
        }
