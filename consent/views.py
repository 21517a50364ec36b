from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch
from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cdphub.api import ProtectedDestroyMixin
from cdphub.pii import can_view_pii
from consent import filters
from consent.dsar import dsar_create, dsar_extend, dsar_reject, dsar_result_open, dsar_verify
from consent.exports import write_register_csv
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
    DataSubjectRequestActionSerializer,
    DataSubjectRequestSerializer,
    DsarExtendSerializer,
    DsarNoteSerializer,
    DsarRejectSerializer,
    ProcessingActivitySerializer,
    PurposeSerializer,
    RetentionPolicySerializer,
    SuppressionSerializer,
)
from consent.services import (
    consent_import_rows,
    consent_object,
    consent_record,
    consent_record_tcf,
    consent_withdraw,
)
from consent.tasks import process_data_subject_request_task
from profiles.selectors import profile_resolve


class PurposeViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
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
        return consent_record(recorded_by=self.request.user, **data)

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
        """Record consent given for a purpose, with its proof."""
        serializer = ConsentGrantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._created(self._record(serializer.validated_data, status=ConsentStatus.GRANTED))

    @extend_schema(request=ConsentWithdrawSerializer, responses={201: ConsentRecordSerializer})
    @action(detail=False, methods=["post"])
    def withdraw(self, request):
        """Record consent withdrawn for a purpose."""
        serializer = ConsentWithdrawSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = consent_withdraw(recorded_by=request.user, **serializer.validated_data)
        return self._created(record)

    @extend_schema(
        request=ConsentObjectionSerializer,
        responses={201: ConsentRecordSerializer(many=True)},
        description="Objection to direct marketing (GDPR Art. 21): withdraws every marketing "
        "purpose of the profile.",
    )
    @action(detail=False, methods=["post"])
    def object(self, request):
        """Record an objection to direct marketing: every marketing purpose is withdrawn."""
        serializer = ConsentObjectionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        records = consent_object(recorded_by=request.user, **serializer.validated_data)
        return self._created(records, many=True)

    @extend_schema(
        request=ConsentTcfSerializer, responses={201: ConsentRecordSerializer(many=True)}
    )
    @action(detail=False, methods=["post"])
    def tcf(self, request):
        """Record the choices of an IAB TCF consent string, per mapped purpose."""
        serializer = ConsentTcfSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        records = consent_record_tcf(recorded_by=request.user, **serializer.validated_data)
        return self._created(records, many=True)

    @extend_schema(request=ConsentImportSerializer, responses={200: ConsentImportResultSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_rows(self, request):
        """Import consent records in bulk (from another system), each row checked."""
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
    """Data subject requests: create, then ``verify``, ``process`` (runs as a background job),
    or ``reject``; ``extend`` the due date with a reason; ``actions`` is the audit trail and
    ``result`` downloads the access/portability file."""

    queryset = DataSubjectRequest.objects.all()
    serializer_class = DataSubjectRequestSerializer
    filterset_class = filters.DataSubjectRequestFilter
    ordering_fields = ["id", "due_at", "received_at"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = dsar_create(
            kind=data["kind"],
            email=data.get("subject_email", ""),
            phone=data.get("subject_phone", ""),
            user_id=data.get("subject_user_id", ""),
            profile=data.get("profile"),
            details=data.get("details", ""),
            corrections=data.get("corrections") or None,
            received_at=data.get("received_at"),
            actor=self.request.user,
        )

    def _respond(self, request_) -> Response:
        return Response(self.get_serializer(request_).data)

    def _call(self, service, **kwargs):
        return service(request=self.get_object(), actor=self.request.user, **kwargs)

    @extend_schema(request=DsarNoteSerializer, responses={200: DataSubjectRequestSerializer})
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        serializer = DsarNoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._respond(self._call(dsar_verify, **serializer.validated_data))

    @extend_schema(request=DsarRejectSerializer, responses={200: DataSubjectRequestSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        serializer = DsarRejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._respond(self._call(dsar_reject, **serializer.validated_data))

    @extend_schema(request=DsarExtendSerializer, responses={200: DataSubjectRequestSerializer})
    @action(detail=True, methods=["post"])
    def extend(self, request, pk=None):
        serializer = DsarExtendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._respond(self._call(dsar_extend, **serializer.validated_data))

    @extend_schema(request=None, responses={202: DataSubjectRequestSerializer})
    @action(detail=True, methods=["post"])
    def process(self, request, pk=None):
        """Queue the request to run; it must be verified (or in progress, to retry)."""
        request_ = self.get_object()
        if request_.status not in ("verified", "in_progress"):
            raise serializers.ValidationError(
                {"status": [f"request #{request_.pk} is {request_.status}: verify it first"]}
            )
        actor_id = getattr(request.user, "pk", None)
        transaction.on_commit(
            lambda: process_data_subject_request_task.delay(request_.pk, actor_id)
        )
        return Response(self.get_serializer(request_).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: DataSubjectRequestActionSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def actions(self, request, pk=None):
        """The request's audit trail: who did what, when."""
        rows = self.get_object().actions.all()
        return Response(DataSubjectRequestActionSerializer(rows, many=True).data)

    @extend_schema(responses={(200, "application/zip"): bytes})
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        """The access/portability file; it is the person's data, so it needs PII access."""
        request_ = self.get_object()
        if not can_view_pii(request.user, request.auth):
            raise exceptions.PermissionDenied("the result file holds personal data: needs pii:read")
        if not request_.result_file:
            raise exceptions.NotFound("this request has no result file")
        file = dsar_result_open(request=request_, actor=request.user)
        return FileResponse(
            file, as_attachment=True, filename=request_.result_file.name.rsplit("/", 1)[-1]
        )


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


class ProcessingActivityViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """The register of processing activities (GDPR Art. 30); ``export`` returns it as CSV."""

    queryset = ProcessingActivity.objects.prefetch_related("purposes")
    serializer_class = ProcessingActivitySerializer
    filterset_class = filters.ProcessingActivityFilter

    @extend_schema(responses={(200, "text/csv"): bytes})
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The register of processing activities as a CSV file."""
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="processing-activities.csv"'
        write_register_csv(response, self.filter_queryset(self.get_queryset()).order_by("name"))
        return response
