"""Tags, companies and contacts."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from cdphub.admin_mixins import ReadableModelAdmin
from cdphub.pii import can_view_pii, mask_value
from consent.selectors import marketing_consents
from crm import services
from crm.accounts import ACTIVE_DAYS, with_account_figures
from crm.admin.actions import (
    ContactActionForm,
    TaggableActionForm,
    add_tag,
    assign_owner,
    change_lifecycle,
)
from crm.admin.customfields import CustomFieldsAdminMixin
from crm.admin.visibility import (
    SafeExportMixin,
    VisibleLinksAdminMixin,
    VisibleRecordsAdminMixin,
    VisibleRecordsInlineMixin,
    visible_count,
)
from crm.admin.work import RecordPageMixin, activity_buttons
from crm.models import (
    AccountMember,
    AccountSuggestion,
    Company,
    Contact,
    Deal,
    Tag,
)
from crm.resources import CompanyResource, ContactResource

# --- Tags, companies, contacts -----------------------------------------------------------------


@admin.register(Tag)
class TagAdmin(VisibleLinksAdminMixin, ReadableModelAdmin):
    list_display = ["name", "contact_count", "created_at"]
    search_fields = ["name"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                contact_total=Count("contacts", **visible_count(request, Contact, "contacts__"))
            )
        )

    @admin.display(description="contacts", ordering="contact_total")
    def contact_count(self, tag):
        return tag.contact_total


class MaskedContactFormSet(BaseInlineFormSet):
    """Marks the contacts so their names are masked where the inline shows them."""

    def get_queryset(self):
        contacts = super().get_queryset()
        for contact in contacts:
            contact.pii_masked = True
        return contacts


class ContactSummaryInline(VisibleRecordsInlineMixin, admin.TabularInline):
    """Read-only list of contacts (names masked for roles without PII) with links to edit them."""

    model = Contact
    extra = 0
    show_change_link = True
    can_delete = False
    verbose_name_plural = "contacts"
    extra_columns: list[str] = ["job_title", "lifecycle_stage"]

    def has_add_permission(self, request, obj=None):
        return False  # contacts are added on their own page, through the contact service

    def get_formset(self, request, obj=None, **kwargs):
        if not can_view_pii(request.user):
            kwargs["formset"] = MaskedContactFormSet
        return super().get_formset(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if can_view_pii(request.user):
            return ["first_name", "last_name", "email", "phone", *self.extra_columns]
        return ["masked_name", *self.extra_columns]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="name")
    def masked_name(self, contact):
        return mask_value(contact.full_name)


class CompanyContactInline(ContactSummaryInline):
    fk_name = "company"


class AccountMemberInline(admin.TabularInline):
    """The people of the account (profiles that made a group call with its group id), latest
    first: written by processing, read here."""

    model = AccountMember
    extra = 0
    can_delete = False
    fields = ["person", "first_seen_at", "last_seen_at"]
    readonly_fields = fields
    verbose_name_plural = "people at this account (from group calls)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="profile")
    def person(self, member):
        return format_html(
            '<a href="{}">profile #{}</a>',
            reverse("admin:profiles_profile_change", args=[member.profile_id]),
            member.profile_id,
        )


@admin.register(Company)
class CompanyAdmin(
    CustomFieldsAdminMixin,
    RecordPageMixin,
    VisibleRecordsAdminMixin,
    SafeExportMixin,
    ReadableModelAdmin,
):
    resource_classes = [CompanyResource]
    list_display = ["name", "domain", "industry", "size", "country", "owner", "updated_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), "size", "country", "industry"]
    search_fields = ["name", "domain", "=group_id"]
    list_select_related = ["owner"]
    autocomplete_fields = ["tags"]
    readonly_fields = [
        "log_activity",
        "group_traits",
        "account_figures",
        "suggested_companies",
        "created_at",
        "updated_at",
    ]
    inlines = [CompanyContactInline, AccountMemberInline]

    @admin.display(description="log")
    def log_activity(self, company):
        if company.pk is None:
            return "-"
        page = reverse("admin:crm_company_change", args=[company.pk])
        return activity_buttons(page, company=company.pk)

    @admin.display(description="may be the same as")
    def suggested_companies(self, company):
        """How many existing companies may be this account (their domain, or their contacts'
        e-mails, match its website), linking to the suggestions page, which shows those the
        user may see and where they are accepted or dismissed."""
        if company.pk is None:
            return "-"
        count = company.suggestions.filter(status=AccountSuggestion.Status.OPEN).count()
        if not count:
            return "-"
        return format_html(
            '<a href="{}?account__id__exact={}&status__exact=open">{} open suggestion(s)</a>',
            reverse("admin:crm_accountsuggestion_changelist"),
            company.pk,
            count,
        )

    @admin.display(description="account")
    def account_figures(self, company):
        if company.pk is None:
            return "-"
        figures = with_account_figures(Company.objects.filter(pk=company.pk)).get()
        last = figures.account_last_activity_at
        return format_html(
            "{} people ({} seen in the last {} days); their lifetime value {}; last seen {}",
            figures.account_people,
            figures.account_active_people_30d,
            ACTIVE_DAYS,
            figures.account_revenue if figures.account_revenue is not None else 0,
            f"{last:%Y-%m-%d %H:%M}" if last else "never",
        )

    action_form = TaggableActionForm
    actions = [assign_owner, add_tag]


class ContactAdminForm(forms.ModelForm):
    """Identifiers are normalised and the suppression list checked before saving, so a bad
    e-mail or phone shows next to its field instead of failing the save."""

    def clean(self):
        cleaned = super().clean()
        if "email" not in self.fields:
            return cleaned  # a role without PII access cannot change identifiers
        try:
            email, phone = services.contact_identifiers_normalize(
                email=cleaned.get("email", ""), phone=cleaned.get("phone", "")
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field, errors)
            return cleaned
        cleaned["email"], cleaned["phone"] = email, phone
        if self.instance.pk is None and services.contact_is_suppressed(email, phone):
            raise ValidationError(
                "This person was erased on request (suppression list); they cannot be re-created."
            )
        return cleaned


CONSENT_WORDS = {
    "granted": "yes (consent given)",
    "denied": "no (refused)",
    "withdrawn": "no (withdrawn)",
    "unknown": "no (no consent recorded)",
}


@admin.register(Contact)
class ContactAdmin(
    CustomFieldsAdminMixin,
    RecordPageMixin,
    VisibleRecordsAdminMixin,
    SafeExportMixin,
    ReadableModelAdmin,
):
    resource_classes = [ContactResource]
    form = ContactAdminForm
    label_is_personal = True  # a contact is named by its full name
    # Fits a 1440 px screen with the filters beside it; phone and dates are on the contact's
    # page (and the phone is searchable).
    list_display = [
        "id",
        "first_name",
        "last_name",
        "email",
        "company",
        "lifecycle_stage",
        "owner",
    ]
    list_display_links = ["id"]
    list_filter = [
        "lifecycle_stage",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "tags",
        "country",
    ]
    search_fields = ["first_name", "last_name", "email", "=phone", "=external_id", "company__name"]
    list_select_related = ["company", "owner"]
    raw_id_fields = ["profile"]
    autocomplete_fields = ["company", "tags"]
    readonly_fields = [
        "profile",
        "created_at",
        "updated_at",
        "may_contact",
        "cdp_profile",
        "log_activity",
    ]
    fieldsets = [
        (None, {"fields": ["first_name", "last_name", "email", "phone", "company", "job_title"]}),
        ("Reach them", {"fields": ["may_contact", "log_activity"]}),
        ("Sales", {"fields": ["lifecycle_stage", "owner", "tags", "external_id"]}),
        ("Address", {"fields": ["street", "postal_code", "city", "country", "date_of_birth"]}),
        ("Links", {"fields": ["cdp_profile", "profile", "created_at", "updated_at"]}),
    ]

    @admin.display(description="may we call, e-mail or text them?")
    def may_contact(self, contact):
        """Their consent per marketing purpose, from the CDP profile the contact is linked to."""
        if contact.pk is None:
            return "-"
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td class="consent-{}">{}</td></tr>',
            (
                (name, status, CONSENT_WORDS.get(status, status))
                for name, status in marketing_consents(contact.profile_id)
            ),
        )
        return format_html("<table>{}</table>", rows)

    @admin.display(description="CDP profile")
    def cdp_profile(self, contact):
        if not contact.profile_id:
            return "Not linked yet (linked when the contact is saved or imported)."
        url = reverse("admin:profiles_profile_change", args=[contact.profile_id])
        return format_html('<a href="{}">Open the 360° profile #{}</a>', url, contact.profile_id)

    @admin.display(description="log")
    def log_activity(self, contact):
        """One click to a small activity form: the kind chosen, linked to the contact, its
        company and its open deal, owned by whoever logs it."""
        if contact.pk is None:
            return "-"
        return activity_buttons(
            reverse("admin:crm_contact_change", args=[contact.pk]),
            contact=contact.pk,
            company=contact.company_id,
            deal=contact.deals.filter(status=Deal.Status.OPEN).values_list("pk", flat=True).first(),
        )

    pii_fields = Contact.PII_FIELDS
    action_form = ContactActionForm
    actions = [assign_owner, add_tag, change_lifecycle]

    def get_object(self, request, object_id, from_field=None):
        contact = super().get_object(request, object_id, from_field)
        if contact is not None and not self.may_view_pii(request):
            contact.pii_masked = True  # the page title and breadcrumbs show no name
        return contact

    def save_model(self, request, obj, form, change):
        services.contact_save(contact=obj)
        if warning := services.phone_warning(obj.phone):
            self.message_user(request, f"Saved, but {warning}.", messages.WARNING)
