from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class ApiKey(models.Model):
    """A key for integrations. The key is printed once; only its hash is stored."""

    name = models.CharField(max_length=200)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="To recognise the key.")
    scopes = ArrayField(
        models.CharField(max_length=40),
        default=list,
        help_text="app:read / app:write for profiles, crm, audiences, consent; pii:read to see "
        "personal data unmasked.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class AuditEntry(models.Model):
    """Who did what to which record: one row per change a service makes, written in the same
    transaction as the change (``cdphub.audit.audit_record``). The note names records by kind
    and id and says what changed, never personal values, so the trail can be kept after a
    person is erased."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150, help_text="The user's name when it acted, or 'system' for tasks."
    )
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, help_text="app_label.model of the record.")
    object_id = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type} #{self.object_id}"
