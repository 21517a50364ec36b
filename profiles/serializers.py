from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cdphub.api import PiiMaskedSerializerMixin, caller_may_see_pii
from cdphub.delivery import delivery_counts
from cdphub.models import Delivery, DeliveryAttempt
from cdphub.pii import can_view_pii, mask_value
from profiles.destinations.kinds import config_shown
from profiles.ingest import spec
from profiles.ingest.plans import examples_shown
from profiles.models import (
    ComputedTrait,
    Destination,
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    RejectedMessage,
    Segment,
    SegmentMembership,
    SegmentMembershipChange,
    SegmentSizeSnapshot,
    Source,
    TrackingPlan,
    TrackingPlanEvent,
    TrackingPlanSource,
    TrackingPlanViolation,
)
from profiles.segments.defined_traits import DEFINITION_FIELDS, computed_trait_errors
from profiles.segments.rules import rule_errors


class SourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = [
            "id",
            "name",
            "kind",
            "write_key_prefix",
            "is_active",
            "allowed_origins",
            "rate_limit_per_second",
            "rate_limit_burst",
            "identifier_limit_per_minute",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["write_key_prefix", "created_at", "updated_at"]


class SourceCreatedSerializer(SourceSerializer):
    write_key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(SourceSerializer.Meta):
        fields = [*SourceSerializer.Meta.fields, "write_key"]


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = ["id", "profile", "kind", "value", "source", "first_seen_at", "last_seen_at"]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        allowed = request is not None and can_view_pii(request.user, request.auth)
        if instance.is_personal and not allowed:
            data["value"] = mask_value(data["value"])
        return data


@extend_schema_field(spec.TRAITS)
class TraitsField(serializers.JSONField):
    """A JSON document of traits, typed in the schema as the spec's (what to send; answers
    promise the names only)."""

    answered_schema = spec.as_stored(spec.TRAITS)


@extend_schema_field(spec.COMPUTED_TRAITS)
class ComputedTraitsField(serializers.JSONField):
    """The computed traits, typed in the schema."""


@extend_schema_field(spec.PROPERTIES)
class PropertiesField(serializers.JSONField):
    """An event's properties, typed in the schema as the spec's (answered as stored)."""

    answered_schema = spec.as_stored(spec.PROPERTIES)


class ProfileSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)
    traits = TraitsField(required=False)
    computed_traits = ComputedTraitsField(read_only=True)

    class Meta:
        model = Profile
        fields = [
            "id",
            "traits",
            "computed_traits",
            "first_seen_at",
            "last_seen_at",
            "merged_into",
            "identities",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "computed_traits",
            "first_seen_at",
            "last_seen_at",
            "merged_into",
            "created_at",
            "updated_at",
        ]
        # Defined computed traits may take their values from personal properties.
        pii_json_fields = ("traits", "computed_traits")

    def validate_traits(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("traits must be a JSON object.")
        return value


class EventSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    properties = PropertiesField(read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "profile",
            "source",
            "type",
            "name",
            "properties",
            "context",
            "user_id",
            "anonymous_id",
            "message_id",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
        ]
        read_only_fields = fields
        pii_json_fields = ("properties", "context")


class SegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "rule",
            "size",
            "refreshed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["size", "refreshed_at", "created_at", "updated_at"]


# --- segments -----------------------------------------------------------------------------------

# Traits shown next to a segment member (masked for callers without the PII permission).
MEMBER_TRAITS = ("email", "firstName", "lastName", "name", "country", "city")
MEMBER_COMPUTED_TRAITS = ("lifetime_value", "order_count", "rfm_score", "churn_risk")


class SegmentDetailSerializer(SegmentSerializer):
    """A segment with its refresh state; the rule is validated with the path of each error."""

    class Meta(SegmentSerializer.Meta):
        fields = [
            *SegmentSerializer.Meta.fields,
            "status",
            "last_error",
            "refresh_started_at",
            "refresh_interval_minutes",
        ]
        read_only_fields = [
            *SegmentSerializer.Meta.read_only_fields,
            "status",
            "last_error",
            "refresh_started_at",
        ]

    def validate(self, attrs):
        instance = self.instance
        kind = attrs.get("kind", instance.kind if instance else Segment.Kind.DYNAMIC)
        rule = attrs.get("rule", instance.rule if instance else {})
        if rule is None:  # a form's "null": JSON null passes the field, not the column
            raise serializers.ValidationError({"rule": ["This field may not be null."]})
        if kind == Segment.Kind.STATIC:
            if rule:
                raise serializers.ValidationError(
                    {"rule": ["a static segment has no rule: its members are uploaded"]}
                )
            return attrs
        errors = rule_errors(
            rule,
            segment_id=instance.pk if instance else None,
            pii_allowed=caller_may_see_pii(self.context),
        )
        if errors:
            raise serializers.ValidationError({"rule": errors})
        return attrs


class SegmentPreviewInputSerializer(serializers.Serializer):
    rule = serializers.JSONField(help_text="A rule in the JSON rule language.")
    sample_size = serializers.IntegerField(min_value=0, max_value=50, default=10)
    segment = serializers.IntegerField(
        required=False, help_text="The segment being edited, so references back to it are refused."
    )

    def validate(self, attrs):
        errors = rule_errors(
            attrs["rule"],
            segment_id=attrs.get("segment"),
            pii_allowed=caller_may_see_pii(self.context),
        )
        if errors:
            raise serializers.ValidationError({"rule": errors})
        return attrs


class SegmentMemberProfileSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    """A member's id and key traits."""

    traits = serializers.SerializerMethodField()
    computed_traits = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = ["id", "traits", "computed_traits", "last_seen_at"]
        read_only_fields = fields
        pii_json_fields = ("traits",)

    def get_traits(self, profile) -> dict:
        traits = profile.traits or {}
        return {key: traits[key] for key in MEMBER_TRAITS if key in traits}

    def get_computed_traits(self, profile) -> dict:
        computed = profile.computed_traits or {}
        return {key: computed[key] for key in MEMBER_COMPUTED_TRAITS if key in computed}


class SegmentPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = SegmentMemberProfileSerializer(many=True)


class SegmentMemberSerializer(serializers.ModelSerializer):
    profile = SegmentMemberProfileSerializer(read_only=True)

    class Meta:
        model = SegmentMembership
        fields = ["profile", "entered_at"]
        read_only_fields = fields


class SegmentMembershipCheckSerializer(serializers.Serializer):
    profile = serializers.IntegerField(help_text="The profile asked about (after merges).")
    member = serializers.BooleanField()
    entered_at = serializers.DateTimeField(allow_null=True)


class SegmentMembershipChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = SegmentMembershipChange
        fields = ["id", "profile", "kind", "changed_at"]
        read_only_fields = fields


class SegmentSizeSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = SegmentSizeSnapshot
        fields = ["size", "entered", "exited", "taken_at"]
        read_only_fields = fields


class SegmentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV with one e-mail address or user id per row.")
    identifier_kind = serializers.ChoiceField(
        choices=[("email", "E-mail"), ("user_id", "User id")],
        help_text="What the values of the file are.",
    )


class SegmentUploadResultSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    resolved = serializers.IntegerField()
    entered = serializers.IntegerField()
    exited = serializers.IntegerField()
    size = serializers.IntegerField()
    unresolved = serializers.ListField(child=serializers.CharField())
    invalid = serializers.ListField(child=serializers.CharField())


class SegmentExportSerializer(serializers.Serializer):
    purpose = serializers.SlugField(help_text="Purpose code: only members who granted it are sent.")
    format = serializers.ChoiceField(choices=[("csv", "CSV download"), ("webhook", "Webhook")])
    url = serializers.URLField(required=False, help_text="Webhook URL (format 'webhook').")
    fields = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The CSV's columns besides profile_id: email, user_id, phone, trait.<key>, "
        "computed.<key> (default: the identifiers). CSV downloads only.",
    )

    def validate_fields(self, value):
        from profiles.segments.exports import ExportFieldError, export_fields_check

        try:
            return export_fields_check(value)
        except ExportFieldError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate_purpose(self, value):
        from consent.selectors import purpose_is_active

        if not purpose_is_active(value):
            raise serializers.ValidationError(f"unknown or inactive purpose {value!r}")
        return value

    def validate(self, attrs):
        if attrs["format"] == "webhook" and not attrs.get("url"):
            raise serializers.ValidationError({"url": ["a webhook export needs a URL"]})
        if attrs["format"] == "webhook" and "fields" in attrs:
            raise serializers.ValidationError({"fields": ["fields apply to CSV downloads"]})
        return attrs


