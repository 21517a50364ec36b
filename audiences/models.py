from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Visitor(models.Model):
    """One anonymous browser or device, keyed by cookie or device id. Holds no personal data."""

    class KeyKind(models.TextChoices):
        COOKIE = "cookie", "Cookie id"
        DEVICE = "device", "Device id"

    class DeviceType(models.TextChoices):
        DESKTOP = "desktop", "Desktop"
        MOBILE = "mobile", "Mobile"
        TABLET = "tablet", "Tablet"
        TV = "tv", "TV"
        OTHER = "other", "Other"

    key_kind = models.CharField(max_length=10, choices=KeyKind.choices, default=KeyKind.COOKIE)
    key = models.CharField(max_length=255, help_text="The cookie or device id.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 alpha-2 code.")
    device_type = models.CharField(max_length=10, choices=DeviceType.choices, blank=True)
    browser = models.CharField(max_length=60, blank=True)
    profile = models.ForeignKey(
        "profiles.Profile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="visitors",
        db_index=False,  # the partial index visitor_profile serves look-ups by profile
        help_text="Linked CDP profile; only while the person's advertising or personalisation "
        "consent holds.",
    )
    expires_at = models.DateTimeField(
        help_text="When this visitor's data is purged (retention after last seen)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["key_kind", "key"], name="visitor_unique_key"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="visitor_expires"),
            models.Index(fields=["last_seen_at"], name="visitor_last_seen"),
            models.Index(
                fields=["profile"], name="visitor_profile", condition=Q(profile__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_kind}:{self.key}"


class DataProvider(models.Model):
    class Party(models.TextChoices):
        FIRST = "first", "First party"
        SECOND = "second", "Second party"
        THIRD = "third", "Third party"

    name = models.CharField(max_length=200, unique=True)
    party = models.CharField(max_length=10, choices=Party.choices, default=Party.THIRD)
    retention_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1)],
        help_text="Trait hits from this provider expire this many days after observed.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """A node of the audience taxonomy (like the IAB Audience Taxonomy)."""

    class Kind(models.TextChoices):
        DEMOGRAPHIC = "demographic", "Demographic"
        INTEREST = "interest", "Interest"
        PURCHASE_INTENT = "purchase_intent", "Purchase intent"

    code = models.CharField(max_length=64, unique=True, help_text="Stable taxonomy code.")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    tier = models.PositiveSmallIntegerField(default=1, help_text="Depth in the taxonomy, 1 = top.")

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def tree_errors(self) -> dict[str, str]:
        """A child sits one tier below its parent and shares its kind; a top node is tier 1."""
        errors = {}
        parent = self.parent
        if parent is None:
            if self.tier != 1:
                errors["tier"] = f"a category without a parent is tier 1, not {self.tier}"
            return errors
        if self.pk is not None and parent.pk == self.pk:
            errors["parent"] = "a category cannot be its own parent"
        elif parent.tier + 1 != self.tier:
            errors["tier"] = (
                f"the parent {parent.code} is tier {parent.tier}, so this category is tier "
                f"{parent.tier + 1}, not {self.tier}"
            )
        if parent.kind != self.kind:
            errors["kind"] = f"the parent {parent.code} is {parent.kind}; a child has the same kind"
        return errors

    def clean(self):
        errors = self.tree_errors()
        if errors:
            raise ValidationError(errors)


class VisitorTraitHit(models.Model):
    """A provider saw a visitor in a category; expires on a sliding TTL (re-observed: extended)."""

    # No single-column indexes on visitor and category: the unique constraint and
    # trait_hit_category lead with them, and every extra index slows bulk provider imports.
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="trait_hits", db_index=False
    )
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, related_name="hits", db_index=False
    )
    provider = models.ForeignKey(DataProvider, on_delete=models.CASCADE, related_name="hits")
    observed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-observed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["visitor", "category", "provider"], name="trait_hit_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="trait_hit_expires"),
            models.Index(fields=["category", "expires_at"], name="trait_hit_category"),
        ]

    def __str__(self) -> str:
        return f"{self.visitor_id} in {self.category_id}"


class Audience(models.Model):
    """A rule-defined group of visitors, or a lookalike of a CDP segment."""

    class Kind(models.TextChoices):
        RULE = "rule", "Rule"
        LOOKALIKE = "lookalike", "Lookalike"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.RULE)
    rule = models.JSONField(
        default=dict, blank=True, help_text="Rule over visitors (rule language)."
    )
    seed_segment = models.ForeignKey(
        "profiles.Segment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="lookalike_audiences",
        help_text="For lookalikes: the CDP segment whose linked visitors are the seed.",
    )
    reach_percent = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="For lookalikes: the top N% most similar visitors.",
    )
    size = models.PositiveIntegerField(default=0, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    seed_size = models.PositiveIntegerField(
        default=0, editable=False, help_text="For lookalikes: seed visitors with category data."
    )

    class BuildStatus(models.TextChoices):
        NOT_BUILT = "", "Not built in the background"
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    build_status = models.CharField(
        max_length=10, choices=BuildStatus.choices, blank=True, editable=False
    )
    build_message = models.CharField(
        max_length=500, blank=True, editable=False, help_text="How the last build ended."
    )
    build_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    build_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    lookalike_recall = models.FloatField(
        null=True,
        blank=True,
        editable=False,
        help_text="For lookalikes: share of held-out seed visitors that scored within the reach "
        "(1.0 = all found). Higher is better; compare with the reach percentage (random).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reach_percent__gte=1, reach_percent__lte=100),
                name="audience_reach_pct",
            ),
            models.CheckConstraint(
                condition=~Q(kind="lookalike") | Q(seed_segment__isnull=False),
                name="audience_lookalike_has_seed",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AudienceMembership(models.Model):
    """A visitor in an audience. Filled by whatever evaluates the audience (rules, lookalike
    scoring, an upload); exports read it."""

    # Indexed by the unique constraint (audience first) and audience_member_visitor.
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    score = models.FloatField(
        null=True, blank=True, help_text="Similarity to the seed, for lookalike members."
    )
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "visitor"], name="audience_member_unique"),
        ]
        indexes = [models.Index(fields=["visitor"], name="audience_member_visitor")]

    def __str__(self) -> str:
        return f"{self.visitor_id} in {self.audience_id}"


class AudienceMembershipChange(models.Model):
    """History: a visitor entered or exited an audience (written by whatever set its members,
    and by the retention purge for the visitors it deletes). It keeps the visitor's key, so an
    exit can still be sent after the visitor is gone; kept as long as visitors are."""

    class Kind(models.TextChoices):
        ENTERED = "entered", "Entered"
        EXITED = "exited", "Exited"

    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="changes", db_index=False
    )
    # Not a foreign key: the change outlives the visitor it is about.
    visitor_id = models.BigIntegerField()
    key_kind = models.CharField(max_length=10, choices=Visitor.KeyKind.choices)
    key = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["audience", "id"], name="audience_change_order"),
            models.Index(fields=["key"], name="audience_change_key"),
            models.Index(fields=["changed_at"], name="audience_change_time"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.kind} {self.audience_id}"


class AudienceSync(models.Model):
    """A destination that keeps an audience's visitors in step with the system it sends to
    (the destination receives a DMP audience; ``audiences.syncs``). Where the sync stands is
    the destination's (loaded, last change queued), as for a segment's sync."""

    destination = models.OneToOneField(
        "profiles.Destination",
        on_delete=models.CASCADE,
        related_name="dmp_audience_sync",
        limit_choices_to={"receiving": "audience"},
        help_text="A destination that receives a DMP audience and has none yet.",
    )
    audience = models.ForeignKey(Audience, on_delete=models.PROTECT, related_name="syncs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["destination__name"]

    def __str__(self) -> str:
        return f"{self.audience} to {self.destination}"


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"


class ProviderFileImport(models.Model):
    """A provider's segment file (cookie id, category code, timestamp) imported in the
    background. Good rows are kept; bad rows are listed with their line numbers."""

    provider = models.ForeignKey(DataProvider, on_delete=models.PROTECT, related_name="imports")
    file = models.FileField(
        upload_to="provider_imports/",
        help_text="CSV with a header: cookie_id (or device_id), category, timestamp (ISO 8601 "
        "or Unix seconds).",
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    imported_rows = models.PositiveIntegerField(default=0)
    error_rows = models.PositiveIntegerField(default=0)
    errors = models.JSONField(
        default=list, blank=True, help_text="The first bad rows: [{line, error}], line 1 = header."
    )
    message = models.TextField(blank=True, help_text="Why the whole import failed, if it did.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="provider_import_status")]

    def __str__(self) -> str:
        return f"{self.provider} import #{self.pk}"

    @property
    def progress_percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == JobStatus.DONE else 0
        return min(100, self.processed_rows * 100 // self.total_rows)


class AudienceExport(models.Model):
    """One export of hashed identifiers (or plain ids) for an ad platform: who, when, what."""

    class Destination(models.TextChoices):
        GOOGLE = "google", "Google Customer Match"
        META = "meta", "Meta Custom Audiences"
        IDS = "ids", "Plain cookie / device ids"

    destination = models.CharField(max_length=10, choices=Destination.choices)
    segment = models.ForeignKey(
        "profiles.Segment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    audience = models.ForeignKey(
        Audience, null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    row_count = models.PositiveIntegerField(default=0, help_text="Rows written to the file.")
    file = models.FileField(upload_to="audience_exports/", blank=True)
    message = models.TextField(blank=True, help_text="Why the export was refused or failed.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_destination_display()} export #{self.pk}"
