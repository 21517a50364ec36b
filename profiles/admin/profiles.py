"""The profile page (overview, manual merge, the paginated event timeline), identities and
events."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin, masked_name, presence_filter
from cdphub.pii import can_view_pii, mask_traits, mask_value
from profiles.eventstore import event_message_condition
from profiles.models import (
    Event,
    Identity,
    Profile,
)
from profiles.resolution.merges import (
    MergeRefused,
    profiles_merge_manual,
)
from profiles.resolution.normalize import lookup_candidates, lookup_condition
from profiles.selectors import (
    profile_overview,
    profile_resolve,
    profile_search_condition,
    profiles_similar,
    timeline_feed,
)
from profiles.services import profile_traits_edit
from profiles.templatetags.profile_tags import readable_table

TIMELINE_PAGE_SIZE = 50
LATEST_EVENTS = 20
FEED_TEMPLATE = "admin/profiles/profile/feed.html"


class TimelineFilterForm(forms.Form):
    type = forms.ChoiceField(choices=[("", "all types"), *Event.Type.choices], required=False)
    group = forms.ChoiceField(
        choices=[("day", "by day"), ("session", "by session")], required=False, label="Group"
    )
    name = forms.CharField(required=False, max_length=255, help_text="Exact event or page name.")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, events):
        data = self.cleaned_data
        if data.get("type"):
            events = events.filter(type=data["type"])
        if data.get("name"):
            events = events.filter(name=data["name"])
        tz = timezone.get_current_timezone()
        if data.get("since"):
            events = events.filter(timestamp__gte=datetime.combine(data["since"], time.min, tz))
        if data.get("until"):
            until = datetime.combine(data["until"], time.min, tz) + timedelta(days=1)
            events = events.filter(timestamp__lt=until)
        return events


@admin.register(Profile)
class ProfileAdmin(ReadableModelAdmin):
    list_display = ["id", "name", "email", "last_seen_at", "first_seen_at", "merged_into"]
    list_filter = [presence_filter("merged_into", "merged?", "merged into another", "active")]
    search_fields = ["id"]
    search_help_text = (
        "Search by name or part of an e-mail (3 letters or more), or by e-mail, phone, user id, "
        "anonymous id or profile id."
    )
    list_select_related = ["merged_into"]
    raw_id_fields = ["merged_into"]
    readonly_fields = [
        "given_traits",
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
        "latest_events",
    ]
    # Given traits are read as a table and changed by the explicit "Edit traits" action (with
    # an audit entry), not in a JSON box; computed traits and identities have their panels.
    fields = [
        "given_traits",
        "first_seen_at",
        "last_seen_at",
        "merged_into",
        "created_at",
        "updated_at",
        "latest_events",
    ]
    # Defined computed traits may take their values from personal properties.
    pii_json_fields = ("traits", "computed_traits")
    pii_displays = ("name", "email", "latest_events", "given_traits")

    @admin.display(description="given traits")
    def given_traits(self, profile, pii: bool):
        traits = profile.traits or {}
        shown = traits if pii else mask_traits(traits)
        table = readable_table(shown) if shown else "None yet."
        if profile.pk is None or not pii:
            return table
        url = reverse("admin:profiles_profile_traits", args=[profile.pk])
        return format_html('{}<p><a class="button" href="{}">Edit traits</a></p>', table, url)

    @admin.display(description="name")
    def name(self, profile, pii: bool):
        traits = profile.traits or {}
        name = traits.get("name") or " ".join(
            str(part) for part in (traits.get("firstName"), traits.get("lastName")) if part
        )
        return name if pii else mask_value(name)

    @admin.display(description="e-mail")
    def email(self, profile, pii: bool):
        value = (profile.traits or {}).get("email", "")
        return value if pii else mask_value(value)

    def get_search_results(self, request, queryset, search_term):
        """Identifiers through the identity index, names and parts of e-mails through the
        trigram index (``profile_search_condition``), never a scan of traits."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = profile_search_condition(term, personal=self.may_view_pii(request))
        return queryset.filter(condition), False

    def changelist_view(self, request, extra_context=None):
        """When a search finds nobody, the profiles with a name or e-mail most like it (for
        those who may see names)."""
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist and changelist.query and not changelist.result_count:
            pii = self.may_view_pii(request)
            similar = profiles_similar(changelist.query) if pii else []
            response.context_data["did_you_mean"] = [
                (profile.pk, profile.display_name) for profile in similar
            ]
        return response

    @admin.display(description="latest events")
    def latest_events(self, profile, pii: bool):
        events = profile.events.select_related("source").order_by("-timestamp", "-id")
        groups = timeline_feed(events[:LATEST_EVENTS], group_by="day", pii=pii)
        return render_to_string(FEED_TEMPLATE, {"groups": groups})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        profile = self.get_object(request, object_id) if object_id else None
        if profile is not None:
            pii = self.may_view_pii(request)
            overview = profile_overview(profile, pii=pii, user=request.user)
            extra_context = {**(extra_context or {}), "overview": overview}
        return super().changeform_view(request, object_id, form_url, extra_context)

    actions = ["merge_selected"]
    timeline_fields = ["event_timeline"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return [*fields, *self.timeline_fields] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.timeline_fields]

    @admin.display(description="timeline")
    def event_timeline(self, profile):
        url = reverse("admin:profiles_profile_timeline", args=[profile.pk])
        return format_html('<a href="{}">All events, filterable by type, name and date</a>', url)

    @admin.action(
        permissions=["change"], description="Merge the selected profiles (into the oldest)"
    )
    def merge_selected(self, request, queryset):
        try:
            merges = profiles_merge_manual(
                profile_ids=list(queryset.values_list("pk", flat=True)), merged_by=request.user
            )
        except MergeRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        survivor = merges[0].survivor_id
        self.message_user(
            request, f"{len(merges)} profiles merged into profile {survivor}.", messages.SUCCESS
        )

    def get_urls(self):
        timeline = path(
            "<int:profile_id>/timeline/",
            self.admin_site.admin_view(self.timeline_view),
            name="profiles_profile_timeline",
        )
        traits = path(
            "<int:profile_id>/traits/",
            self.admin_site.admin_view(self.traits_view),
            name="profiles_profile_traits",
        )
        merge = path(
            "<int:profile_id>/merge/",
            self.admin_site.admin_view(self.merge_view),
            name="profiles_profile_merge",
        )
        return [timeline, traits, merge, *super().get_urls()]

    def merge_view(self, request, profile_id: int):
        """Merge with...: find the other profile (by name, part of an e-mail or an identifier),
        compare the two side by side, then merge them (into the older, as every manual merge)."""
        profile = profile_resolve(profile_id)
        if profile is None:
            raise Http404("No such profile.")
        if not self.has_change_permission(request, profile):
            raise PermissionDenied
        if profile.pk != profile_id:
            url = reverse("admin:profiles_profile_merge", args=[profile.pk])
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}")
        pii = self.may_view_pii(request)
        other = merge_partner(request, profile)
        if request.method == "POST" and other is not None:
            try:
                merge, *_ = profiles_merge_manual(
                    profile_ids=[profile.pk, other.pk], merged_by=request.user
                )
            except MergeRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Profile {merge.merged_id} merged into profile {merge.survivor_id}. The merge "
                    "can be undone (split) from its row in Merges.",
                    messages.SUCCESS,
                )
                url = reverse("admin:profiles_profile_change", args=[merge.survivor_id])
                return HttpResponseRedirect(url)
        term = request.GET.get("q", "").strip()
        candidates = suggestions = []
        if term and other is None:
            others = Profile.objects.filter(merged_into__isnull=True).exclude(pk=profile.pk)
            found = others.filter(profile_search_condition(term, personal=pii))
            candidates = [merge_candidate(p, pii) for p in found.order_by("-id")[:20]]
            if not candidates and pii:
                similar = profiles_similar(term, limit=6)
                suggestions = [merge_candidate(p, pii) for p in similar if p.pk != profile.pk]
        comparison = None
        if other is not None:
            older, newer = sorted([profile, other], key=lambda p: p.pk)
            comparison = [merge_side(request, p, pii) for p in (older, newer)]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Merge {profile.display_name if pii else profile} with another profile",
            "profile": profile,
            "other": other,
            "term": term,
            "candidates": candidates,
            "suggestions": suggestions,
            "comparison": comparison,
        }
        return TemplateResponse(request, "admin/profiles/profile/merge.html", context)

    def traits_view(self, request, profile_id: int):
        """Edit the given traits, as an explicit action: for those who may change profiles and
        see personal data; recorded in the audit trail (the keys changed)."""
        profile = get_object_or_404(Profile, pk=profile_id)
        if not (self.has_change_permission(request, profile) and self.may_view_pii(request)):
            raise PermissionDenied
        form = TraitsForm(request.POST or None, initial={"traits": profile.traits or {}})
        if request.method == "POST" and form.is_valid():
            try:
                changed = profile_traits_edit(
                    profile=profile, traits=form.cleaned_data["traits"], actor=request.user
                )
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error("traits", message)
            else:
                words = f"changed: {', '.join(changed)}" if changed else "nothing changed"
                self.message_user(request, f"Traits saved ({words}).", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:profiles_profile_change", args=[profile.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Edit the traits of {profile.display_name or profile}",
            "profile": profile,
            "form": form,
        }
        return TemplateResponse(request, "admin/profiles/profile/traits.html", context)

    def timeline_view(self, request, profile_id: int):
        profile = profile_resolve(profile_id)
        if profile is None or not self.has_view_permission(request, profile):
            raise Http404("No such profile.")
        if profile.pk != profile_id:
            url = reverse("admin:profiles_profile_timeline", args=[profile.pk])
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}")
        form = TimelineFilterForm(request.GET or None)
        events = profile.events.select_related("source").order_by("-timestamp", "-id")
        if form.is_valid():
            events = form.filter(events)
        page = Paginator(events, TIMELINE_PAGE_SIZE).get_page(request.GET.get("page"))
        pii = can_view_pii(request.user)
        group_by = form.cleaned_data.get("group") if form.is_valid() else ""
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Timeline of {profile if not pii else profile.display_name}",
            "profile": profile,
            "identities": [
                (
                    i.get_kind_display(),
                    i.value if pii or not i.is_personal else mask_value(i.value),
                )
                for i in profile.identities.all()[:50]
            ],
            "form": form,
            "page": page,
            "groups": timeline_feed(page.object_list, group_by=group_by or "day", pii=pii),
            "filtered": any(request.GET.get(name) for name in ("type", "name", "since", "until")),
            "filter_query": query.urlencode(),
        }
        return TemplateResponse(request, "admin/profiles/profile/timeline.html", context)


