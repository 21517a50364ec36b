from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audiences.filters import (
    AudienceFilter,
    CategoryFilter,
    DataProviderFilter,
    VisitorFilter,
    VisitorTraitHitFilter,
)
from audiences.lookalike import lookalike_build_request
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
from audiences.serializers import (
    AudienceBuildSerializer,
    AudienceExportSerializer,
    AudiencePreviewInputSerializer,
    AudiencePreviewSerializer,
    AudienceSerializer,
    AudienceSyncSerializer,
    CategorySerializer,
    DataProviderSerializer,
    ProviderFileImportSerializer,
    VisitorSerializer,
    VisitorTraitHitSerializer,
)
from audiences.services import (
    audience_preview,
    audience_refresh,
    provider_file_import_create,
)
from audiences.syncs import audience_sync_link
from audiences.tasks import lookalike_build_later, provider_file_import_later
from cdphub.api import ProtectedDestroyMixin
from cdphub.parsers import FormParser, MultiPartParser


class VisitorViewSet(
    ProtectedDestroyMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Visitors come from event collection and provider files; here they are read, or deleted
    (an opt-out removes the visitor and its category hits)."""

    queryset = Visitor.objects.all()
    serializer_class = VisitorSerializer
    filterset_class = VisitorFilter
    ordering_fields = ["id", "last_seen_at", "expires_at"]


class DataProviderViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = DataProvider.objects.all()
    serializer_class = DataProviderSerializer
    filterset_class = DataProviderFilter
    ordering_fields = ["id", "name"]


class CategoryViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Category.objects.select_related("parent")
    serializer_class = CategorySerializer
    filterset_class = CategoryFilter
    ordering_fields = ["id", "code", "tier"]


class VisitorTraitHitViewSet(viewsets.ReadOnlyModelViewSet):
    """Category hits with their expiry; written by provider file imports."""

    queryset = VisitorTraitHit.objects.select_related("category")
    serializer_class = VisitorTraitHitSerializer
    filterset_class = VisitorTraitHitFilter
    ordering_fields = ["id", "observed_at", "expires_at"]


class AudienceViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Audience.objects.all()
    serializer_class = AudienceSerializer
    filterset_class = AudienceFilter
    ordering_fields = ["id", "name", "size", "created_at"]

    def perform_create(self, serializer):
        user = self.request.user
        serializer.save(created_by=user if getattr(user, "pk", None) else None)

    @extend_schema(request=AudiencePreviewInputSerializer, responses=AudiencePreviewSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Size estimate while editing: visitors matching a rule now, and a sample."""
        data = AudiencePreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(audience_preview(rule=data.validated_data["rule"]))

    @extend_schema(
        request=None,
        responses={200: AudienceBuildSerializer, 202: AudienceSerializer},
    )
    @action(detail=True, methods=["post"])
    def build(self, request, pk=None):
        """Build the audience: a rule audience now, from its rule (200 with its size); a
        lookalike in the background (202 with the audience: poll it until ``build_status`` is
        ``ready`` or ``failed``, ``build_message`` says how it ended)."""
        audience = self.get_object()
        if audience.kind == Audience.Kind.RULE:
            return Response({"size": audience_refresh(audience=audience)})
        audience = lookalike_build_request(audience=audience, actor=request.user)
        lookalike_build_later(audience)
        return Response(AudienceSerializer(audience).data, status=status.HTTP_202_ACCEPTED)


class ProviderFileImportViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Upload a provider segment file (multipart: provider, file); the import runs in the
    background; poll the job for progress and bad rows."""

    queryset = ProviderFileImport.objects.all()
    serializer_class = ProviderFileImportSerializer
    parser_classes = [MultiPartParser, FormParser]
    filterset_fields = ["provider", "status"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        job = provider_file_import_create(
            provider=serializer.validated_data["provider"],
            file=serializer.validated_data["file"],
            created_by=user,
        )
        provider_file_import_later(job)
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)


class AudienceExportViewSet(viewsets.ReadOnlyModelViewSet):
    """Export jobs (who, when, destination, rows). Files are downloaded from the admin."""

    queryset = AudienceExport.objects.all()
    serializer_class = AudienceExportSerializer
    filterset_fields = ["destination", "status", "audience", "segment"]


class AudienceSyncViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Audience syncs of visitors: link a destination created to receive a DMP audience
    (``receiving: "audience"`` on ``/api/destinations/``) to an audience; its initial load
    starts, then who enters and exits. A link stays: pause or delete the destination to stop."""

    queryset = AudienceSync.objects.select_related("destination")
    serializer_class = AudienceSyncSerializer
    filterset_fields = ["audience", "destination"]

    def perform_create(self, serializer):
        user = self.request.user
        serializer.instance = audience_sync_link(
            audience=serializer.validated_data["audience"],
            destination=serializer.validated_data["destination"],
            actor=user if getattr(user, "pk", None) else None,
        )
