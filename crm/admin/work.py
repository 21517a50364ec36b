"""Activities, tickets and tasks."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from cdphub.admin_mixins import ReadableModelAdmin, presence_filter
from crm.admin.actions import (
    OwnerActionForm,
    assign_owner,
)
from crm.admin.visibility import (
    SafeExportMixin,
    VisibleRecordsAdminMixin,
)
from crm.models import (
    Activity,
    Deal,
    Task,
    Ticket,
)
from crm.reminders import DUE_CHOICES, task_errors, task_save, tasks_due, tasks_mark_done
from crm.resources import ActivityResource
from crm.selectors import Association, record_associations, record_timeline

# --- Activities, tickets, tasks -----------------------------------------------------------------

RETURN_TO = "return_to"  # the page an activity is logged from, to go back to


def activity_buttons(page: str, **links) -> str:
    """Links to the activity form, one per kind, filled in with ``links`` (contact, company,
    deal ids; owner: the person logging it, set by the form); saving goes back to ``page``."""
    base = reverse("admin:crm_activity_add")
    query = {name: pk for name, pk in links.items() if pk}
    return format_html_join(
        " ",
        '<a class="button" href="{}?{}">Log {}</a>',
        (
            (base, urlencode({**query, "kind": kind, RETURN_TO: page}), label.lower())
            for kind, label in Activity.Kind.choices
        ),
    )


def timeline_html(entries: list[dict]) -> str:
    if not entries:
        return "Nothing yet."
    rows = format_html_join(
        "",
        '<tr><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>',
        (
            (
                f"{timezone.localtime(entry['at']):%Y-%m-%d %H:%M}",
                entry["what"],
                reverse(
                    f"admin:crm_{entry['record']._meta.model_name}_change",
                    args=[entry["record"].pk],
                ),
                entry["detail"],
            )
            for entry in entries
        ),
    )
    return format_html(
        "<table><thead><tr><th>when</th><th>what</th><th>about</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )


def associations_html(request, record, associations: list[Association]) -> str:
    """Per kind of linked record: how many, the first few linking to their pages, a link to
    the list of all of them and one to add another, linked to this record."""
    field = record._meta.model_name
    parts = []
    for association in associations:
        opts = association.model._meta
        noun = opts.verbose_name if association.count == 1 else opts.verbose_name_plural
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a> <span class="quiet">{}</span></li>',
            (
                (reverse(f"admin:crm_{opts.model_name}_change", args=[obj.pk]), obj, detail(obj))
                for obj in association.records
            ),
        )
        links = []
        if association.count > len(association.records):
            url = reverse(f"admin:crm_{opts.model_name}_changelist") + "?" + association.lookup
            links.append(format_html('<a href="{}">All {} {}</a>', url, association.count, noun))
        if request.user.has_perm(f"crm.add_{opts.model_name}"):
            url = reverse(f"admin:crm_{opts.model_name}_add") + f"?{field}={record.pk}"
            links.append(format_html('<a href="{}">Add a {}</a>', url, opts.verbose_name))
        parts.append(
            format_html(
                '<section class="crm-association"><h3>{} {}</h3><ul>{}</ul><p>{}</p></section>',
                association.count,
                noun,
                items or format_html("<li>{}</li>", "None yet."),
                format_html_join(" · ", "{}", ((link,) for link in links)),
            )
        )
    return format_html_join("", "{}", ((part,) for part in parts))


def detail(obj) -> str:
    """A linked record's state in a few words."""
    if isinstance(obj, Deal):
        return f"{obj.get_status_display()} · {obj.currency} {obj.amount:,.0f}"
    if isinstance(obj, Ticket):
        return f"{obj.get_status_display()} · {obj.get_priority_display()} priority"
    if obj.done_at:
        return f"done {timezone.localtime(obj.done_at):%Y-%m-%d}"
    return f"due {timezone.localtime(obj.due_at):%Y-%m-%d %H:%M}" if obj.due_at else "open"


class RecordPageMixin:
    """Contact, company and deal pages: what is linked to the record and one timeline. Both
    are rendered by the page's template with the viewer's sight (sales teams), which a
    display method cannot know."""

    change_form_template = "admin/crm/record_change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, unquote(object_id))
        if record is not None:
            entries = record_timeline(record=record, user=request.user)
            linked = record_associations(record=record, user=request.user)
            extra_context = {
                **(extra_context or {}),
                "timeline": timeline_html(entries),
                "associations": associations_html(request, record, linked),
            }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Activity)