def merge_partner(request, profile: Profile) -> Profile | None:
    """The profile chosen to merge with (``with`` in the query or the form), followed to its
    survivor; None when none is chosen, or it is this very profile."""
    chosen = request.POST.get("with") or request.GET.get("with") or ""
    if not chosen.isdigit() or len(chosen) > 18:
        return None
    other = profile_resolve(int(chosen))
    return other if other is not None and other.pk != profile.pk else None


def merge_candidate(profile: Profile, pii: bool) -> dict:
    traits = profile.traits or {}
    return {
        "pk": profile.pk,
        "name": profile.display_name if pii else mask_value(profile.display_name),
        "email": traits.get("email", "") if pii else mask_value(traits.get("email", "")),
        "last_seen_at": profile.last_seen_at,
    }


def merge_side(request, profile: Profile, pii: bool) -> dict:
    """One column of the side-by-side comparison: the profile page's overview and its traits."""
    traits = profile.traits or {}
    shown = traits if pii else mask_traits(traits)
    return {
        "profile": profile,
        "overview": profile_overview(profile, pii=pii, user=request.user),
        "traits": readable_table(shown) if shown else "None.",
    }


class TraitsForm(forms.Form):
    traits = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 16, "cols": 80}),
        help_text='A JSON object: {"firstName": "Anna", "address": {"city": "Utrecht"}}. An '
        "e-mail or phone is normalised; an invalid one is refused.",
    )

    def clean_traits(self):
        traits = self.cleaned_data["traits"]
        if not isinstance(traits, dict):
            raise forms.ValidationError("Traits are a JSON object ({...}).")
        return traits


