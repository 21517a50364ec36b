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


class Delivery(models.Model):
    """One item to send to one destination: the transactional outbox of ``cdphub.delivery``.
    Written in the transaction of the change that causes it (an event processed), so a crash
    can neither lose a delivery nor invent one; the sender claims pending rows, sends them in
    batches and records how each ended."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting (or retrying)"
        DELIVERED = "delivered", "Delivered"
        SKIPPED = "skipped", "Skipped (no consent)"
        DEAD = "dead", "Dead letter"

    # The outbox index (destination, id) of pending rows covers the sender's queries.
    destination = models.ForeignKey(
        "profiles.Destination", on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # The profile as processing resolved it; followed through merges when it is sent. Not a
    # foreign key: an erased person's rows are deleted with them (the personal data registry).
    profile_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    payload = models.JSONField(help_text="What is sent (an event as collected).")
    requires_consent = models.BooleanField(
        default=True,
        help_text="Sent only if the person has the destination's purpose when it is due; a "
        "removal from a synced audience is sent whatever it is: it takes data away.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    batch_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="The batch it is sent in, fixed at its first attempt: the Idempotency-Key "
        "every resend of the batch carries.",
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    response_body = models.TextField(
        blank=True, help_text="What the receiver answered when it refused the batch."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["destination", "id"],
                name="delivery_outbox",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["destination", "status", "-id"], name="delivery_by_status"),
            # The batch being sent: a handful of rows per destination, found by its key.
            models.Index(
                fields=["batch_key"],
                name="delivery_batch",
                condition=models.Q(status="pending") & ~models.Q(batch_key=""),
            ),
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk} to destination #{self.destination_id} ({self.status})"


class DeliveryAttempt(models.Model):
    """One request to a destination: a batch sent, and how it ended."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        TRANSIENT = "transient", "Failed, will retry"
        PERMANENT = "permanent", "Refused (dead letter)"

    destination = models.ForeignKey(
        "profiles.Destination", on_delete=models.CASCADE, related_name="attempts", db_index=False
    )
    batch_key = models.CharField(max_length=64)
    items = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(help_text="How long the receiver took to answer.")
    waited_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="How long the batch's oldest item had waited, from being queued (its event "
        "processed) to this request.",
    )
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["destination", "-id"], name="delivery_attempt_recent"),
            # A destination's history by hour (delivery_history).
            models.Index(fields=["destination", "created_at"], name="delivery_attempt_time"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} {self.status_code or ''} ({self.items} items)"


class SavedView(models.Model):
    """A list as someone likes to see it: the changelist's query string (filters, search,
    ordering) and the columns shown, under a name. Private to its owner unless shared with
    everyone who may open that list."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    list_label = models.CharField(
        max_length=100, help_text="app_label.model of the list (crm.contact)."
    )
    name = models.CharField(max_length=100)
    query = models.CharField(
        max_length=2000, blank=True, help_text="The list's query string, without the page."
    )
    columns = ArrayField(
        models.CharField(max_length=100),
        default=list,
        help_text="The columns shown, in order; empty for the list's own.",
    )
    shared = models.BooleanField(default=False, help_text="Everyone who may open the list sees it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "list_label", "name"], name="saved_view_name_per_owner"
            )
        ]
        indexes = [models.Index(fields=["list_label", "shared"], name="saved_view_list")]

    def __str__(self) -> str:
        return self.name
