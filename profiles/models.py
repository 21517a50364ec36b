"""The CDP's data model: sources, profiles, identities, events and their daily counts,
the staging and rejected messages, merges and conflicts, segments, memberships and exports.

One module, as Django expects ``models.py``: the models refer to each other throughout, and
their constraints and indexes are the hub's performance design, best read together."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex, GinIndex, OpClass
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from cdphub.pii import looks_personal


def validate_origins(origins: list[str]) -> None:
    """Each entry is ``*`` or a web origin: ``https://shop.example.com`` (a port allowed, no
    path), as a browser sends it in its ``Origin`` header."""
    for index, origin in enumerate(origins or []):
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise ValidationError(
                f"item {index + 1}: {origin!r} is not an origin like https://shop.example.com "
                "(scheme and host, a port if any, no path) or *"
            )


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
    allowed_origins = ArrayField(
        models.CharField(max_length=255),
        default=list,
        blank=True,
        validators=[validate_origins],
        help_text="Web origins whose pages may send with this key from a browser, e.g. "
        "https://shop.example.com, or * for any. Empty: no browser page (servers and apps send "
        "no origin and are not affected).",
    )
    rate_limit_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Messages per second this source may send, on average; more is refused with "
        "429 and Retry-After. Empty: the default (CDPHUB_SOURCE_RATE_LIMIT); 0: no limit.",
    )
    rate_limit_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Messages the source may send at once above its rate (a batch, a backlog "
        "after an outage). Empty: the default (CDPHUB_SOURCE_RATE_BURST).",
    )
    identifier_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Messages per minute one userId or anonymousId may send through this source "
        "(a runaway script in one browser); its messages beyond are refused. Empty: the default "
        "(CDPHUB_IDENTIFIER_RATE_LIMIT); 0: no limit, e.g. for a backfill.",
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


# The computed traits the hub computes itself (profiles.segments.computed), in
# ``Profile.computed_traits``; those marketers define (``ComputedTrait``) sit beside them.
BUILT_IN_COMPUTED_KEYS = (
    "lifetime_value",
    "order_count",
    "average_order_value",
    "first_order_at",
    "last_order_at",
    "first_seen_at",
    "last_seen_at",
    "event_counts",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_score",
    "churn_risk",
)


class ProfileSearchText(models.Func):
    """What a profile is found by when searched by a part of a name or e-mail: its given name,
    first and last name and e-mail, lower-cased, in one expression. The trigram index
    ``profile_search_trgm`` holds this same expression, which PostgreSQL uses only when a query
    spells it identically: search through this class, never through a copy of the SQL."""

    template = (
        "lower(coalesce(%(expressions)s ->> 'name', '') || ' ' || "
        "coalesce(%(expressions)s ->> 'firstName', '') || ' ' || "
        "coalesce(%(expressions)s ->> 'lastName', '') || ' ' || "
        "coalesce(%(expressions)s ->> 'email', ''))"
    )
    output_field = models.TextField()


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
    trait_timestamps = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per trait: the timestamp and message id of the event that last set it, so a "
        "late-arriving older event never overwrites a newer value.",
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
        db_index=False,  # the partial index profile_merged_into holds the few merged ones
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProfileQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Trait conditions are containment (``traits @> {...}``): jsonb_path_ops indexes
            # each value once by its path, half the entries of the default operator class,
            # and every profile written (created, or updated by processing) writes them all.
            GinIndex(fields=["traits"], name="profile_traits_paths", opclasses=["jsonb_path_ops"]),
            GinIndex(
                OpClass(ProfileSearchText("traits"), name="gin_trgm_ops"),
                name="profile_search_trgm",
            ),
            models.Index(fields=["last_seen_at"], name="profile_last_seen"),
            models.Index(fields=["created_at"], name="profile_created"),
            models.Index(
                fields=["merged_into"],
                name="profile_merged_into",
                condition=Q(merged_into__isnull=False),
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

    # Kinds whose values are personal data, masked for roles without the PII permission; a
    # value of another kind is too when it is an e-mail or a phone (a user id that is one).
    PII_KINDS = frozenset({Kind.EMAIL, Kind.PHONE, Kind.EXTERNAL})

    # Indexed by identity_profile_kind (profile first): a second index would only slow writes.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="identities", db_index=False
    )
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
        # No value here: this string shows up in logs and links for roles without PII access.
        return f"{self.get_kind_display()} #{self.pk}"

    @staticmethod
    def value_is_personal(kind: str, value: str) -> bool:
        return kind in Identity.PII_KINDS or looks_personal(value)

    @property
    def is_personal(self) -> bool:
        return self.value_is_personal(self.kind, self.value)


class Event(models.Model):
    """One interaction, following the Segment spec's message types."""

    class Type(models.TextChoices):
        IDENTIFY = "identify", "Identify"
        TRACK = "track", "Track"
        PAGE = "page", "Page"
        SCREEN = "screen", "Screen"
        GROUP = "group", "Group"
        ALIAS = "alias", "Alias"

    # Indexed by event_profile_timeline and the (source, message_id) constraint: single-column
    # indexes on top would only make every event insert write two more index entries.
    # No database-level foreign keys on this, the largest and most written table: their checks
    # doubled the cost of storing events, and every batch key-share-locked the same source row
    # from every worker. Processing writes events only for profiles it holds locked, and deletes
    # go through the ORM, which applies CASCADE and PROTECT itself.
    profile = models.ForeignKey(
        Profile,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    source = models.ForeignKey(
        Source,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    type = models.CharField(max_length=10, choices=Type.choices)
    name = models.CharField(
        max_length=255, blank=True, help_text="Event name for track, page/screen name otherwise."
    )
    properties = models.JSONField(
        default=dict, blank=True, help_text="Track properties, or identify/group traits."
    )
    context = models.JSONField(default=dict, blank=True)
    # The message's ids as normalised by identity resolution (empty when absent or junk), as
    # Segment's warehouses keep them: undoing a merge reads them to give later events back.
    user_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    anonymous_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    message_id = models.CharField(max_length=255)
    timestamp = models.DateTimeField(help_text="When it happened, corrected for clock skew.")
    original_timestamp = models.DateTimeField(
        null=True, blank=True, help_text="The time the sender gave, by its own clock."
    )
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sender sent it, by its own clock."
    )
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-timestamp"]
        # Partitioned by range of timestamp (profiles.eventstore; migration 0022): the primary
        # key in the database is (id, timestamp), ids are unique by their sequence, and
        # messageId de-duplication is SeenMessage's.
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


# --- Event collection and identity resolution ---------------------------------------------------


# Staged messages are claimed in (lane, id) order, a message's lane coming from its sender
# (``profiles.ingest.collect.processing_lane``): concurrent workers then take different senders'
# messages, where claiming in arrival order gave each worker's batch the same repeat visitors as
# the others', to leave for later because another worker held them.
PROCESSING_LANES = 1024


class PendingMessage(models.Model):
    """A collected message waiting for processing: the collection API only validates and
    stores it here; processing deletes it once its event is stored.

    A queue, not an archive: it stays small, so claiming rows stays fast. Duplicates are
    refused at collection against waiting rows (this table's constraint) and against stored
    events (``Event``'s constraint), so a retried batch is stored once, however late."""

    # Indexed by the (source, message_id) constraint. No database-level foreign key: each
    # collection request would key-share-lock the source row, from every web process at once.
    source = models.ForeignKey(
        Source,
        on_delete=models.CASCADE,
        related_name="pending_messages",
        db_index=False,
        db_constraint=False,
    )
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=10, choices=Event.Type.choices)
    payload = models.JSONField(help_text="The message as received, batch context merged in.")
    timestamp = models.DateTimeField(help_text="When it happened, corrected for clock skew.")
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    request_id = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="The collection request's id, carried into the logs of its processing.",
    )
    lane = models.SmallIntegerField(
        default=0,
        db_default=0,
        help_text=f"0 to {PROCESSING_LANES - 1}, from the sender: claims go lane by lane.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "message_id"], name="pending_message_id_per_source"
            ),
        ]
        indexes = [models.Index(fields=["lane", "id"], name="pending_claim_order")]

    def __str__(self) -> str:
        return f"{self.type} {self.message_id}"