class SegmentRefreshSerializer(serializers.Serializer):
    status = serializers.CharField()


class ProfileMergeInputSerializer(serializers.Serializer):
    profile_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=100,
        help_text="Profiles to merge with this one; the oldest of them all survives.",
    )


class ProfileMergeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProfileMerge
        fields = [
            "id",
            "survivor",
            "merged",
            "reason",
            "moved",
            "merged_by",
            "created_at",
            "undone_at",
        ]
        read_only_fields = fields


class MergeConflictSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = MergeConflict
        fields = [
            "id",
            "profile",
            "other_profile",
            "identifier_kind",
            "identifier_value",
            "reason",
            "message_id",
            "status",
            "merge",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields
        pii_fields = ("identifier_value",)


class RejectedMessageSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = RejectedMessage
        fields = [
            "id",
            "source",
            "message_id",
            "type",
            "payload",
            "reason",
            "status",
            "received_at",
            "retried_at",
        ]
        read_only_fields = fields
        pii_json_fields = ("payload",)


# --- tracking plans -------------------------------------------------------------------------------


class TrackingPlanEventSerializer(serializers.ModelSerializer):
    schema = serializers.JSONField(
        required=False,
        help_text="JSON Schema of the properties (traits for identify and group); checked "
        "against its draft's meta-schema, each error naming where.",
    )

    class Meta:
        model = TrackingPlanEvent
        fields = ["type", "name", "description", "schema"]


class TrackingPlanSourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackingPlanSource
        fields = ["source", "violation_action", "unplanned_event_action"]
        # A source following this very plan is sent back as it is: the service refuses a
        # source of another plan, naming it.
        extra_kwargs = {"source": {"validators": []}}

    def validate(self, attrs):
        # A PATCH of the plan is partial for its nested links too: each still names its source.
        if "source" not in attrs:
            raise serializers.ValidationError({"source": ["This field is required."]})
        return attrs


class TrackingPlanSerializer(serializers.ModelSerializer):
    """A plan with its events and the sources following it; writes go through
    ``profiles.ingest.plans`` (events and sources given replace the plan's)."""

    events = TrackingPlanEventSerializer(many=True, required=False)
    sources = TrackingPlanSourceSerializer(many=True, required=False)

    class Meta:
        model = TrackingPlan
        fields = [
            "id",
            "name",
            "description",
            "status",
            "version",
            "events",
            "sources",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["version", "created_at", "updated_at"]


class TrackingPlanViolationExampleSerializer(serializers.Serializer):
    message_id = serializers.CharField()
    value = serializers.JSONField(
        allow_null=True, help_text="The value sent; masked unless the caller may see personal data."
    )
    expected = serializers.CharField(help_text="What the plan asks, e.g. 'type: number'.")
    profile = serializers.IntegerField(allow_null=True)
    at = serializers.DateTimeField()
    blocked = serializers.BooleanField()


class ExamplesMaskedMixin:
    """Violation examples hold values of messages: masked the way payloads are for callers
    who may not see personal data (by the property's key and by the value)."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        examples = instance["examples"] if isinstance(instance, dict) else instance.examples
        shown = examples_shown(examples, pii=caller_may_see_pii(self.context))
        data["examples"] = TrackingPlanViolationExampleSerializer(shown, many=True).data
        return data


class TrackingPlanViolationSerializer(ExamplesMaskedMixin, serializers.ModelSerializer):
    examples = TrackingPlanViolationExampleSerializer(many=True, read_only=True)

    class Meta:
        model = TrackingPlanViolation
        fields = [
            "id",
            "day",
            "plan",
            "source",
            "event_type",
            "event_name",
            "property",
            "kind",
            "count",
            "blocked",
            "examples",
            "first_seen_at",
            "last_seen_at",
        ]
        read_only_fields = fields


class TrackingPlanViolationSummarySerializer(ExamplesMaskedMixin, serializers.Serializer):
    source = serializers.IntegerField()
    event_type = serializers.ChoiceField(choices=Event.Type.choices)
    event_name = serializers.CharField()
    property = serializers.CharField()
    kind = serializers.ChoiceField(choices=TrackingPlanViolation.Kind.choices)
    count = serializers.IntegerField()
    blocked = serializers.IntegerField()
    last_seen_at = serializers.DateTimeField()
    examples = TrackingPlanViolationExampleSerializer(many=True)


class TrackingPlanDaysSerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=90, default=7)


class TrackingPlanObservedInputSerializer(TrackingPlanDaysSerializer):
    source = serializers.PrimaryKeyRelatedField(queryset=Source.objects.all())


class TrackingPlanGenerateSerializer(TrackingPlanObservedInputSerializer):
    name = serializers.CharField(
        max_length=200, required=False, help_text="Default: the source's name and today's date."
    )


class ObservedPropertySerializer(serializers.Serializer):
    name = serializers.CharField()
    types = serializers.ListField(child=serializers.CharField())
    seen = serializers.IntegerField(help_text="Sampled events that had it.")
    required = serializers.BooleanField(help_text="Sent in every sampled event of its name.")


class ObservedEventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=Event.Type.choices)
    name = serializers.CharField()
    count = serializers.IntegerField(help_text="Sampled events of this name.")
    properties = ObservedPropertySerializer(many=True)


class ObservedSerializer(serializers.Serializer):
    source = serializers.IntegerField()
    days = serializers.IntegerField()
    sampled = serializers.IntegerField(
        help_text="Events read: at most 10,000 of the last days, the newest days first."
    )
    events = ObservedEventSerializer(many=True)


# --- destinations ---------------------------------------------------------------------------------


class DestinationSerializer(serializers.ModelSerializer):
    """A destination; its signing secret is in the answer to its creation only."""

    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.Type.choices), required=False
    )
    deliveries = serializers.SerializerMethodField(
        help_text="Deliveries per status: pending (of them retrying), delivered, skipped, dead."
    )

    class Meta:
        model = Destination
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "secret_prefix",
            "receiving",
            "segment",
            "audience_key",
            "sync_loaded_at",
            "sync_waiting_reason",
            "source",
            "event_types",
            "event_names",
            "profile_rule",
            "purpose_code",
            "batch_size",
            "batch_interval_seconds",
            "status",
            "paused_reason",
            "paused_at",
            "consecutive_failures",
            "deliveries",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "secret_prefix",
            "audience_key",
            "sync_loaded_at",
            "sync_waiting_reason",
            "status",
            "paused_reason",
            "paused_at",
            "consecutive_failures",
            "created_at",
            "updated_at",
        ]

    def get_deliveries(self, destination) -> dict[str, int]:
        return delivery_counts(destination)

    def to_representation(self, destination):
        data = super().to_representation(destination)
        data["config"] = config_shown(destination, may_change_destinations(self.context))
        return data


def may_change_destinations(context: dict) -> bool:
    """Whether the request may change destinations: an API key with ``profiles:write``, or a
    user with the permission to change them (the view checks the same before a change)."""
    request = context.get("request")
    if request is None:
        return True
    if hasattr(request.auth, "has_scope"):
        return request.auth.has_scope("profiles:write")
    return request.user.has_perm("profiles.change_destination")


class DestinationCreatedSerializer(DestinationSerializer):
    signing_secret = serializers.CharField(
        read_only=True, help_text="Shown once: give it to the receiver to check signatures."
    )

    class Meta(DestinationSerializer.Meta):
        fields = [*DestinationSerializer.Meta.fields, "signing_secret"]


class DestinationPauseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, default="paused over the API")


class DestinationReplaySerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="The first event time sent again.")
    until = serializers.DateTimeField(help_text="Events before this time are sent again.")


class DestinationReplayedSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Events queued for the destination, in order.")


class DeliveryRetrySerializer(serializers.Serializer):
    deliveries = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Ids of the dead letters to retry; left out: every dead letter.",
    )


class DeliveryRetriedSerializer(serializers.Serializer):
    retried = serializers.IntegerField()


class DeliverySerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "destination",
            "profile_id",
            "status",
            "batch_key",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "response_body",
            "payload",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields
        pii_json_fields = ("payload",)


class DeliveryHourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField(help_text="The start of the hour.")
    delivered = serializers.IntegerField(help_text="Events (or items) the receiver accepted.")
    retried = serializers.IntegerField(help_text="Items in requests that failed for now.")
    refused = serializers.IntegerField(help_text="Items the receiver refused (dead letters).")
    latency_p50_ms = serializers.IntegerField(
        allow_null=True, help_text="Median time the receiver took to answer; null: no request."
    )
    latency_p99_ms = serializers.IntegerField(allow_null=True)
    waited_p50_ms = serializers.IntegerField(
        allow_null=True,
        help_text="Median, over the hour's requests, of how long their oldest item had waited "
        "from being queued (its event processed) to being sent; null: no request.",
    )
    waited_p99_ms = serializers.IntegerField(allow_null=True)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "batch_key",
            "items",
            "outcome",
            "status_code",
            "latency_ms",
            "error",
            "created_at",
        ]
        read_only_fields = fields


# --- computed traits defined by marketers -----------------------------------------------------


class ComputedTraitSerializer(serializers.ModelSerializer):
    """A computed trait's definition, checked by ``profiles.segments.defined_traits`` as the
    admin form is; its value is ``computed_traits.<key>`` on profiles and in rules."""

    where = serializers.JSONField(
        required=False,
        help_text='Property filters, as in a rule\'s event leaf: [{"property": "currency", '
        '"op": "eq", "value": "EUR"}].',
    )

    class Meta:
        model = ComputedTrait
        fields = [
            "id",
            *DEFINITION_FIELDS,
            "status",
            "last_error",
            "computed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "last_error", "computed_at", "created_at", "updated_at"]

    def validate(self, attrs):
        trait = ComputedTrait(**{**self.initial_definition(), **attrs})
        trait.pk = self.instance.pk if self.instance else None
        errors = computed_trait_errors(trait)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def initial_definition(self) -> dict:
        if self.instance is None:
            return {}
        return {field: getattr(self.instance, field) for field in DEFINITION_FIELDS}


class ComputedTraitPreviewSerializer(serializers.Serializer):
    sampled = serializers.IntegerField(help_text="Recently active profiles computed.")
    with_value = serializers.IntegerField(help_text="How many of them have a value.")
    numbers = serializers.DictField(
        child=serializers.DecimalField(max_digits=30, decimal_places=10),
        allow_null=True,
        help_text="min, p25, median, p75 and max of numeric values (null without numbers).",
    )
    top = serializers.ListField(
        child=serializers.ListField(), help_text="The most common values: [value, profiles]."
    )
    examples = serializers.ListField(
        child=serializers.DictField(), help_text="A few profiles with their value."
    )