class IdentityAdminForm(forms.ModelForm):
    # Set on the form class made for each request (IdentityAdmin.get_form).
    pii_allowed = True

    class Meta:
        model = Identity
        fields = ["profile", "kind", "value", "source", "first_seen_at", "last_seen_at"]

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if not self.pii_allowed and kind and Identity.value_is_personal(kind, value or ""):
            raise forms.ValidationError(
                "Adding or changing a personal identifier (e-mail, phone, external id, or a "
                "value that is one) needs the personal data permission."
            )
        return cleaned


@admin.register(Identity)
class IdentityAdmin(ReadableModelAdmin):
    form = IdentityAdminForm
    list_display = [
        "id",
        "kind",
        "shown_value",
        "profile",
        "source",
        "first_seen_at",
        "last_seen_at",
    ]
    list_filter = ["kind", "source"]
    search_fields = ["=value"]
    list_select_related = ["source", "profile"]
    raw_id_fields = ["profile"]
    autocomplete_fields = ["source"]
    readonly_fields = ["created_at"]
    pii_displays = ("shown_value",)

    @admin.display(description="value", ordering="value")
    def shown_value(self, identity, pii: bool):
        if identity.is_personal and not pii:
            return mask_value(identity.value)
        return identity.value

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if not lookup_candidates(term, personal=self.may_view_pii(request)):
            return queryset.none(), False
        return queryset.filter(lookup_condition(term, personal=self.may_view_pii(request))), False

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.pii_allowed = self.may_view_pii(request)
        return form

    def get_fields(self, request, obj=None):
        fields = [
            "profile",
            "kind",
            "value",
            "source",
            "first_seen_at",
            "last_seen_at",
            "created_at",
        ]
        if obj is not None and obj.is_personal and not self.may_view_pii(request):
            fields[fields.index("value")] = masked_name("shown_value")
        return fields

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is not None and obj.is_personal and not self.may_view_pii(request):
            return [*readonly, masked_name("shown_value")]
        return readonly


@admin.register(Event)
class EventAdmin(ReadableModelAdmin):
    list_display = ["id", "type", "name", "profile", "source", "timestamp", "received_at"]
    list_filter = ["type", "source"]
    search_fields = ["=name"]  # and message ids: get_search_results
    search_help_text = (
        "An event name, or a message id (of the de-duplication window: the last 30 days unless "
        "configured otherwise)."
    )
    list_select_related = ["source", "profile"]
    raw_id_fields = ["profile"]
    autocomplete_fields = ["source"]
    pii_json_fields = ("properties", "context")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(name=term) | event_message_condition(term)), False

    def has_add_permission(self, request):
        return False  # events arrive through the collection API
