from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from consent import filters
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentStatus,
    ConsentText,
    DataSubjectRequest,
    ProcessingActivity,
    Purpose,
    RetentionPolicy,
    Suppression,
)
from consent.serializers import (
    ConsentGrantSerializer,
    ConsentHistorySerializer,
    ConsentImportResultSerializer,
    ConsentImportSerializer,
    ConsentObjectionSerializer,
    ConsentRecordInputSerializer,
    ConsentRecordSerializer,
    ConsentStateSerializer,
    ConsentTcfSerializer,
    ConsentWithdrawSerializer,
    DataSubjectRequestSerializer,
    ProcessingActivitySerializer,
    PurposeSerializer,
    RetentionPolicySerializer,
    SuppressionSerializer,
)
from consent.services import (
    ConsentError,
    consent_import_rows,
    consent_object,
    consent_record,
    consent_record_tcf,
    consent_withdraw,
)
from profiles.selectors import profile_resolve


def as_validation_error(error: ConsentError) -> serializers.ValidationError:
    return serializers.ValidationError({error.field: [error.message]})


class PurposeViewSet(viewsets.ModelViewSet):
    queryset = Purpose.objects.prefetch_related(
        Prefetch("texts", queryset=ConsentText.objects.order_by("-published_at"))
    )
    serializer_class = PurposeSerializer
    filterset_class = filters.PurposeFilter
    http_method_names = ["get", "post", "patch", "head", "options"]  # deactivate, never delete


class ConsentRecordViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The append-only ledger: records are created (through the consent service), never changed.
    ``grant``/``withdraw``/``object``/``tcf``/``import`` are shortcuts for the usual facts."""

    queryset = ConsentRecord.objects.select_related("purpose", "text_version")
    serializer_class = ConsentRecordSerializer
    filterset_class = filters.ConsentRecordFilter
    ordering_fields = ["id", "occurred_at"]

    def _record(self, data: dict, **overrides) -> ConsentRecord:
        data = {**data, **overrides}
        data["text_version"] = data.get("text_version") or None
        try:
            return consent_record(recorded_by=self.request.user, **data)
        except ConsentError as error:
            raise as_validation_error(error) from None

    def _created(self, record_or_records, many: bool = False) -> Response:
        serializer = ConsentRecordSerializer(
            record_or_records, many=many, context=self.get_serializer_context()
        )
        return Response(serializer.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ConsentRecordInputSerializer, responses={201: ConsentRecordSerializer})
    def create(self, request, *args, **kwargs):
        serializer = ConsentRecordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._created(self._record(serializer.validated_data))

    @extend_schema(request=ConsentGrantSerializer, responses={201: ConsentRecordSerializer})
    @action(detail=False, methods=["post"])
    def grant(self, request):
        serializer = ConsentGrantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._created(self._record(serializer.validated_data, status=ConsentStatus.GRANTED))

    @extend_schema(request=ConsentWithdrawSerializer, responses={201: ConsentRecordSerializer})
    @action(detail=False, methods=["post"])
    def withdraw(self, request):
        serializer = ConsentWithdrawSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            record = consent_withdraw(recorded_by=request.user, **serializer.validated_data)
        except ConsentError as error:
            raise as_validation_error(error) from None
        return self._created(record)

    @extend_schema(
        request=ConsentObjectionSerializer,
        responses={201: ConsentRecordSerializer(many=True)},
        description="Objection to direct marketing (GDPR Art. 21): withdraws every marketing "
        "purpose of the profile.",
    )
    @action(detail=False, methods=["post"])
    def object(self, request):
        serializer = ConsentObjectionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        records = consent_object(recorded_by=request.user, **serializer.validated_data)
        return self._created(records, many=True)

    @extend_schema(
        request=ConsentTcfSerializer, responses={201: ConsentRecordSerializer(many=True)}
    )
    @action(detail=False, methods=["post"])
    def tcf(self, request):
        serializer = ConsentTcfSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            records = consent_record_tcf(recorded_by=request.user, **serializer.validated_data)
        except ConsentError as error:
            raise as_validation_error(error) from None
        return self._created(records, many=True)

    @extend_schema(request=ConsentImportSerializer, responses={200: ConsentImportResultSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_rows(self, request):
        serializer = ConsentImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = consent_import_rows(
            rows=serializer.validated_data["rows"],
            source=serializer.validated_data.get("source", ""),
            recorded_by=request.user,
        )
        errors = [{"row": row, "column": col, "message": msg} for row, col, msg in result.errors]
        return Response({"created": len(result.created), "errors": errors})

    @extend_schema(
        parameters=[OpenApiParameter("profile", int, required=True, description="Profile id.")],
        responses={200: ConsentHistorySerializer},
    )
    @action(detail=False, methods=["get"])
    def history(self, request):
        """The current states and every record of one profile (followed to its merge
        survivor), newest first."""
        raw = request.query_params.get("profile", "")
        if not raw.isdigit():
            raise serializers.ValidationError({"profile": ["a profile id (integer) is required"]})
        profile = profile_resolve(int(raw))
        if profile is None:
            raise serializers.ValidationError({"profile": [f"profile {raw} does not exist"]})
        states = ConsentState.objects.filter(profile=profile).select_related("purpose")
        records = self.get_queryset().filter(profile=profile)[:500]
        context = self.get_serializer_context()
        return Response(
            {
                "profile": profile.pk,
                "states": ConsentStateSerializer(states, many=True, context=context).data,
                "records": ConsentRecordSerializer(records, many=True, context=context).data,
            }
        )


class ConsentStateViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ConsentState.objects.select_related("purpose")
    serializer_class = ConsentStateSerializer
    filterset_class = filters.ConsentStateFilter


class DataSubjectRequestViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = DataSubjectRequest.objects.all()
    serializer_class = DataSubjectRequestSerializer
    filterset_class = filters.DataSubjectRequestFilter
    ordering_fields = ["id", "due_at", "received_at"]

    def perform_create(self, serializer):
        user = self.request.user
        serializer.save(created_by=user if getattr(user, "pk", None) else None)


class SuppressionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Suppression.objects.all()
    serializer_class = SuppressionSerializer
    filterset_class = filters.SuppressionFilter


class RetentionPolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = RetentionPolicy.objects.all()
    serializer_class = RetentionPolicySerializer


class ProcessingActivityViewSet(viewsets.ModelViewSet):
    queryset = ProcessingActivity.objects.prefetch_related("purposes")
    serializer_class = ProcessingActivitySerializer
    filterset_class = filters.ProcessingActivityFilter