class SeenMessage(models.Model):
    """A message id stored as an event within the de-duplication window
    (CDPHUB_EVENT_DEDUP_DAYS): the same message sent again is not stored twice, whichever
    partition of the event table its timestamp falls in. Expired by profiles.eventstore."""

    pk = models.CompositePrimaryKey("source_id", "message_id")
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    message_id = models.CharField(max_length=255)
    seen_at = models.DateTimeField(help_text="When the message was first received.")
    # Where its event is: the admin finds an event by message id in the partition of its time
    # (the event table has no index on message ids).
    timestamp = models.DateTimeField(help_text="The time of the event stored for it.")

    class Meta:
        indexes = [BrinIndex(fields=["seen_at"], name="seen_message_seen_at_brin")]

    def __str__(self) -> str:
        return self.message_id


class ProfileRefresh(models.Model):
    """A profile whose computed traits and segment memberships wait for a refresh after new
    events. Processing queues the profiles it touched; the refresh takes thousands at a time,
    so a visitor's hundred clicks cost one recomputation, not a hundred.

    A row claimed by a refresh has ``claimed_at`` set and is deleted when that refresh is done;
    new events meanwhile clear ``claimed_at`` again, so the row stays for the next refresh.
    A plain id, not a foreign key: the queue must never block deleting or merging a profile."""

    profile_id = models.BigIntegerField(primary_key=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refresh of profile {self.profile_id}"


class RejectedMessage(models.Model):
    """A message refused by collection or processing, kept with its reason for a data engineer."""

    class Status(models.TextChoices):
        REJECTED = "rejected", "Rejected"
        RETRIED = "retried", "Accepted on retry"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="rejected_messages")
    message_id = models.CharField(max_length=255, blank=True)
    type = models.CharField(max_length=20, blank=True)
    payload = models.JSONField(
        help_text="The message as received; fix it here (or fix the sender) and retry."
    )
    reason = models.TextField(
        help_text="What is wrong and where, e.g. 'userId or anonymousId is required'."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REJECTED)
    received_at = models.DateTimeField()
    retried_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["source", "-received_at"], name="rejected_source_time")]

    def __str__(self) -> str:
        return f"{self.type or 'message'} {self.message_id}: {self.reason}"[:120]


