from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.relations import ManyRelatedField, RelatedField

from cdphub.api import PII_WRITE_REFUSED, PiiMaskedSerializerMixin, caller_may_see_pii
from cdphub.pii import mask_value
from crm import reminders, services
from crm.accounts import ACCOUNT_FIGURES, with_account_figures
from crm.customfields import CustomValuesInvalid, custom_values_clean
from crm.models import (
    AccountSuggestion,
    Activity,
    Company,
    Contact,
    CustomField,
    Deal,
    Pipeline,
    Stage,
    Tag,
    Task,
    Ticket,
    activity_outcome_error,
)
from crm.selectors import VISIBILITY_RULES, visible_to

TIMESTAMPS = ["created_at", "updated_at"]


class VisibleRelationsMixin:
    """Every relation to a CRM record with a visibility rule accepts only the records the
    caller sees (``crm.selectors.visible_to``): an id of another sales team's record is refused
    with the message of an id that does not exist, so the answer does not tell that it exists.
    The record a relation already holds may be sent back unchanged (a client PUTs what it
    read): keeping a link reaches nothing new. Without a request, nothing is reachable."""

    def get_fields(self):
        fields = super().get_fields()
        user = getattr(self.context.get("request"), "user", None)
        for name, field in fields.items():
            relation = field.child_relation if isinstance(field, ManyRelatedField) else field
            if not isinstance(relation, RelatedField) or relation.queryset is None:
                continue  # read-only, or not a relation
            if relation.queryset.model in VISIBILITY_RULES:
                every = relation.queryset.all()  # a model's manager, unless declared
                held = self._held(field.source or name, every)
                relation.queryset = visible_to(user, every) | held
        return fields

    def _held(self, source: str, queryset: QuerySet) -> QuerySet:
        """What the instance being updated links to through ``source`` now."""
        instance = self.instance
        if instance is None or isinstance(instance, (list, QuerySet)) or instance.pk is None:
            return queryset.none()
        try:
            model_field = instance._meta.get_field(source)
        except FieldDoesNotExist:
            return queryset.none()
        if model_field.many_to_many:
            return queryset.filter(pk__in=getattr(instance, source).values("pk"))
        if model_field.many_to_one or model_field.one_to_one:
            value = getattr(instance, model_field.attname)
            return queryset.filter(**{model_field.target_field.attname: value})
        return queryset.none()


class TagSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "created_at"]
        read_only_fields = ["created_at"]


class CustomFieldsSerializerMixin(serializers.Serializer):
    """``custom_fields``: the record's custom field values by key, checked against their
    definitions by ``crm.customfields`` (unknown keys, wrong types and required fields left
    empty are a 400 naming the key). A write sends only the keys it changes; null clears one.
    A contact's values are personal data: masked for callers without ``pii:read``, who cannot
    change them."""

    custom_fields = serializers.JSONField(
        required=False,
        help_text="Custom field values by key, as defined under CRM -> Custom fields (listed "
        "by GET /api/crm/custom-fields/): text, whole numbers and yes/no (true/false) as "
        "themselves, decimals as numbers, dates as YYYY-MM-DD, several choices as a list. "
        "A write merges the keys it sends; null clears one.",
    )
    personal_custom_fields = False

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.personal_custom_fields and not caller_may_see_pii(self.context):
            data["custom_fields"] = {k: mask_value(v) for k, v in data["custom_fields"].items()}
        return data

    def validate_custom_fields(self, value):
        if self.personal_custom_fields and not caller_may_see_pii(self.context):
            current = getattr(self.instance, "custom_fields", None) or {}
            if value == {key: mask_value(v) for key, v in current.items()}:
                return current  # what the caller was shown, sent back: unchanged
            raise serializers.ValidationError(PII_WRITE_REFUSED)
        return self.custom_values(value)

    def custom_values(self, value) -> dict:
        current = getattr(self.instance, "custom_fields", None)
        try:
            return custom_values_clean(self.Meta.model, value, current=current)
        except CustomValuesInvalid as invalid:
            raise serializers.ValidationError(invalid.errors) from invalid

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if self.instance is None and "custom_fields" not in attrs:
            try:  # required fields left out
                attrs["custom_fields"] = custom_values_clean(self.Meta.model, {})
            except CustomValuesInvalid as invalid:
                raise serializers.ValidationError({"custom_fields": invalid.errors}) from invalid
        return attrs


class CompanySerializer(
    CustomFieldsSerializerMixin, VisibleRelationsMixin, serializers.ModelSerializer
):
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
            "group_id",
            "group_traits",
            "account",
            "owner",
            "tags",
            "custom_fields",
            *TIMESTAMPS,
        ]
        read_only_fields = ["group_traits", *TIMESTAMPS]

    account = serializers.SerializerMethodField(
        help_text="The account's figures, from the computed traits of its people: "
        + "; ".join(f"{name}: {meaning}" for name, meaning in ACCOUNT_FIGURES.items())
        + "."
    )

    def get_account(self, company) -> dict:
        if not hasattr(company, "account_people"):  # a company just written
            company = with_account_figures(Company.objects.filter(pk=company.pk)).get()
        return {name: getattr(company, f"account_{name}") for name in ACCOUNT_FIGURES}

    def validate_group_id(self, value):
        value = (value or "").strip()
        return value or None  # no group id: null, never an empty string (it is unique)

    def validate_domain(self, value):
        if value in (None, ""):
            return None
        domain = services.web_domain(value)
        if not domain:
            raise serializers.ValidationError(f"{value!r} is not a web domain (example.com)")
        return domain


