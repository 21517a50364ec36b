from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import capfirst

from cdphub import charts, dashboard, jobs
from cdphub.admin_mixins import PiiMaskedAdminMixin
from cdphub.delivery import destinations_in_trouble

# The order a marketer works in: people first, then sales, advertising, privacy, access.
# The main menu by task, not by app: what a person comes to do, the everyday lists first in each
# group; history and internal tables last. Every registered model is placed here (a test holds
# the list to the registry); an app's own page (/admin/crm/) still lists it by app.
NAVIGATION = (
    ("People", ("profiles.profile", "crm.contact", "crm.company", "audiences.visitor")),
    (
        "Sales",
        (
            "crm.deal",
            "crm.task",
            "crm.activity",
            "crm.ticket",
            "crm.duplicatecandidate",
            "crm.accountsuggestion",
            "crm.importjob",
            "crm.webform",
            "crm.dataexport",
            "crm.contactmerge",
        ),
    ),
    (
        "Marketing",
        (
            "profiles.segment",
            "profiles.computedtrait",
            "audiences.audience",
            "profiles.destination",
            "audiences.audienceexport",
        ),
    ),
    (
        "Privacy",
        (
            "consent.datasubjectrequest",
            "consent.consentrecord",
            "consent.consentstate",
            "consent.suppression",
            "consent.processingrestriction",
            "consent.purpose",
            "consent.processingactivity",
            "consent.retentionpolicy",
        ),
    ),
    (
        "Data and collection",
        (
            "profiles.source",
            "profiles.trackingplan",
            "profiles.trackingplanviolation",
            "profiles.rejectedmessage",
            "profiles.event",
            "profiles.identity",
            "profiles.mergeconflict",
            "profiles.profilemerge",
            "audiences.dataprovider",
            "audiences.providerfileimport",
            "audiences.category",
        ),
    ),
    (
        "Settings and access",
        (
            "crm.pipeline",
            "crm.stage",
            "crm.customfield",
            "crm.tag",
            "crm.salesteam",
            "auth.user",
            "auth.group",
            "cdphub.apikey",
        ),
    ),
    (
        "History and internals",
        (
            "cdphub.auditentry",
            "consent.datasubjectrequestaction",
            "profiles.segmentmembershipchange",
            "audiences.audiencemembership",
            "audiences.audiencemembershipchange",
            "audiences.visitortraithit",
            "cdphub.delivery",
        ),
    ),
)


class MaskedAutocompleteJsonView(AutocompleteJsonView):
    """Autocomplete answers name each record by its ``str()``: a contact's or a profile's is
    a person's name. For those who may not see personal data, such records are named by
    their kind and id instead."""

    def serialize_result(self, obj, to_field_name):
        result = super().serialize_result(obj, to_field_name)
        found_in = self.model_admin
        if (
            isinstance(found_in, PiiMaskedAdminMixin)
            and found_in.label_is_personal
            and not found_in.may_view_pii(self.request)
        ):
            result["text"] = f"{capfirst(obj._meta.verbose_name)} #{obj.pk}"
        return result


class CdphubAdminSite(admin.AdminSite):
    site_header = "cdphub"
    site_title = "cdphub"
    index_title = "Dashboard"
    index_template = "admin/dashboard.html"
    site_url = "/admin/"  # "View site": the admin is the product's site

    def get_app_list(self, request, app_label=None):
        """The main menu by task (``NAVIGATION``); an app's own page lists its models."""
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        return navigation_groups(app_list)

    def get_urls(self):
        return [
            path("jobs/", self.admin_view(self.jobs_view), name="jobs"),
            path("jobs/status.json", self.admin_view(self.jobs_status), name="jobs_status"),
            *super().get_urls(),
        ]

    def jobs_view(self, request):
        """The signed-in person's recent imports, refreshes, requests and exports."""
        context = {
            **self.each_context(request),
            "title": "Your recent jobs",
            "jobs": jobs.recent_jobs(request.user, limit=50),
        }
        return TemplateResponse(request, "admin/jobs.html", context)

    def jobs_status(self, request):
        recent = jobs.recent_jobs(request.user, limit=50)
        return JsonResponse({"jobs": [job.as_json() for job in recent]})

    def autocomplete_view(self, request):
        return MaskedAutocompleteJsonView.as_view(admin_site=self)(request)

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **dashboard_context(request)}
        return super().index(request, extra_context)


def navigation_groups(app_list: list[dict]) -> list[dict]:
    """The models the user may see (Django's app list), regrouped by task; each group looks
    like an app to the admin's templates, its link the first list in it."""
    models = {
        f"{app['app_label']}.{model['object_name'].lower()}": (app, model)
        for app in app_list
        for model in app["models"]
    }
    groups = []
    for number, (name, labels) in enumerate(NAVIGATION):
        shown = [models[label] for label in labels if label in models]
        if not shown:
            continue
        first_app, first_model = shown[0]
        groups.append(
            {
                "name": name,
                "app_label": f"task-{number}",
                "app_url": first_model.get("admin_url") or first_app["app_url"],
                "has_module_perms": True,
                "models": [model for _, model in shown],
            }
        )
    return groups


