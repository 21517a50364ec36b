"""The review queues: likely duplicate contacts (merge or dismiss), and existing companies an
account from group calls may be (accept or dismiss)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin
from crm import services
from crm.accounts import (
    SuggestionRefused,
    account_suggestion_accept,
    account_suggestion_dismiss,
)
from crm.admin.visibility import (
    VisibleRecordsAdminMixin,
)
from crm.models import (
    AccountSuggestion,
    ContactMerge,
    DuplicateCandidate,
)

# --- Duplicates ---------------------------------------------------------------------------------


@admin.register(DuplicateCandidate)
class DuplicateCandidateAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    """The review queue: merge a pair (the older contact survives) or mark it as distinct."""

    list_display = [
        "__str__",
        "contact_a",
        "contact_b",
        "score",
        "reason_list",
        "status",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["contact_a", "contact_b"]
    raw_id_fields = ["contact_a", "contact_b"]
    readonly_fields = ["contact_a", "contact_b", "score", "reasons", "status", "reviewed_at"]
    search_fields = ["=contact_a__id", "=contact_b__id"]
    actions = ["merge", "dismiss"]

    def get_list_display(self, request):
        allowed = self.may_view_pii(request)
        columns = super().get_list_display(request)
        return [
            contact_link(name, allowed) if name in ("contact_a", "contact_b") else name
            for name in columns
        ]

    def has_add_permission(self, request):
        return False  # the queue is filled by find_duplicates --save

    @admin.display(description="reasons")
    def reason_list(self, candidate):
        return ", ".join(candidate.reasons)

    @admin.action(description="Merge (the older contact survives)", permissions=["change"])
    def merge(self, request, queryset):
        merged = 0
        for candidate in queryset.filter(status=DuplicateCandidate.Status.OPEN):
            survivor, other = candidate.contact_a, candidate.contact_b  # a has the lower id
            services.contact_merge(survivor=survivor, merged=other, merged_by=request.user)
            merged += 1
        self.message_user(request, f"{merged} pair(s) merged.")

    @admin.action(description="Not duplicates", permissions=["change"])
    def dismiss(self, request, queryset):
        count = services.duplicates_dismiss(queryset=queryset, actor=request.user)
        self.message_user(request, f"{count} pair(s) dismissed.")


def contact_link(attribute: str, pii_allowed: bool):
    @admin.display(description="first contact" if attribute == "contact_a" else "second contact")
    def show(candidate):
        contact = getattr(candidate, attribute)
        if contact is None:
            return "-"
        label = str(contact) if pii_allowed else f"Contact {contact.pk}"
        url = reverse("admin:crm_contact_change", args=[contact.pk])
        return format_html('<a href="{}">{}</a>', url, label)

    return show


@admin.register(ContactMerge)
class ContactMergeAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    list_display = ["__str__", "survivor", "merged_by", "created_at"]
    list_select_related = ["survivor", "merged_by"]
    raw_id_fields = ["survivor"]
    readonly_fields = ["survivor", "merged_id", "merged_data", "moved", "merged_by", "created_at"]
    pii_json_fields = ("merged_data",)
    pii_fields = ("survivor",)
    search_fields = ["=merged_id", "=survivor__id"]

    def has_add_permission(self, request):
        return False


@admin.register(AccountSuggestion)
class AccountSuggestionAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    """Existing companies an account from group calls may be: accept (the company becomes the
    account, the one the calls made is deleted) or dismiss (not suggested again)."""

    list_display = ["account", "company", "domain", "reason", "status", "created_at"]
    list_filter = ["status"]
    list_select_related = ["account", "company"]
    search_fields = ["domain", "account__name", "company__name", "=account__group_id"]
    readonly_fields = [
        "account",
        "company",
        "domain",
        "reason",
        "status",
        "created_at",
        "decided_at",
        "decided_by",
    ]
    actions = ["accept", "dismiss"]

    def has_add_permission(self, request):
        return False  # made by processing, from group calls

    @admin.action(description="Accept: the company becomes the account", permissions=["change"])
    def accept(self, request, queryset):
        self.decide(request, queryset, account_suggestion_accept, "accepted")

    @admin.action(description="Dismiss: not the same organisation", permissions=["change"])
    def dismiss(self, request, queryset):
        self.decide(request, queryset, account_suggestion_dismiss, "dismissed")

    def decide(self, request, queryset, service, done: str) -> None:
        decided = 0
        for suggestion in queryset.select_related("account", "company").order_by("pk"):
            try:
                service(suggestion=suggestion, by=request.user)
            except SuggestionRefused as refused:
                self.message_user(request, f"{suggestion}: {refused}", messages.WARNING)
            else:
                decided += 1
        self.message_user(request, f"{decided} suggestion(s) {done}.")