class ActivityAdmin(VisibleRecordsAdminMixin, SafeExportMixin, ReadableModelAdmin):
    resource_classes = [ActivityResource]
    pii_fields = ("contact",)  # a contact shows as its name
    # The company is the contact's and the deal's: on the activity's page.
    list_display = ["subject", "kind", "contact", "deal", "owner", "due_at", "done_at"]
    list_filter = [
        "kind",
        ("owner", admin.RelatedOnlyFieldListFilter),
        presence_filter("done_at", "done?", "done", "planned"),
    ]
    search_fields = ["subject"]
    list_select_related = ["contact", "deal", "company", "owner"]
    autocomplete_fields = ["contact", "deal", "company"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["kind", "subject", "outcome", "body", "done_at", "owner"]}),
        ("About", {"fields": ["contact", "company", "deal"]}),
        ("Planned", {"fields": ["due_at"], "classes": ["collapse"]}),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    action_form = OwnerActionForm
    actions = [assign_owner]

    def get_changeform_initial_data(self, request):
        """Logged from a contact's, company's or deal's page (kind, contact, company, deal
        given): owned by the person logging it (as every new record), done now."""
        initial = super().get_changeform_initial_data(request)
        initial.pop(RETURN_TO, None)
        if "kind" in initial:
            initial.setdefault("done_at", timezone.now())
        return initial

    def response_add(self, request, obj, post_url_continue=None):
        """Back to the page the activity was logged from, where its timeline shows it."""
        back = request.GET.get(RETURN_TO, "")
        plain_save = not {"_addanother", "_continue", "_popup"} & set(request.POST)
        if plain_save and back and url_has_allowed_host_and_scheme(back, {request.get_host()}):
            self.message_user(request, f"{obj.get_kind_display()} logged.", messages.SUCCESS)
            return HttpResponseRedirect(back)
        return super().response_add(request, obj, post_url_continue)


@admin.register(Ticket)
class TicketAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    pii_fields = ("contact",)  # a contact shows as its name
    list_display = ["subject", "status", "priority", "channel", "contact", "company", "owner"]
    list_filter = ["status", "priority", "channel", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["subject"]
    list_select_related = ["contact", "company", "owner"]
    autocomplete_fields = ["contact", "company"]
    readonly_fields = ["created_at", "updated_at"]
    action_form = OwnerActionForm
    actions = [assign_owner]


class MineFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "My tasks")]

    def queryset(self, request, queryset):
        return queryset.filter(owner=request.user) if self.value() == "1" else queryset


class DueFilter(admin.SimpleListFilter):
    """Open tasks by when they are due (in the site's time zone)."""

    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return list(DUE_CHOICES.items())

    def queryset(self, request, queryset):
        return tasks_due(queryset, self.value()) if self.value() in DUE_CHOICES else queryset


class TaskForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        task = self.instance
        for field in ("due_at", "owner", "remind_minutes_before"):
            if field in cleaned:
                setattr(task, field, cleaned[field])
        for field, problems in task_errors(task).items():
            for problem in problems:
                self.add_error(field if field in self.fields else None, problem)
        return cleaned


@admin.register(Task)
class TaskAdmin(VisibleRecordsAdminMixin, ReadableModelAdmin):
    form = TaskForm
    pii_fields = ("contact",)  # a contact shows as its name
    list_display = ["title", "due_at", "done_button", "priority", "contact", "deal", "owner"]
    list_filter = [
        MineFilter,
        DueFilter,
        "priority",
        ("owner", admin.RelatedOnlyFieldListFilter),
        presence_filter("done_at", "done?", "done", "open"),
    ]
    search_fields = ["title"]
    list_select_related = ["contact", "deal", "owner"]
    autocomplete_fields = ["contact", "deal"]
    readonly_fields = ["reminder_sent_at", "created_at", "updated_at"]
    action_form = OwnerActionForm
    actions = ["mark_done", assign_owner]
    # Open tasks first, the soonest due first; done ones after.
    ordering = [F("done_at").asc(nulls_first=True), F("due_at").asc(nulls_last=True), "pk"]

    def save_model(self, request, obj, form, change):
        task_save(task=obj)

    @admin.display(description="done")
    def done_button(self, task):
        if task.done_at:
            return timezone.localtime(task.done_at).strftime("%Y-%m-%d %H:%M")
        return format_html(
            '<button type="submit" class="button" form="task-done" formaction="{}">Done</button>',
            reverse("admin:crm_task_done", args=[task.pk]),
        )

    @admin.action(description="Mark done", permissions=["change"])
    def mark_done(self, request, queryset):
        done = tasks_mark_done(tasks=queryset)
        self.message_user(request, f"{done} task(s) marked done.")

    def get_urls(self):
        done = self.admin_site.admin_view(self.done_view)
        return [path("<int:object_id>/done/", done, name="crm_task_done"), *super().get_urls()]

    def done_view(self, request, object_id: int):
        """One click on a task's Done button (a POST: it changes the task)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        task = self.get_queryset(request).filter(pk=object_id).first()
        if task is None or not self.has_change_permission(request, task):
            raise PermissionDenied
        tasks_mark_done(tasks=Task.objects.filter(pk=task.pk))
        self.message_user(request, f"Done: {task.title}", messages.SUCCESS)
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = reverse("admin:crm_task_changelist")
        return redirect(back)