class ContactSerializer(
    CustomFieldsSerializerMixin,
    VisibleRelationsMixin,
    PiiMaskedSerializerMixin,
    serializers.ModelSerializer,
):
    personal_custom_fields = True
    tags = serializers.SlugRelatedField(
        slug_field="name", queryset=Tag.objects.all(), many=True, required=False
    )

    warnings = serializers.SerializerMethodField(
        help_text="Values kept that deserve a look, such as a phone number that is possible "
        "but in no assigned range (kept, not used to find the person's CDP profile)."
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
            "custom_fields",
            "warnings",
            *TIMESTAMPS,
        ]
        read_only_fields = ["profile", *TIMESTAMPS]
        pii_fields = Contact.PII_FIELDS

    def get_warnings(self, contact) -> list[str]:
        """Values kept that deserve a look: a phone number in no assigned range."""
        warning = services.phone_warning(contact.phone)
        return [warning] if warning else []

    def validate_external_id(self, value):
        # Unique when given; "none" is NULL, or a second contact without one would collide.
        return value or None

    def validate(self, attrs):
        attrs = super().validate(attrs)
        email = attrs.get("email", getattr(self.instance, "email", ""))
        phone = attrs.get("phone", getattr(self.instance, "phone", ""))
        # A Django ValidationError keyed by field becomes the serializer's error as it is.
        email, phone = services.contact_identifiers_normalize(email=email, phone=phone)
        if "email" in attrs:
            attrs["email"] = email
        if "phone" in attrs:
            attrs["phone"] = phone
        return attrs


class StageSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["id", "pipeline", "name", "order", "probability", "is_won", "is_lost"]

    def validate(self, attrs):
        is_won = attrs.get("is_won", getattr(self.instance, "is_won", False))
        is_lost = attrs.get("is_lost", getattr(self.instance, "is_lost", False))
        if is_won and is_lost:
            raise serializers.ValidationError({"is_lost": "A stage cannot be both won and lost."})
        return attrs


class PipelineSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
    stages = StageSerializer(many=True, read_only=True)

    class Meta:
        model = Pipeline
        fields = ["id", "name", "stages", "created_at"]
        read_only_fields = ["created_at"]


class DealSerializer(
    CustomFieldsSerializerMixin, VisibleRelationsMixin, serializers.ModelSerializer
):
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
            "stage_entered_at",
            "custom_fields",
            *TIMESTAMPS,
        ]
        read_only_fields = ["status", "closed_at", "stage_entered_at", *TIMESTAMPS]


class DealMoveSerializer(serializers.Serializer):
    stage = serializers.PrimaryKeyRelatedField(
        queryset=Stage.objects.select_related("pipeline"),
        help_text="The stage to move the deal into: a stage of the deal's pipeline.",
    )
    from_stage = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="The stage the caller saw the deal in: when the deal is no longer there "
        "(moved by someone else meanwhile) the move is a 409. Omit it to move regardless.",
    )


class BoardAmountSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.DecimalField(max_digits=16, decimal_places=2)


class BoardColumnSerializer(serializers.Serializer):
    stage = StageSerializer()
    count = serializers.IntegerField(help_text="Deals in the column, with the filters.")
    amounts = serializers.SerializerMethodField()
    deals = DealSerializer(many=True, help_text="The first page of the column's deals.")
    has_more = serializers.BooleanField()

    def get_amounts(self, column) -> list[dict]:
        data = [{"currency": c, "amount": a} for c, a in column.amounts]
        return BoardAmountSerializer(data, many=True).data


class ActivitySerializer(VisibleRelationsMixin, serializers.ModelSerializer):
    class Meta:
        model = Activity
        fields = [
            "id",
            "kind",
            "subject",
            "body",
            "outcome",
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
        kind, outcome = (attrs.get(n, getattr(self.instance, n, "")) for n in ("kind", "outcome"))
        if error := activity_outcome_error(kind, outcome):
            raise serializers.ValidationError({"outcome": [error]})
        return attrs


LINKS = ("contact", "deal", "company")


class TicketSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
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


class TaskSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
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
            "remind_minutes_before",
            "reminder_sent_at",
            *TIMESTAMPS,
        ]
        read_only_fields = ["reminder_sent_at", *TIMESTAMPS]

    def validate(self, attrs):
        task = Task(**{**self.current(), **attrs})
        errors = reminders.task_errors(task)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def current(self) -> dict:
        if self.instance is None:
            return {}
        fields = ("due_at", "owner", "remind_minutes_before")
        return {field: getattr(self.instance, field) for field in fields}


class MailingListQuerySerializer(serializers.Serializer):
    purpose = serializers.SlugField(help_text="Purpose code, e.g. email_marketing.")

    def validate_purpose(self, value: str) -> str:
        from consent.models import Purpose

        if not Purpose.objects.filter(code=value, is_active=True).exists():
            raise serializers.ValidationError(f"unknown or inactive purpose {value!r}")
        return value


class MailingListContactSerializer(VisibleRelationsMixin, serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "email", "first_name", "last_name", "profile"]


class AccountSuggestionSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccountSuggestion
        fields = [
            "id",
            "account",
            "company",
            "domain",
            "reason",
            "status",
            "created_at",
            "decided_at",
            "decided_by",
        ]
        read_only_fields = fields


class CustomFieldSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomField
        fields = [
            "id",
            "model",
            "label",
            "key",
            "type",
            "choices",
            "required",
            "help_text",
            "order",
            *TIMESTAMPS,
        ]
        read_only_fields = TIMESTAMPS
        validators = []  # unique key and label: checked by the service, with the message
