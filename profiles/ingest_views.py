"""API of event collection and identity resolution: manual merge (an action on profiles),
merges with undo, the merge-conflict review queue and rejected messages with retry."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from cdphub.api import ErrorSerializer, PiiMaskedSerializerMixin
from profiles.ingest.collect import rejected_message_retry
from profiles.models import MergeConflict, ProfileMerge, RejectedMessage
from profiles.resolution.merges import (
    MergeRefused,
    merge_conflict_approve,
    merge_conflict_reject,
    profile_merge_undo,
    profiles_merge_manual,
)

REFUSED = OpenApiResponse(ErrorSerializer, description="The merge or decision is not possible.")


def acting_user(request):
    return request.user if getattr(request.user, "pk", None) else None


# --- Serializers --------------------------------------------------------------------------------


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


# --- Filters ------------------------------------------------------------------------------------


class ProfileMergeFilter(django_filters.FilterSet):
    profile = django_filters.NumberFilter(method="filter_profile", label="Survivor or merged id")

    class Meta:
        model = ProfileMerge
        fields = ["survivor", "merged"]

    def filter_profile(self, queryset, name, value):
        return queryset.filter(survivor_id=value) | queryset.filter(merged_id=value)


class MergeConflictFilter(django_filters.FilterSet):
    class Meta:
        model = MergeConflict
        fields = ["status", "identifier_kind", "profile", "other_profile"]


class RejectedMessageFilter(django_filters.FilterSet):
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")

    class Meta:
        model = RejectedMessage
        fields = ["source", "status", "type"]


# --- Views --------------------------------------------------------------------------------------


class ProfileMergeActionsMixin:
    """Added to the profile viewset: ``POST /api/profiles/{id}/merge/``."""

    @extend_schema(
        request=ProfileMergeInputSerializer,
        responses={200: ProfileMergeSerializer(many=True), 400: REFUSED},
        summary="Merge profiles into the oldest (a person's decision: user ids may differ)",
    )
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None):
        profile = self.get_object()
        data = ProfileMergeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            merges = profiles_merge_manual(
                profile_ids=[profile.pk, *data.validated_data["profile_ids"]],
                merged_by=acting_user(request),
            )
        except MergeRefused as exc:
            raise ValidationError({"profile_ids": [str(exc)]}) from None
        return Response(ProfileMergeSerializer(merges, many=True).data)


class ProfileMergeViewSet(viewsets.ReadOnlyModelViewSet):
    """Merges (audit rows, newest first); ``undo`` splits a merge again."""

    queryset = ProfileMerge.objects.all()
    serializer_class = ProfileMergeSerializer
    filterset_class = ProfileMergeFilter

    @extend_schema(request=None, responses={200: ProfileMergeSerializer, 400: REFUSED})
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        try:
            merge = profile_merge_undo(merge=self.get_object(), undone_by=acting_user(request))
        except MergeRefused as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(ProfileMergeSerializer(merge).data)


class MergeConflictViewSet(viewsets.ReadOnlyModelViewSet):
    """Profiles an identifier links but no rule allowed to merge: approve (merge) or reject."""

    queryset = MergeConflict.objects.all()
    serializer_class = MergeConflictSerializer
    filterset_class = MergeConflictFilter

    def decide(self, request, service):
        try:
            conflict = service(conflict=self.get_object(), decided_by=acting_user(request))
        except MergeRefused as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(self.get_serializer(conflict).data)

    @extend_schema(request=None, responses={200: MergeConflictSerializer, 400: REFUSED})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self.decide(request, merge_conflict_approve)

    @extend_schema(request=None, responses={200: MergeConflictSerializer, 400: REFUSED})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self.decide(request, merge_conflict_reject)


class RejectedMessageViewSet(viewsets.ReadOnlyModelViewSet):
    """Messages refused by collection or processing, with the reason; retry after a fix."""

    queryset = RejectedMessage.objects.all()
    serializer_class = RejectedMessageSerializer
    filterset_class = RejectedMessageFilter

    @extend_schema(request=None, responses={200: RejectedMessageSerializer, 400: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        rejected = self.get_object()
        if rejected.status != RejectedMessage.Status.REJECTED:
            raise ValidationError({"status": ["this message was already accepted on retry"]})
        reason = rejected_message_retry(rejected=rejected)
        if reason:
            raise ValidationError({"payload": [reason]})
        return Response(self.get_serializer(rejected).data)


def register(router) -> None:
    router.register("profile-merges", ProfileMergeViewSet)
    router.register("merge-conflicts", MergeConflictViewSet)
    router.register("rejected-messages", RejectedMessageViewSet)