def dashboard_context(request) -> dict:
    """What this user may see of the dashboard: each panel needs the view permission of its data."""
    user = request.user
    numbers = dashboard.dashboard_numbers(refresh=request.GET.get("refresh") == "1")
    context: dict = {"dashboard": {"computed_at": numbers["computed_at"]}}
    panels = context["dashboard"]
    if user.has_perm("profiles.view_profile"):
        panels["profiles"] = numbers["profiles"]
        panels["identified_meter"] = charts.meter(
            numbers["profiles"]["identified_share"], label="identified profiles"
        )
    if user.has_perm("profiles.view_event"):
        panels["events_chart"] = charts.stacked_bar_chart(
            numbers["events_per_day"], title="Events per day and source, last 30 days"
        )
        panels["events_total"] = sum(sum(v.values()) for _, v in numbers["events_per_day"])
        panels["top_events"] = numbers["top_events"]
    if user.has_perm("profiles.view_segment"):
        panels["segments"] = numbers["segments"]
    if user.has_perm("audiences.view_audience"):
        panels["audiences"] = numbers["audiences"]
    if user.has_perm("consent.view_consentstate"):
        panels["consent_rates"] = [
            {**rate, "meter": charts.meter(rate["rate"], label=f"{rate['name']} consent rate")}
            for rate in numbers["consent_rates"]
        ]
    if user.has_perm("consent.view_datasubjectrequest"):
        panels["requests"] = dashboard.open_requests()
    if user.has_perm("profiles.view_destination"):
        panels["destinations_in_trouble"] = destinations_in_trouble()
        panels["shows_destinations"] = True
    # A person's own deals and tasks: for those who work them, not those who may only look.
    if user.has_perm("crm.change_deal"):
        panels["my_pipeline"] = dashboard.my_pipeline(user)
    if user.has_perm("crm.change_task"):
        panels["my_tasks"] = dashboard.my_tasks(user)
    panels["jobs"] = jobs.recent_jobs(user, limit=5)
    panels["order"] = panel_order(user)
    return context


# The dashboard's panels (templates/admin/dashboard/<panel>.html), each shown to those with its
# permission: in this order, after the ones a person's role looks at first.
PANELS = (
    "segments",
    "destinations",
    "audiences",
    "consent",
    "requests",
    "top_events",
    "my_pipeline",
    "my_tasks",
    "jobs",
)
ROLE_FIRST = {
    "Sales": ("my_tasks", "my_pipeline"),
    "Sales manager": ("my_pipeline", "my_tasks"),
    "Privacy officer": ("requests", "consent"),
    "Marketer": ("segments", "destinations", "audiences"),
}


def panel_order(user) -> list[str]:
    """The panels in the order the user's roles look at them: a sales rep their tasks and
    pipeline, a privacy officer the requests, a marketer segments and destinations."""
    first = [
        panel
        for role in user.groups.filter(name__in=ROLE_FIRST).values_list("name", flat=True)
        for panel in ROLE_FIRST[role]
    ]
    return list(dict.fromkeys([*first, *PANELS]))


# --- A refusal that says whom to ask --------------------------------------------------------

ACTIONS_BY_VIEW = {"changelist": "view", "add": "add", "change": "change", "delete": "delete"}


def refused_action(request) -> tuple[str, str, str] | None:
    """(app label, model, action) of the admin page refused, from its URL name
    (``crm_contact_change``): a model page's own action, any other page of a model "change"."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.url_name or "admin" not in match.namespaces:
        return None
    for model in admin.site._registry:
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if match.url_name.startswith(prefix):
            view = match.url_name.removeprefix(prefix)
            return (
                model._meta.app_label,
                model._meta.model_name,
                ACTIONS_BY_VIEW.get(view, "change"),
            )
    return None


def permission_denied(request, exception=None):
    """The 403 page: styled like the admin, saying what was refused and which roles may do it."""
    from cdphub.roles import roles_granting

    context = {**admin.site.each_context(request), "title": "Not allowed", "roles": []}
    refused = refused_action(request)
    if refused is not None:
        app_label, model_name, action = refused
        model = apps.get_model(app_label, model_name)
        context["what"] = f"{ACTION_WORDS[action]} {model._meta.verbose_name_plural}"
        context["roles"] = roles_granting(app_label, model_name, action)
    return TemplateResponse(request, "403.html", context, status=403)


ACTION_WORDS = {"view": "see", "add": "add", "change": "change", "delete": "delete"}
