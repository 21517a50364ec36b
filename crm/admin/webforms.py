"""Web forms: a website's lead form, with the snippet to embed and its latest posts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.utils.html import format_html

from cdphub.admin_mixins import ReadableModelAdmin
from crm.admin.visibility import VisibleLinksMixin
from crm.models import WebForm
from crm.webforms import web_form_save, web_form_snippet


@admin.register(WebForm)
class WebFormAdmin(VisibleLinksMixin, ReadableModelAdmin):
    list_display = ["name", "is_active", "consent_purpose", "consent_required", "posts_per_hour"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["key", "snippet", "recent_posts", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "allowed_origins"]}),
        ("Consent", {"fields": ["consent_purpose", "consent_text", "consent_required"]}),
        ("New contacts", {"fields": ["lifecycle_stage", "owner"]}),
        ("Spam and after posting", {"fields": ["posts_per_hour", "success_url"]}),
        ("Embed", {"fields": ["key", "snippet", "recent_posts", "created_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        web_form_save(form=obj)

    @admin.display(description="HTML to paste into the page")
    def snippet(self, form):
        if not form.pk:
            return "Shown once the form is saved."
        return format_html("<pre>{}</pre>", web_form_snippet(form, settings.CDPHUB_ADMIN_URL))

    @admin.display(description="latest posts")
    def recent_posts(self, form):
        if not form.pk:
            return "-"
        count = form.posts.count()
        last = form.posts.order_by("-created_at").values_list("created_at", flat=True).first()
        return f"{count} post(s); the latest {last:%Y-%m-%d %H:%M}" if last else "No posts yet."
