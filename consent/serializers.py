from __future__ import annotations

from rest_framework import serializers

from cdphub.api import PiiMaskedSerializerMixin
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    ConsentText,
    DataSubjectRequest,
    DataSubjectRequestAction,
    ProcessingActivity,
    Purpose,
    RetentionPolicy,
    Suppression,
)
from profiles.models import Profile


class ConsentTextSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentText
        fields = ["id", "purpose", "version", "text", "published_at"]


class PurposeSerializer(serializers.ModelSerializer):
    texts = ConsentTextSerializer(many=True, read_only=True)

    class Meta:
        model = Purpose
        fields = [
            "id",
            "code",
            "name",
            "description",
            "lawful_basis",
            "is_marketing",
            "requires_express_written",
            "is_active",
            "texts",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class ConsentRecordSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    purpose = serializers.SlugRelatedField(slug_field="code", read_only=True)
    text_version = serializers.SlugRelatedField(
        slug_field="version", read_only=True, allow_null=True
    )

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "profile",
            "purpose",
            "status",
            "method",
            "source",
            "occurred_at",
            "recorded_at",
            "identifier_kind",
            "identifier_value",
            "text_version",
            "ip_address",
            "user_agent",
            "form_url",
            "tcf_string",
            "tcf_vendor_list_version",
            "recorded_by",
        ]
        read_only_fields = fields
        pii_fields = ("identifier_value", "ip_address", "user_agent", "form_url")


class ProofFields(serializers.Serializer):
    """Where, when and how: the proof a consent fact carries."""

    source = serializers.CharField(required=False, allow_blank=True, max_length=200)
    occurred_at = serializers.DateTimeField(required=False, help_text="Default: now.")
    ip_address = serializers.IPAddressField(required=False, allow_null=True)
    user_agent = serializers.CharField(required=False, allow_blank=True)
    form_url = serializers.URLField(required=False, allow_blank=True, max_length=1000)


class ConsentRecordInputSerializer(ProofFields):
    profile = serializers.PrimaryKeyRelatedField(queryset=Profile.objects.all())
    purpose = serializers.SlugRelatedField(slug_field="code", queryset=Purpose.objects.all())
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    method = serializers.ChoiceField(choices=ConsentRecord.Method.choices)
    identifier_kind = serializers.CharField(required=False, allow_blank=True, max_length=20)
    identifier_value = serializers.CharField(required=False, allow_blank=True, max_length=255)
    text_version = serializers.CharField(
        required=False, allow_blank=True, help_text="Version of the text shown; default current."
    )
    tcf_string = serializers.CharField(required=False, allow_blank=True)
    tcf_vendor_list_version = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class ConsentGrantSerializer(ConsentRecordInputSerializer):
    status = None
    method = serializers.ChoiceField(
        choices=ConsentRecord.Method.choices, default=ConsentRecord.Method.API
    )


class ConsentWithdrawSerializer(ProofFields):
    profile = serializers.PrimaryKeyRelatedField(queryset=Profile.objects.all())
    purpose = serializers.SlugRelatedField(slug_field="code", queryset=Purpose.objects.all())
    method = serializers.ChoiceField(
        choices=ConsentRecord.Method.choices, default=ConsentRecord.Method.API
    )


class ConsentObjectionSerializer(serializers.Serializer):
    profile = serializers.PrimaryKeyRelatedField(queryset=Profile.objects.all())
    method = serializers.ChoiceField(
        choices=ConsentRecord.Method.choices, default=ConsentRecord.Method.API
    )
    source = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ConsentTcfSerializer(ProofFields):
    profile = serializers.PrimaryKeyRelatedField(queryset=Profile.objects.all())
    tcf_string = serializers.CharField(help_text="IAB TCF v2 consent string from the CMP.")


class ConsentImportSerializer(serializers.Serializer):
    rows = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=False,
        max_length=10_000,
        help_text="Rows with email/phone/user_id, purpose, status, occurred_at, and proof columns.",
    )
    source = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ConsentImportErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    column = serializers.CharField()
    message = serializers.CharField()


class ConsentImportResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    errors = ConsentImportErrorSerializer(many=True)


class ConsentStateSerializer(serializers.ModelSerializer):
    purpose = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = ConsentState
        fields = ["id", "profile", "purpose", "status", "record", "updated_at"]
        read_only_fields = fields


class ConsentHistorySerializer(serializers.Serializer):
    profile = serializers.IntegerField()
    states = ConsentStateSerializer(many=True)
    records = ConsentRecordSerializer(many=True)


class DataSubjectRequestSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    is_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "kind",
            "status",
            "subject_email",
            "subject_phone",
            "subject_user_id",
            "profile",
            "received_at",
            "due_at",
            "is_overdue",
            "extension_reason",
            "verified_at",
            "completed_at",
            "rejection_reason",
            "details",
            "corrections",
            "result_file",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "due_at",
            "extension_reason",
            "verified_at",
            "completed_at",
            "rejection_reason",
            "result_file",
            "created_by",
            "created_at",
            "updated_at",
        ]
        pii_fields = ("subject_email", "subject_phone", "subject_user_id", "details")
        pii_json_fields = ("corrections",)

    def validate(self, attrs):
        identifiers = ("subject_email", "subject_phone", "subject_user_id", "profile")
        if not any(attrs.get(name) for name in identifiers):
            raise serializers.ValidationError(
                {
                    "subject_email": "give at least one of subject_email, subject_phone, "
                    "subject_user_id or profile to identify the person"
                }
            )
        return attrs


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Suppression
        fields = ["id", "identifier_kind", "value_hash", "reason", "request", "created_at"]
        read_only_fields = fields


class RetentionPolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = RetentionPolicy
        fields = [
            "id",
            "category",
            "retention_days",
            "is_active",
            "last_run_at",
            "last_purged_count",
        ]
        read_only_fields = ["category", "last_run_at", "last_purged_count"]


class ProcessingActivitySerializer(serializers.ModelSerializer):
    purposes = serializers.SlugRelatedField(
        slug_field="code", many=True, queryset=Purpose.objects.all(), required=False
    )

    class Meta:
        model = ProcessingActivity
        fields = [
            "id",
            "name",
            "purposes",
            "description",
            "controller",
            "lawful_basis",
            "data_subjects",
            "data_categories",
            "recipients",
            "third_country_transfers",
            "retention",
            "security_measures",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class DataSubjectRequestActionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DataSubjectRequestAction
        fields = [
            "id",
            "action",
            "from_status",
            "to_status",
            "actor",
            "actor_label",
            "note",
            "created_at",
        ]
        read_only_fields = fields


class DsarNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class DsarRejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Told to the person.")


class DsarExtendSerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=60)
    reason = serializers.CharField(max_length=2000)
