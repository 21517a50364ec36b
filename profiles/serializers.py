from __future__ import annotations

from rest_framework import serializers

from cdphub.api import PiiMaskedSerializerMixin
from profiles.models import Event, Identity, Profile, Segment, Source


class SourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = ["id", "name", "kind", "write_key_prefix", "is_active", "created_at", "updated_at"]
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
        from cdphub.pii import can_view_pii, mask_value

        data = super().to_representation(instance)
        request = self.context.get("request")
        allowed = request is not None and can_view_pii(request.user, request.auth)
        if instance.kind in Identity.PII_KINDS and not allowed:
            data["value"] = mask_value(data["value"])
        return data


class ProfileSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)

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
        pii_json_fields = ("traits",)

    def validate_traits(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("traits must be a JSON object.")
        return value


class EventSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
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
            "message_id",
            "timestamp",
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