class SharedIdentifier(models.Model):
    """An anonymous or device id seen together with several different user ids (a shared device,
    a family tablet, a shop kiosk). Past the configured number of users it is no merge key."""

    kind = models.CharField(max_length=20, choices=Identity.Kind.choices)
    value = models.CharField(max_length=255)
    user_ids = models.JSONField(default=list, help_text="Distinct user ids seen with this id.")
    blocked = models.BooleanField(
        default=False,
        help_text="Seen with more users than CDPHUB_SHARED_ID_MAX_USERS: never used to merge.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="shared_identifier_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class MergeConflict(models.Model):
    """Two profiles an identifier links but a rule forbids merging automatically: a person
    decides."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        MERGED = "merged", "Approved (merged)"
        KEPT_APART = "kept_apart", "Rejected (kept apart)"

    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="+", help_text="The older profile."
    )
    other_profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    identifier_kind = models.CharField(max_length=20, choices=Identity.Kind.choices)
    identifier_value = models.CharField(max_length=255)
    reason = models.CharField(max_length=255)
    message_id = models.CharField(
        max_length=255, blank=True, help_text="The message that linked them."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    merge = models.ForeignKey(
        ProfileMerge, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Once per pair: a pair kept apart is not raised again by every later message.
            models.UniqueConstraint(
                fields=["profile", "other_profile"], name="merge_conflict_pair"
            ),
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="merge_conflict_status")]

    def __str__(self) -> str:
        return f"Profile {self.profile_id} / {self.other_profile_id}: {self.reason}"


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


class SegmentExport(models.Model):
    """One webhook export of a segment's members: who asked, to which URL, for which purpose,
    and how it ended (the outbound guard's refusal or the receiver's failure included)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="exports")
    purpose_code = models.CharField(max_length=64)
    url = models.URLField(max_length=2000, verbose_name="URL")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    sent = models.PositiveIntegerField(default=0, help_text="Profiles delivered.")
    message = models.CharField(
        max_length=500, blank=True, help_text="Why the export failed (empty while it goes well)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_by", "-created_at"], name="segment_export_by_user")
        ]

    def __str__(self) -> str:
        return f"{self.segment} to {self.url} ({self.get_status_display()})"


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


