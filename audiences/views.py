from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audiences.filters import (
    AudienceFilter,
    CategoryFilter,
    DataProviderFilter,
    VisitorFilter,
    VisitorTraitHitFilter,
)
from audiences.lookalike import LookalikeError, lookalike_build
from audiences.models import Audience, Category, DataProvider, Visitor, VisitorTraitHit
from audiences.serializers import (
    AudienceSerializer,
    CategorySerializer,
    DataProviderSerializer,
    LookalikeResultSerializer,
    VisitorSerializer,
    VisitorTraitHitSerializer,
)


class VisitorViewSet(
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


class DataProviderViewSet(viewsets.ModelViewSet):
    queryset = DataProvider.objects.all()
    serializer_class = DataProviderSerializer
    filterset_class = DataProviderFilter
    ordering_fields = ["id", "name"]


class CategoryViewSet(viewsets.ModelViewSet):
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


class AudienceViewSet(viewsets.ModelViewSet):
    queryset = Audience.objects.all()
    serializer_class = AudienceSerializer
    filterset_class = AudienceFilter
    ordering_fields = ["id", "name", "size", "created_at"]

    def perform_create(self, serializer):
        user = self.request.user
        serializer.save(created_by=user if getattr(user, "pk", None) else None)

    @extend_schema(request=None, responses={200: LookalikeResultSerializer})
    @action(detail=True, methods=["post"])
    def build(self, request, pk=None):
        """Build a lookalike audience now: score unlinked visitors against the seed segment."""
        audience = self.get_object()
        try:
            result = lookalike_build(audience=audience)
        except LookalikeError as error:
            raise serializers.ValidationError({"seed_segment": str(error)}) from error
        return Response(LookalikeResultSerializer(result).data)
