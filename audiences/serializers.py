from __future__ import annotations

from rest_framework import serializers

from audiences.models import (
    Audience,
    AudienceExport,
    AudienceSync,
    Category,
    DataProvider,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)


class VisitorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Visitor
        fields = [
            "id",
            "key_kind",
            "key",
            "first_seen_at",
            "last_seen_at",
            "country",
            "device_type",
            "browser",
            "profile",
            "expires_at",
            "created_at",
        ]
        read_only_fields = fields


class DataProviderSerializer(serializers.ModelSerializer):
    class Meta:
        model = DataProvider
        fields = ["id", "name", "party", "retention_days", "is_active", "created_at"]
        read_only_fields = ["created_at"]

    def validate_retention_days(self, value):
        if value < 1:
            raise serializers.ValidationError("retention_days must be at least 1 day.")
        return value


class CategorySerializer(serializers.ModelSerializer):
    parent_code = serializers.SlugRelatedField(
        source="parent",
        slug_field="code",
        queryset=Category.objects.all(),
        required=False,
        allow_null=True,
        help_text="Code of the parent category; empty for a top-level category.",
    )

    class Meta:
        model = Category
        fields = ["id", "code", "name", "kind", "parent", "parent_code", "tier"]
        read_only_fields = ["parent"]

    def validate(self, attrs):
        candidate = Category(
            pk=getattr(self.instance, "pk", None),
            **{
                field: attrs.get(field, getattr(self.instance, field, None))
                for field in ("code", "name", "kind", "tier")
            },
            parent=attrs.get("parent", getattr(self.instance, "parent", None)),
        )
        if candidate.tier is None:
            candidate.tier = 1
        errors = candidate.tree_errors()
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class VisitorTraitHitSerializer(serializers.ModelSerializer):
    category_code = serializers.CharField(source="category.code", read_only=True)

    class Meta:
        model = VisitorTraitHit
        fields = [
            "id",
            "visitor",
            "category",
            "category_code",
            "provider",
            "observed_at",
            "expires_at",
        ]
        read_only_fields = fields


class AudienceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Audience
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "rule",
            "seed_segment",
            "reach_percent",
            "size",
            "seed_size",
            "lookalike_recall",
            "build_status",
            "build_message",
            "build_requested_at",
            "refreshed_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "size",
            "seed_size",
            "lookalike_recall",
            "build_status",
            "build_message",
            "build_requested_at",
            "refreshed_at",
            "created_by",
            "created_at",
            "updated_at",
        ]

    def validate_rule(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("rule must be a JSON object.")
        return value

    def validate_reach_percent(self, value):
        if not 1 <= value <= 100:
            raise serializers.ValidationError("reach_percent must be between 1 and 100.")
        return value

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", Audience.Kind.RULE))
        seed = attrs.get("seed_segment", getattr(self.instance, "seed_segment", None))
        rule = attrs.get("rule", getattr(self.instance, "rule", {}))
        if kind == Audience.Kind.RULE and rule:
            from audiences.services import audience_rule_errors

            if errors := audience_rule_errors(rule):
                raise serializers.ValidationError({"rule": errors})
        if kind == Audience.Kind.LOOKALIKE and seed is None:
            raise serializers.ValidationError(
                {"seed_segment": "a lookalike audience needs a seed segment."}
            )
        return attrs


class AudienceBuildSerializer(serializers.Serializer):
    """A rule audience's build answers its size."""

    size = serializers.IntegerField(help_text="Visitors now in the audience.")


class ProviderFileImportSerializer(serializers.ModelSerializer):
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ProviderFileImport
        fields = [
            "id",
            "provider",
            "file",
            "status",
            "total_rows",
            "processed_rows",
            "progress_percent",
            "imported_rows",
            "error_rows",
            "errors",
            "message",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in ("provider", "file")]
        extra_kwargs = {"file": {"write_only": True}}


class AudienceExportSerializer(serializers.ModelSerializer):
    class Meta:
        model = AudienceExport
        fields = [
            "id",
            "destination",
            "segment",
            "audience",
            "status",
            "row_count",
            "message",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class AudiencePreviewInputSerializer(serializers.Serializer):
    rule = serializers.JSONField(help_text="A rule over visitors in the rule language.")

    def validate_rule(self, value):
        from audiences.services import audience_rule_errors

        if errors := audience_rule_errors(value):
            raise serializers.ValidationError(errors)
        return value


class AudiencePreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField())


class AudienceSyncSerializer(serializers.ModelSerializer):
    """A destination that keeps an audience's visitors in step (a destination created to
    receive a DMP audience); where it stands is the destination's."""

    sync_loaded_at = serializers.DateTimeField(source="destination.sync_loaded_at", read_only=True)
    sync_waiting_reason = serializers.CharField(
        source="destination.sync_waiting_reason", read_only=True
    )

    class Meta:
        model = AudienceSync
        fields = [
            "destination",
            "audience",
            "sync_loaded_at",
            "sync_waiting_reason",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_by", "created_at"]
