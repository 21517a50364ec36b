from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from profiles.filters import EventFilter, IdentityFilter, ProfileFilter, SegmentFilter, SourceFilter
from profiles.ingest_views import ProfileMergeActionsMixin
from profiles.models import Event, Identity, Profile, Segment, Source
from profiles.selectors import profile_resolve
from profiles.serializers import (
    EventSerializer,
    IdentitySerializer,
    ProfileSerializer,
    SegmentSerializer,
    SourceCreatedSerializer,
    SourceSerializer,
)
from profiles.services import source_create


class SourceViewSet(viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    filterset_class = SourceFilter
    ordering_fields = ["id", "name", "created_at"]

    @extend_schema(responses={201: SourceCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source, write_key = source_create(**serializer.validated_data)
        source.write_key = write_key
        return Response(SourceCreatedSerializer(source).data, status=status.HTTP_201_CREATED)


class ProfileViewSet(
    ProfileMergeActionsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Profiles are created by event collection and the CRM; here they are read and edited.
    A merged profile's id keeps answering with the surviving profile."""

    queryset = Profile.objects.prefetch_related("identities")
    serializer_class = ProfileSerializer
    filterset_class = ProfileFilter
    ordering_fields = ["id", "last_seen_at", "created_at"]

    def get_object(self):
        profile = super().get_object()
        if profile.merged_into_id:
            survivor = profile_resolve(profile.pk)
            self.check_object_permissions(self.request, survivor)
            return survivor
        return profile


class IdentityViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Identity.objects.all()
    serializer_class = IdentitySerializer
    filterset_class = IdentityFilter


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter


class SegmentViewSet(viewsets.ModelViewSet):
    queryset = Segment.objects.all()
    serializer_class = SegmentSerializer
    filterset_class = SegmentFilter
    ordering_fields = ["id", "name", "size", "created_at"]

    def perform_create(self, serializer):
        user = self.request.user
        serializer.save(created_by=user if getattr(user, "pk", None) else None)
