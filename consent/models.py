from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class LawfulBasis(models.TextChoices):
    CONSENT = "consent", "Consent (Art. 6(1)(a))"
    CONTRACT = "contract", "Contract (Art. 6(1)(b))"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation (Art. 6(1)(c))"
    VITAL_INTERESTS = "vital_interests", "Vital interests (Art. 6(1)(d))"
    PUBLIC_TASK = "public_task", "Public task (Art. 6(1)(e))"
    LEGITIMATE_INTERESTS = "legitimate_interests", "Legitimate interests (Art. 6(1)(f))"


class Purpose(models.Model):
    """What personal data may be used for."""

    code = models.SlugField(
        max_length=64, unique=True, help_text="Stable code used in rules and API."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    lawful_basis = models.CharField(
        max_length=30, choices=LawfulBasis.choices, default=LawfulBasis.CONSENT
    )
    is_marketing = models.BooleanField(
        default=False, help_text="Direct marketing: withdrawn by an objection (GDPR Art. 21)."
    )
    requires_express_written = models.BooleanField(
        default=False,
        help_text="Needs express written consent for the specific phone number (TCPA, SMS).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConsentText(models.Model):
    """One version of the text shown when asking consent for a purpose."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="texts")
    version = models.CharField(max_length=20)
    text = models.TextField()
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["purpose", "-published_at"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "version"], name="consent_text_version"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose.code} v{self.version}"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    DENIED = "denied", "Denied"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ConsentRecord(models.Model):
    """One append-only fact with its proof. The database refuses updates and deletes (trigger),
    except re-pointing to a merge survivor and anonymising the proof on erasure."""

    class Method(models.TextChoices):
        WEB_FORM = "web_form", "Web form"
        CHECKBOX = "checkbox", "Checkbox"
        CMP = "cmp", "Consent management platform (TCF)"
        IMPORT = "import", "Spreadsheet import"
        API = "api", "API"
        SMS_KEYWORD = "sms_keyword", "SMS keyword"
        CALL = "call", "Phone call"
        ADMIN = "admin", "Admin"
        EVENT = "event", "Collected event"

    profile = models.ForeignKey(
        "profiles.Profile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="consent_records",
    )
    identifier_kind = models.CharField(max_length=20, blank=True)
    identifier_value = models.CharField(
        max_length=255, blank=True, help_text="The identifier the consent was given for."
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="records")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=200, blank=True, help_text="Where: site, form, campaign.")
    method = models.CharField(max_length=20, choices=Method.choices)
    text_version = models.ForeignKey(
        ConsentText, null=True, blank=True, on_delete=models.PROTECT, related_name="records"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")
    user_agent = models.TextField(blank=True)
    form_url = models.URLField(max_length=1000, blank=True, verbose_name="form URL")
    tcf_string = models.TextField(
        blank=True, verbose_name="TCF string", help_text="IAB TCF v2 consent string, if from a CMP."
    )
    tcf_vendor_list_version = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="TCF vendor list version"
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["profile", "purpose", "-occurred_at"], name="consent_history")
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id} {self.status} for {self.profile_id}"


class ConsentState(models.Model):
    """Current consent per profile and purpose, derived from the ledger in the same transaction."""

    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="consent_states"
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="states")
    status = models.CharField(max_length=10, choices=ConsentStatus.choices)
    record = models.ForeignKey(ConsentRecord, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["purpose"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "purpose"], name="consent_state_unique"),
        ]
        indexes = [
            models.Index(
                fields=["purpose", "profile"],
                name="consent_state_granted",
                condition=Q(status="granted"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id}={self.status} for {self.profile_id}"


def default_due_date():
    return timezone.now() + timedelta(days=30)


class DataSubjectRequest(models.Model):
    class Kind(models.TextChoices):
        ACCESS = "access", "Access (Art. 15)"
        PORTABILITY = "portability", "Portability (Art. 20)"
        ERASURE = "erasure", "Erasure (Art. 17)"
        RECTIFICATION = "rectification", "Rectification (Art. 16)"
        RESTRICTION = "restriction", "Restriction (Art. 18)"
        OBJECTION = "objection", "Objection (Art. 21)"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        VERIFIED = "verified", "Verified"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        REJECTED = "rejected", "Rejected"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    subject_email = models.EmailField(blank=True)
    subject_phone = models.CharField(max_length=32, blank=True)
    subject_user_id = models.CharField(max_length=255, blank=True)
    profile = models.ForeignKey(
        "profiles.Profile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="data_subject_requests",
    )
    received_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(default=default_due_date, help_text="One month after receipt.")
    extension_reason = models.TextField(
        blank=True, help_text="Why the due date was extended (Art. 12(3): up to two more months)."
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    details = models.TextField(blank=True, help_text="What the person asked, in their words.")
    corrections = models.JSONField(
        default=dict,
        blank=True,
        help_text='Rectification: the corrected values, e.g. {"lastName": "Jansen"} '
        "(profile trait keys; matching CRM contact fields are corrected too).",
    )
    result_file = models.FileField(upload_to="dsar/", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at"]
        verbose_name = "data subject request"
        indexes = [models.Index(fields=["status", "due_at"], name="dsar_status_due")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_overdue(self) -> bool:
        open_statuses = {self.Status.RECEIVED, self.Status.VERIFIED, self.Status.IN_PROGRESS}
        return self.status in open_statuses and self.due_at < timezone.now()


class Suppression(models.Model):
    """A salted hash of an erased person's identifier: ingestion and imports never bring it back."""

    identifier_kind = models.CharField(max_length=20)
    value_hash = models.CharField(max_length=64)
    reason = models.CharField(max_length=200, blank=True)
    request = models.ForeignKey(
        DataSubjectRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["identifier_kind", "value_hash"], name="suppression_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identifier_kind}:{self.value_hash[:12]}…"


class RetentionPolicy(models.Model):
    class Category(models.TextChoices):
        VISITOR_DATA = "visitor_data", "DMP visitor data"
        RAW_EVENTS = "raw_events", "Raw events"
        REJECTED_MESSAGES = "rejected_messages", "Rejected messages"
        IMPORT_FILES = "import_files", "Import files"
        EXPORTS = "exports", "Export files"
        DELIVERIES = "deliveries", "Deliveries to destinations (sent or skipped)"

    category = models.CharField(max_length=30, choices=Category.choices, unique=True)
    retention_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_purged_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["category"]
        verbose_name_plural = "retention policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(retention_days__gte=1), name="retention_at_least_a_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.retention_days} days"


class ProcessingActivity(models.Model):
    """An entry of the register of processing activities (GDPR Art. 30)."""

    name = models.CharField(max_length=200, unique=True)
    purposes = models.ManyToManyField(Purpose, blank=True, related_name="processing_activities")
    description = models.TextField(blank=True)
    controller = models.CharField(max_length=200, blank=True)
    lawful_basis = models.CharField(max_length=30, choices=LawfulBasis.choices)
    data_subjects = models.CharField(max_length=255, help_text="Customers, prospects, visitors...")
    data_categories = models.CharField(max_length=255, help_text="Contact data, behaviour, ...")
    recipients = models.CharField(max_length=255, blank=True)
    third_country_transfers = models.CharField(max_length=255, blank=True)
    retention = models.CharField(max_length=255, blank=True)
    security_measures = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "processing activities"

    def __str__(self) -> str:
        return self.name


class DataSubjectRequestAction(models.Model):
    """Who did what to a data subject request, when: the request's audit trail (Art. 5(2))."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        VERIFIED = "verified", "Identity verified"
        STARTED = "started", "Processing started"
        COMPLETED = "completed", "Completed"
        REJECTED = "rejected", "Rejected"
        EXTENDED = "extended", "Due date extended"
        FAILED = "failed", "Processing failed"
        DOWNLOADED = "downloaded", "Result file downloaded"
        RESTRICTION_LIFTED = "restriction_lifted", "Restriction lifted"
        DESTINATION_ANSWER = "destination_answer", "A destination answered the erasure"

    request = models.ForeignKey(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="actions"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=200, blank=True, help_text="Who acted: a user, an API key or a command."
    )
    note = models.TextField(
        blank=True, help_text="What was done (counts, reasons); never the subject's identifiers."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["request", "-created_at"], name="dsar_action_request")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} #{self.request_id}"


class ProcessingRestriction(models.Model):
    """A profile whose processing is restricted (GDPR Art. 18): kept, but not used for any
    purpose until the restriction is lifted."""

    profile = models.OneToOneField(
        "profiles.Profile", on_delete=models.CASCADE, related_name="processing_restriction"
    )
    request = models.ForeignKey(
        DataSubjectRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Restriction of profile {self.profile_id}"
