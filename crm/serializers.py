from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from cdphub.api import PiiMaskedSerializerMixin
from crm import services
from crm.models import Activity, Company, Contact, Deal, Pipeline, Stage, Tag, Task, Ticket

TIMESTAMPS = ["created_at", "updated_at"]


def as_drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "created_at"]
        read_only_fields = ["created_at"]


class CompanySerializer(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(
        slug_field="name", queryset=Tag.objects.all(), many=True, required=False
    )

    class Meta:
        model = Company
        fields = [
            "id",
            "name",
            "domain",
            "industry",
            "size",
            "country",
            "owner",
            "tags",
            *TIMESTAMPS,
        ]
        read_only_fields = TIMESTAMPS

    def validate_domain(self, value):
        if value in (None, ""):
            return None
        domain = value.strip().lower().removeprefix("https://").removeprefix("http://")
        return domain.removeprefix("www.").rstrip("/")


class ContactSerializer(PiiMaskedSerializerMixin, serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(
        slug_field="name", queryset=Tag.objects.all(), many=True, required=False
    )

    class Meta:
        model = Contact
        fields = [
            "id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "street",
            "postal_code",
            "city",
            "country",
            "date_of_birth",
            "job_title",
            "lifecycle_stage",
            "external_id",
            "company",
            "owner",
            "tags",
            "profile",
            *TIMESTAMPS,
        ]
        read_only_fields = ["profile", *TIMESTAMPS]
        pii_fields = Contact.PII_FIELDS

    def validate_external_id(self, value):
        # Unique when given; "none" is NULL, or a second contact without one would collide.
        return value or None

    def validate(self, attrs):
        email = attrs.get("email", getattr(self.instance, "email", ""))
        phone = attrs.get("phone", getattr(self.instance, "phone", ""))
        try:
            email, phone = services.contact_identifiers_normalize(email=email, phone=phone)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from None
        if "email" in attrs:
            attrs["email"] = email
        if "phone" in attrs:
            attrs["phone"] = phone
        return attrs


class StageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["id", "pipeline", "name", "order", "probability", "is_won", "is_lost"]

    def validate(self, attrs):
        is_won = attrs.get("is_won", getattr(self.instance, "is_won", False))
        is_lost = attrs.get("is_lost", getattr(self.instance, "is_lost", False))
        if is_won and is_lost:
            raise serializers.ValidationError({"is_lost": "A stage cannot be both won and lost."})
        return attrs


class PipelineSerializer(serializers.ModelSerializer):
    stages = StageSerializer(many=True, read_only=True)

    class Meta:
        model = Pipeline
        fields = ["id", "name", "stages", "created_at"]
        read_only_fields = ["created_at"]


class DealSerializer(serializers.ModelSerializer):
    pipeline = serializers.PrimaryKeyRelatedField(
        queryset=Pipeline.objects.all(),
        required=False,
        help_text="Defaults to the stage's pipeline.",
    )
    probability = serializers.IntegerField(min_value=0, max_value=100, required=False)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)

    class Meta:
        model = Deal
        fields = [
            "id",
            "name",
            "pipeline",
            "stage",
            "company",
            "contact",
            "amount",
            "currency",
            "probability",
            "expected_close_date",
            "status",
            "lost_reason",
            "closed_at",
            "owner",
            *TIMESTAMPS,
        ]
        read_only_fields = ["status", "closed_at", *TIMESTAMPS]


class ActivitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Activity
        fields = [
            "id",
            "kind",
            "subject",
            "body",
            "contact",
            "deal",
            "company",
            "owner",
            "due_at",
            "done_at",
            *TIMESTAMPS,
        ]
        read_only_fields = TIMESTAMPS

    def validate(self, attrs):
        links = [attrs.get(name, getattr(self.instance, name, None)) for name in LINKS]
        if not any(links):
            raise serializers.ValidationError(
                {"non_field_errors": ["Link the activity to a contact, a deal or a company."]}
            )
        return attrs


LINKS = ("contact", "deal", "company")


class TicketSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ticket
        fields = [
            "id",
            "subject",
            "description",
            "contact",
            "company",
            "status",
            "priority",
            "channel",
            "owner",
            "resolved_at",
            *TIMESTAMPS,
        ]
        read_only_fields = TIMESTAMPS


class TaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = [
            "id",
            "title",
            "description",
            "contact",
            "deal",
            "priority",
            "owner",
            "due_at",
            "done_at",
            *TIMESTAMPS,
        ]
        read_only_fields = TIMESTAMPS


class MailingListQuerySerializer(serializers.Serializer):
    purpose = serializers.SlugField(help_text="Purpose code, e.g. email_marketing.")

    def validate_purpose(self, value: str) -> str:
        from consent.models import Purpose

        if not Purpose.objects.filter(code=value, is_active=True).exists():
            raise serializers.ValidationError(f"unknown or inactive purpose {value!r}")
        return value


class MailingListContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "email", "first_name", "last_name", "profile"]
