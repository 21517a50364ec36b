from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.db.models import Q


class Source(models.Model):
    """A system that sends data (website, app, shop, POS, CRM import). Its write key is hashed."""

    class Kind(models.TextChoices):
        WEBSITE = "website", "Website"
        APP = "app", "Mobile app"
        SHOP = "shop", "Web shop"
        POS = "pos", "Point of sale"
        EMAIL = "email", "E-mail platform"
        CRM = "crm", "CRM"
        SERVER = "server", "Server / backend"
        OTHER = "other", "Other"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WEBSITE)
    write_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    write_key_prefix = models.CharField(
        max_length=16,
        editable=False,
        help_text="The first characters of the write key, to recognise it; the key itself is "
        "shown only once, when the source is created.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive sources are refused with 401 by the collection API."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProfileQuerySet(models.QuerySet):
    def active(self) -> ProfileQuerySet:
        """Profiles that were not merged into another one."""
        return self.filter(merged_into__isnull=True)


class Profile(models.Model):
    """One known person, unified from every source: the CDP's unit."""

    traits = models.JSONField(
        default=dict, blank=True, help_text="Given traits, as sent by sources and the CRM."
    )
    computed_traits = models.JSONField(
        default=dict,
        blank=True,
        help_text="Traits computed from events (lifetime value, order count, RFM, ...).",
    )
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="merged_profiles",
        help_text="Set when this profile was merged: its id keeps resolving to the survivor.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProfileQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            GinIndex(fields=["traits"], name="profile_traits_gin"),
            models.Index(fields=["last_seen_at"], name="profile_last_seen"),
            models.Index(fields=["created_at"], name="profile_created"),
            models.Index(
                fields=["merged_into"], name="profile_merged_into", condition=Q(merged_into__isnull=False)
            ),
        ]
        permissions = [
            ("view_pii", "Can see personal data (e-mail, phone, names, addresses)"),
        ]

    def __str__(self) -> str:
        return f"Profile {self.pk}"

    @property
    def display_name(self) -> str:
        traits = self.traits or {}
        name = traits.get("name") or " ".join(
            str(part) for part in (traits.get("firstName"), traits.get("lastName")) if part
        )
        return name or traits.get("email") or f"Profile {self.pk}"


class Identity(models.Model):
    """One normalised identifier of a profile, unique per kind."""

    class Kind(models.TextChoices):
        USER_ID = "user_id", "User id"
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        ANONYMOUS_ID = "anonymous_id", "Anonymous id"
        DEVICE_ID = "device_id", "Device id"
        CRM_CONTACT = "crm_contact", "CRM contact"
        EXTERNAL = "external", "External id"

    # Kinds whose values are personal data, masked for roles without the PII permission.
    PII_KINDS = frozenset({Kind.EMAIL, Kind.PHONE})

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = models.CharField(max_length=255, help_text="Normalised value (see the normalisers).")
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="identity_unique_per_kind"),
        ]
        indexes = [models.Index(fields=["profile", "kind"], name="identity_profile_kind")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Event(models.Model):
    """One interaction, following the Segment spec's message types."""

    class Type(models.TextChoices):
        IDENTIFY = "identify", "Identify"
        TRACK = "track", "Track"
        PAGE = "page", "Page"
        SCREEN = "screen", "Screen"
        GROUP = "group", "Group"
        ALIAS = "alias", "Alias"

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="events")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=10, choices=Type.choices)
    name = models.CharField(
        max_length=255, blank=True, help_text="Event name for track, page/screen name otherwise."
    )
    properties = models.JSONField(
        default=dict, blank=True, help_text="Track properties, or identify/group traits."
    )
    context = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255)
    timestamp = models.DateTimeField(help_text="When it happened, corrected for clock skew.")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-timestamp"]
        constraints = [
            models.UniqueConstraint(fields=["source", "message_id"], name="event_message_id_per_source"),
        ]
        indexes = [
            models.Index(fields=["profile", "-timestamp"], name="event_profile_timeline"),
            # Covering: rule leaves ("did X in the last N days") read it without the heap.
            models.Index(
                fields=["name", "timestamp"], include=["profile"], name="event_name_time_profile"
            ),
            BrinIndex(fields=["timestamp"], name="event_timestamp_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name}".strip()


class ProfileMerge(models.Model):
    """Audit row of a merge: what moved from ``merged`` into ``survivor``, so it can be undone."""

    survivor = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_received")
    merged = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_given")
    reason = models.CharField(max_length=255, help_text="Why: shared identifier, manual, ...")
    moved = models.JSONField(
        default=dict, blank=True, help_text="Ids of the rows moved, by table, for undo."
    )
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Profile {self.merged_id} -> {self.survivor_id}"


class Segment(models.Model):
    """A rule-defined (or uploaded, static) group of known profiles."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic (rule)"
        STATIC = "static", "Static (uploaded list)"

    class Status(models.TextChoices):
        NEW = "new", "Not refreshed yet"
        CALCULATING = "calculating", "Calculating"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DYNAMIC)
    rule = models.JSONField(
        default=dict, blank=True, help_text="The segment's rule in the JSON rule language."
    )
    size = models.PositiveIntegerField(default=0, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=12,
        choices=Status.choices,
        default=Status.NEW,
        editable=False,
        help_text="Refresh state; a failed refresh keeps its error and is retried on the next run.",
    )
    last_error = models.TextField(
        blank=True, editable=False, help_text="Why the last refresh failed (empty after a success)."
    )
    refresh_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    refresh_interval_minutes = models.PositiveIntegerField(
        default=60,
        help_text="Minutes between scheduled refreshes of a dynamic segment; 0 refreshes only "
        "on demand and on events.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["kind", "refreshed_at"], name="segment_due")]

    def __str__(self) -> str:
        return self.name


class SegmentMembership(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "profile"], name="membership_unique"),
        ]
        indexes = [models.Index(fields=["profile"], name="membership_profile")]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.segment_id}"


class SegmentMembershipChange(models.Model):
    """History: a profile entered or exited a segment (written by the refresh that saw it)."""

    class Kind(models.TextChoices):
        ENTERED = "entered", "Entered"
        EXITED = "exited", "Exited"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="changes")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="segment_changes")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["segment", "-changed_at"], name="segment_change_history"),
            models.Index(fields=["profile"], name="segment_change_profile"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.kind} {self.segment_id}"


class SegmentSizeSnapshot(models.Model):
    """The segment's size after each refresh, for the size-over-time chart."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="size_snapshots")
    size = models.PositiveIntegerField()
    entered = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    taken_at = models.DateTimeField()

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["segment", "-taken_at"], name="segment_size_history")]

    def __str__(self) -> str:
        return f"{self.segment_id}: {self.size} at {self.taken_at:%Y-%m-%d %H:%M}"


class ComputedTraitQuantiles(models.Model):
    """Upper bounds of the five NTILE buckets of one RFM metric over all profiles, taken by the
    full recompute; incremental updates score touched profiles against the same bounds."""

    metric = models.CharField(max_length=20, unique=True)
    bounds = models.JSONField(default=list, help_text="Upper bound of buckets 1..4 (ascending).")
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["metric"]
        verbose_name_plural = "computed trait quantiles"

    def __str__(self) -> str:
        return self.metric