class ComputedTrait(models.Model):
    """A computed trait a marketer defines: an aggregate of a profile's events of one type (and
    name), filtered by their properties, over all time or the last N days. Its value is kept in
    ``Profile.computed_traits[key]`` next to the built-in ones, so rules (``computed`` leaf),
    destinations and the profile page read it like them."""

    class Kind(models.TextChoices):
        COUNT = "count", "Count of events"
        SUM = "sum", "Sum of a property"
        AVERAGE = "average", "Average of a property"
        MIN = "min", "Minimum of a property"
        MAX = "max", "Maximum of a property"
        FIRST = "first", "First value of a property"
        LAST = "last", "Last value of a property"
        MOST_FREQUENT = "most_frequent", "Most frequent value of a property"
        UNIQUE = "unique", "Unique values of a property (a list)"

    class Status(models.TextChoices):
        NEW = "new", "Not computed yet"
        CALCULATING = "calculating", "Computing for every profile"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    key = models.CharField(
        max_length=64,
        unique=True,
        help_text="The name of the value in the profile's computed traits, which a rule's "
        "computed leaf uses. Lower-case letters, digits and _; cannot change once saved.",
    )
    name = models.CharField(max_length=200, help_text="The label shown on profiles.")
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.COUNT)
    event_type = models.CharField(
        max_length=10, choices=Event.Type.choices, default=Event.Type.TRACK
    )
    event_name = models.CharField(
        max_length=255, blank=True, help_text="Empty: every event of the type."
    )
    property = models.CharField(
        max_length=255,
        blank=True,
        help_text="The event property aggregated (dots for nesting); every kind but count.",
    )
    where = models.JSONField(
        default=list,
        blank=True,
        help_text='Property filters, as in a rule\'s event leaf: [{"property": "currency", '
        '"op": "eq", "value": "EUR"}].',
    )
    window_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3660)],
        help_text="Only events of the last N days; empty: all time.",
    )
    unique_limit = models.PositiveSmallIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(500)],
        help_text="Unique values: at most this many are kept (the first in sort order).",
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.NEW, editable=False
    )
    last_error = models.TextField(blank=True, editable=False)
    computed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When every profile was last computed."
    )
    windows_checked_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Events older than the window up to this time are out of the values.",
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
                condition=Q(kind="count") | ~Q(property=""),
                name="computed_trait_property_unless_count",
                violation_error_message="Every kind but count needs the property to aggregate.",
            ),
            models.CheckConstraint(
                condition=Q(key__regex=r"^[a-z][a-z0-9_]*$"),
                name="computed_trait_key_format",
                violation_error_message="The key is lower-case letters, digits and _, starting "
                "with a letter.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ObservedField(models.Model):
    """A field seen in the data: an event name, a property of an event, or a trait, with the
    JSON types its values had and a few example values (never personal ones). Recorded by
    processing (``profiles.ingest.observed``); the rule builder offers these to pick from, so
    it never scans the events to find out what exists."""

    class Kind(models.TextChoices):
        EVENT = "event", "Event"
        PROPERTY = "property", "Event property"
        TRAIT = "trait", "Trait"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    event = models.CharField(
        max_length=255, blank=True, help_text="The event's name (events and their properties)."
    )
    key = models.CharField(
        max_length=255, blank=True, help_text="The property or trait, as a dotted path."
    )
    types = ArrayField(
        models.CharField(max_length=10),
        default=list,
        help_text="The JSON types seen (string, number, ...); for an event, its types (track, "
        "page, screen).",
    )
    examples = models.JSONField(
        default=list, blank=True, help_text="A few values seen; personal values are never kept."
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["kind", "event", "key"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "event", "key"], name="observed_field_unique")
        ]

    def __str__(self) -> str:
        return " ".join(part for part in (self.get_kind_display(), self.event, self.key) if part)


# --- Rollups for the dashboard --------------------------------------------------------------------


class EventDailyCount(models.Model):
    """Events per day, source, type and name: the dashboard reads these few rows instead of
    scanning the event table. Filled by ``profiles.rollups.event_daily_counts_refresh``."""

    day = models.DateField()
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=10, choices=Event.Type.choices)
    name = models.CharField(max_length=255, blank=True)
    count = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["-day", "source", "type", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "source", "type", "name"], name="event_daily_count_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.type} {self.name}: {self.count}"


class EventCountDay(models.Model):
    """A day whose counts were computed, and when (recent days are recomputed as events arrive)."""

    day = models.DateField(primary_key=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day} computed {self.computed_at:%Y-%m-%d %H:%M}"


class RateLimitedDay(models.Model):
    """Messages of a source refused for its rate limits, per day: a refusal is never silent,
    and these counts say which sources hit their limits and how often."""

    day = models.DateField()
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    source_limited = models.PositiveBigIntegerField(
        default=0, help_text="Messages refused because the source sent faster than its limit."
    )
    identifier_limited = models.PositiveBigIntegerField(
        default=0, help_text="Messages refused because one userId or anonymousId sent too many."
    )

    class Meta:
        ordering = ["-day", "source"]
        constraints = [
            models.UniqueConstraint(fields=["day", "source"], name="rate_limited_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.source_limited + self.identifier_limited} refused"


# --- Tracking plans -------------------------------------------------------------------------------


class TrackingPlan(models.Model):
    """The events sources may send and the properties of each, as JSON Schema (Segment's
    Protocols, RudderStack's tracking plans). Several sources may follow one plan; each decides
    what a violation does (``TrackingPlanSource``). Rules: ``profiles.ingest.plans``."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (not applied)"
        ACTIVE = "active", "Active"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=10,
        choices=Status.choices,
        default=Status.DRAFT,
        help_text="Processing checks events only against active plans.",
    )
    version = models.PositiveIntegerField(
        default=1,
        editable=False,
        help_text="Raised by every change of the plan's events: processing compiles each "
        "version once.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TrackingPlanEvent(models.Model):
    """One planned event: a track event by name, a page or screen by name, or the traits of
    every identify or group call (no name), with the JSON Schema of its properties (traits)."""

    class Type(models.TextChoices):
        TRACK = "track", "Track"
        PAGE = "page", "Page"
        SCREEN = "screen", "Screen"
        IDENTIFY = "identify", "Identify (traits)"
        GROUP = "group", "Group (traits)"

    plan = models.ForeignKey(TrackingPlan, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.TRACK)
    name = models.CharField(
        max_length=255,
        blank=True,
        help_text="The track event's name, or the page or screen name; empty for identify and "
        "group.",
    )
    description = models.TextField(blank=True)
    schema = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON Schema of the properties (traits for identify and group), e.g. {"type": '
        '"object", "properties": {"price": {"type": "number"}}, "required": ["price"]}; '
        '"additionalProperties": false flags properties the plan does not name.',
    )

    class Meta:
        ordering = ["type", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "type", "name"], name="tracking_plan_event_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name}".strip()


class TrackingPlanSource(models.Model):
    """A source following a plan (at most one), and what happens to its events that break it."""

    class ViolationAction(models.TextChoices):
        ALLOW = "allow", "Allow and flag"
        OMIT = "omit", "Omit the offending properties"
        BLOCK = "block", "Block the event"

    class UnplannedAction(models.TextChoices):
        ALLOW = "allow", "Allow and flag"
        BLOCK = "block", "Block the event"

    plan = models.ForeignKey(TrackingPlan, on_delete=models.CASCADE, related_name="sources")
    source = models.OneToOneField(
        Source,
        on_delete=models.CASCADE,
        related_name="tracking_plan_link",
        error_messages={"unique": "This source follows another tracking plan already."},
    )
    violation_action = models.CharField(
        max_length=10,
        choices=ViolationAction.choices,
        default=ViolationAction.ALLOW,
        help_text="A planned event with a missing required property, a value of the wrong type "
        "or format, or a property the plan does not allow: stored as sent, stored without the "
        "offending properties, or blocked (kept among the rejected messages with the reason). "
        "Every violation is counted.",
    )
    unplanned_event_action = models.CharField(
        max_length=10,
        choices=UnplannedAction.choices,
        default=UnplannedAction.ALLOW,
        help_text="An event the plan does not name: stored, or blocked (kept among the rejected "
        "messages). Counted either way.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan", "source"]

    def __str__(self) -> str:
        return f"source {self.source_id} follows plan {self.plan_id}"


class TrackingPlanViolation(models.Model):
    """How many events of a day broke a plan, per source, event, property and kind, with the
    latest few examples (value, message id, profile). Written in bulk by processing."""

    class Kind(models.TextChoices):
        MISSING_REQUIRED = "missing_required", "Missing required property"
        WRONG_TYPE = "wrong_type", "Wrong type or value"
        UNPLANNED_EVENT = "unplanned_event", "Unplanned event"
        UNPLANNED_PROPERTY = "unplanned_property", "Unplanned property"

    day = models.DateField(help_text="The day the events were received (UTC).")
    # Written by every processing batch with violations: no database-level foreign keys (their
    # checks would share-lock the plan and source rows from every worker, and a plan deleted
    # during a batch would fail the batch); deletes go through the ORM, which cascades.
    # Indexed by the (plan, day) and (source, day) indexes.
    plan = models.ForeignKey(
        TrackingPlan,
        on_delete=models.CASCADE,
        related_name="violations",
        db_index=False,
        db_constraint=False,
    )
    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_type = models.CharField(max_length=10, choices=Event.Type.choices)
    event_name = models.CharField(max_length=255, blank=True)
    property = models.CharField(
        max_length=255,
        blank=True,
        help_text="Path of the property (products[].price); empty for an unplanned event.",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    count = models.PositiveBigIntegerField(default=0, help_text="Events with this violation.")
    blocked = models.PositiveBigIntegerField(default=0, help_text="Of them, events blocked.")
    examples = models.JSONField(
        default=list,
        blank=True,
        help_text="The latest few: value, what the plan expects, message id, profile, time.",
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "-count", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "plan", "source", "event_type", "event_name", "property", "kind"],
                name="tracking_plan_violation_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["plan", "-day"], name="tracking_violation_plan_day"),
            models.Index(fields=["source", "-day"], name="tracking_violation_source_day"),
        ]

    def __str__(self) -> str:
        where = f"{self.event_name}.{self.property}" if self.property else self.event_name
        return f"{self.day} {where}: {self.get_kind_display()} x{self.count}"


class Destination(models.Model):
    """A system cdphub sends data to: what it receives (a source, event types, event names,
    each empty for all) and the consent purpose a person must have granted for their data to
    reach it. How it is sent is its kind's (``profiles.destinations``); the delivery itself
    (outbox, retries, dead letters) is the shared engine's (``cdphub.delivery``)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40, help_text="How it is sent: webhook, ...")
    config = models.JSONField(
        default=dict, blank=True, help_text="The kind's settings (a webhook: url, headers)."
    )
    # A webhook signs each batch with this secret, so unlike a write key it cannot be stored as
    # a hash: signing needs the secret itself. It is shown once, when the destination is
    # created, and never again (not in the admin, not over the API).
    signing_secret = models.CharField(max_length=100, blank=True, editable=False)
    secret_prefix = models.CharField(
        max_length=16,
        blank=True,
        editable=False,
        help_text="The first characters of the signing secret, to recognise it.",
    )
    source = models.ForeignKey(
        Source,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="destinations",
        help_text="Only events from this source; empty: every source.",
    )
    event_types = ArrayField(
        models.CharField(max_length=10, choices=Event.Type.choices),
        default=list,
        blank=True,
        help_text="Only these message types (track, identify, page, ...); empty: every type.",
    )
    event_names = ArrayField(
        models.CharField(max_length=255),
        default=list,
        blank=True,
        help_text="Only these event names (track events, pages, screens); empty: every name.",
    )
    profile_rule = models.JSONField(
        default=dict,
        blank=True,
        help_text="Only events of people this rule selects (the segment rule language, on the "
        "profile as the event is processed); empty: everyone.",
    )

    class Receiving(models.TextChoices):
        EVENTS = "events", "Events"
        SEGMENT = "segment", "A segment's members (an audience sync)"
        AUDIENCE = "audience", "A DMP audience's visitors (an audience sync)"

    receiving = models.CharField(
        max_length=10,
        choices=Receiving.choices,
        default=Receiving.EVENTS,
        help_text="What it receives, set at creation: events, a segment's members, or a DMP "
        "audience's visitors (the audience is chosen on the audience's page).",
    )
    segment = models.ForeignKey(
        Segment,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="destinations",
        help_text="An audience sync: this segment's members are sent instead of events (all "
        "of them first, then who enters and exits). Set at creation; empty: an event stream.",
    )
    purpose_code = models.CharField(
        max_length=64,
        help_text="The consent purpose a person must have granted for their data to be sent "
        "(checked when it is sent, not when it was collected).",
    )
    # Where an audience sync stands: loaded (every member queued once), then the id of the
    # last membership change queued, advanced in the transaction that queues the next ones.
    audience_key = models.CharField(
        max_length=200,
        blank=True,
        editable=False,
        help_text="What an audience sync's items call the audience (the segment's name in snake "
        "case when it was created; a renamed segment keeps it).",
    )
    sync_loaded_at = models.DateTimeField(null=True, blank=True, editable=False)
    synced_change_id = models.BigIntegerField(default=0, editable=False)
    sync_waiting_reason = models.CharField(
        max_length=300,
        blank=True,
        editable=False,
        help_text="Why an audience sync sends nothing yet (a segment under the minimum "
        "audience size).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, editable=False, help_text="Failed delivery attempts in a row."
    )
    batch_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Events per request, at most (1 to 1000).",
    )
    batch_interval_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Wait up to this many seconds to fill a batch; 0: send as soon as events arrive.",
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
                condition=Q(batch_size__gte=1, batch_size__lte=1000),
                name="destination_batch_size_range",
            ),
            models.CheckConstraint(
                condition=Q(receiving="segment", segment__isnull=False)
                | (~Q(receiving="segment") & Q(segment__isnull=True)),
                name="destination_segment_iff_receiving_segment",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_audience_sync(self) -> bool:
        return self.receiving != self.Receiving.EVENTS

    def receives(self, *, source_id: int, message_type: str, name: str) -> bool:
        """Whether a processed message passes this destination's filters (an audience sync
        receives no events)."""
        return (
            not self.is_audience_sync
            and (self.source_id is None or self.source_id == source_id)
            and (not self.event_types or message_type in self.event_types)
            and (not self.event_names or name in self.event_names)
        )
