"""The CDP's REST API: sources, profiles (with manual merge), identities, events, segments
(preview, refresh, members, exports), merges (undo), the merge-conflict queue, rejected
messages (retry) and tracking plans (violations, observed events, generation). The collection
endpoints are apart, in profiles.ingest.endpoints."""

from __future__ import annotations

from django.db import transaction
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from cdphub.api import ErrorSerializer, Pagination, ProtectedDestroyMixin, refuse_unknown_parameters
from cdphub.deletion import DeleteProtected, delete_blockers
from cdphub.delivery import deliveries_retry, deliveries_schedule, delivery_history
from cdphub.models import ApiKey, Delivery, DeliveryAttempt
from cdphub.parsers import FormParser, MultiPartParser
from cdphub.pii import can_view_pii
from profiles.destinations.services import (
    destination_create,
    destination_delete,
    destination_pause,
    destination_resume,
    destination_update,
)
from profiles.destinations.stream import destination_replay
from profiles.filters import (
    EventFilter,
    IdentityFilter,
    MergeConflictFilter,
    ProfileFilter,
    ProfileMergeFilter,
    RejectedMessageFilter,
    SegmentFilter,
    SourceFilter,
)
from profiles.ingest import plans
from profiles.ingest.collect import rejected_message_retry
from profiles.models import (
    ComputedTrait,
    Destination,
    Event,
    Identity,
    MergeConflict,
    Profile,
    ProfileMerge,
    RejectedMessage,
    Segment,
    SegmentMembershipChange,
    SegmentSizeSnapshot,
    Source,
    TrackingPlan,
    TrackingPlanViolation,
)
from profiles.resolution.merges import (
    merge_conflict_approve,
    merge_conflict_reject,
    profile_merge_undo,
    profiles_merge_manual,
)
from profiles.segments import defined_traits
from profiles.segments.defined_traits import DEFINITION_FIELDS
from profiles.segments.exports import (
    EXPORT_FIELDS,
    segment_export_csv,
    segment_export_request,
)
from profiles.segments.membership import (
    segment_is_personal,
    segment_members,
    segment_membership,
    segment_preview,
    segment_static_upload,
)
from profiles.selectors import profile_resolve
from profiles.serializers import (
    ComputedTraitPreviewSerializer,
    ComputedTraitSerializer,
    DeliveryAttemptSerializer,
    DeliveryHourSerializer,
    DeliveryRetriedSerializer,
    DeliveryRetrySerializer,
    DeliverySerializer,
    DestinationCreatedSerializer,
    DestinationPauseSerializer,
    DestinationReplayedSerializer,
    DestinationReplaySerializer,
    DestinationSerializer,
    EventSerializer,
    IdentitySerializer,
    MergeConflictSerializer,
    ObservedSerializer,
    ProfileMergeInputSerializer,
    ProfileMergeSerializer,
    ProfileSerializer,
    RejectedMessageSerializer,
    SegmentDetailSerializer,
    SegmentExportSerializer,
    SegmentMemberSerializer,
    SegmentMembershipChangeSerializer,
    SegmentMembershipCheckSerializer,
    SegmentPreviewInputSerializer,
    SegmentPreviewSerializer,
    SegmentRefreshSerializer,
    SegmentSizeSnapshotSerializer,
    SegmentUploadResultSerializer,
    SegmentUploadSerializer,
    SourceCreatedSerializer,
    SourceSerializer,
    TrackingPlanDaysSerializer,
    TrackingPlanGenerateSerializer,
    TrackingPlanObservedInputSerializer,
    TrackingPlanSerializer,
    TrackingPlanViolationSerializer,
    TrackingPlanViolationSummarySerializer,
)
from profiles.services import source_create, source_rotate_write_key
from profiles.tasks import (
    recompute_defined_trait_task,
    refresh_segment_task,
    remove_defined_trait_values_task,
    run_segment_export_task,
)

REFUSED = OpenApiResponse(ErrorSerializer, description="The merge or decision is not possible.")


def acting_user(request):
    return request.user if getattr(request.user, "pk", None) else None


class SourceViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    filterset_class = SourceFilter
    ordering_fields = ["id", "name", "created_at"]

    @extend_schema(responses={201: SourceCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source, write_key = source_create(**serializer.validated_data, actor=acting_user(request))
        source.write_key = write_key
        return Response(SourceCreatedSerializer(source).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: SourceCreatedSerializer},
        summary="Rotate the write key: the old key is refused within a second; the new one is "
        "in this answer only",
    )
    @action(detail=True, methods=["post"], url_path="rotate-write-key")
    def rotate_write_key(self, request, pk=None):
        source = self.get_object()
        source.write_key = source_rotate_write_key(source=source, actor=acting_user(request))
        return Response(SourceCreatedSerializer(source).data)


class ProfileViewSet(
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
        merges = profiles_merge_manual(
            profile_ids=[profile.pk, *data.validated_data["profile_ids"]],
            merged_by=acting_user(request),
        )
        return Response(ProfileMergeSerializer(merges, many=True).data)


class IdentityViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Identity.objects.all()
    serializer_class = IdentitySerializer
    filterset_class = IdentityFilter


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter


class SegmentMembersPagination(Pagination):
    # (segment, profile) is unique and indexed: pages are index range scans.
    ordering = "-profile_id"


class SegmentViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """Segments: CRUD with a validated rule, preview, members, membership check, refresh,
    static list upload, history and consent-checked exports."""

    queryset = Segment.objects.select_related("created_by")
    serializer_class = SegmentDetailSerializer
    filterset_class = SegmentFilter
    ordering_fields = ["id", "name", "size", "created_at"]

    def perform_create(self, serializer):
        user = self.request.user
        segment = serializer.save(created_by=user if getattr(user, "pk", None) else None)
        self.queue_refresh(segment)

    def perform_update(self, serializer):
        self.queue_refresh(serializer.save())

    def get_readable_segment(self) -> Segment:
        """The segment, if the caller may see who is in it: a rule on personal data would
        otherwise answer questions about personal data to someone who may not see it."""
        segment = self.get_object()
        request = self.request
        if segment_is_personal(segment) and not can_view_pii(request.user, request.auth):
            raise PermissionDenied(
                "this segment's rule has conditions on personal data: its members, sizes and "
                "history need personal data access (pii:read)"
            )
        return segment

    def queue_refresh(self, segment: Segment) -> None:
        if segment.kind == Segment.Kind.DYNAMIC:
            transaction.on_commit(lambda: refresh_segment_task.delay(segment.pk))

    @extend_schema(request=SegmentPreviewInputSerializer, responses=SegmentPreviewSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Count and a sample of who a rule selects now, before saving it."""
        params = SegmentPreviewInputSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        params.is_valid(raise_exception=True)
        result = segment_preview(
            rule=params.validated_data["rule"],
            sample_size=params.validated_data["sample_size"],
            segment_id=params.validated_data.get("segment"),
        )
        context = self.get_serializer_context()
        return Response(SegmentPreviewSerializer(result, context=context).data)

    @extend_schema(responses=SegmentMemberSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None)
    def members(self, request, pk=None):
        """The members as of the last refresh, newest profiles first."""
        memberships = segment_members(self.get_readable_segment())
        paginator = SegmentMembersPagination()
        page = paginator.paginate_queryset(memberships, request, view=self)
        data = SegmentMemberSerializer(page, many=True, context=self.get_serializer_context()).data
        return paginator.get_paginated_response(data)

    @extend_schema(responses=SegmentMembershipCheckSerializer)
    @action(
        detail=True,
        methods=["get"],
        url_path=r"members/(?P<profile_id>[0-9]+)",
        url_name="membership",
        filterset_class=None,
    )
    def membership(self, request, pk=None, profile_id=None):
        """Is this profile (or the profile it was merged into) a member?"""
        membership = segment_membership(self.get_readable_segment(), int(profile_id))
        data = {
            "profile": membership.profile_id if membership else int(profile_id),
            "member": membership is not None,
            "entered_at": membership.entered_at if membership else None,
        }
        return Response(SegmentMembershipCheckSerializer(data).data)

    @extend_schema(request=None, responses={202: SegmentRefreshSerializer})
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Queue a refresh now; its status and any error show on the segment."""
        segment = self.get_object()
        transaction.on_commit(lambda: refresh_segment_task.delay(segment.pk))
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=SegmentUploadSerializer, responses=SegmentUploadResultSerializer)
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def upload(self, request, pk=None):
        """Replace a static segment's members by an uploaded CSV of e-mails or user ids."""
        segment = self.get_object()
        params = SegmentUploadSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if segment.kind != Segment.Kind.STATIC:
            raise ValidationError({"file": ["only static segments take an uploaded list"]})
        data = params.validated_data["file"].read()
        try:
            result = segment_static_upload(
                segment=segment, data=data, kind=params.validated_data["identifier_kind"]
            )
        except UnicodeDecodeError as error:
            raise ValidationError({"file": ["the file must be UTF-8 encoded CSV"]}) from error
        return Response(SegmentUploadResultSerializer(result).data)

    @extend_schema(responses=SegmentMembershipChangeSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None)
    def history(self, request, pk=None):
        """Who entered and exited, newest first."""
        changes = SegmentMembershipChange.objects.filter(segment=self.get_readable_segment())
        page = self.paginate_queryset(changes)
        data = SegmentMembershipChangeSerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(responses=SegmentSizeSnapshotSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def sizes(self, request, pk=None):
        """The size after each of the last 200 refreshes, oldest first."""
        snapshots = SegmentSizeSnapshot.objects.filter(segment=self.get_readable_segment())[:200]
        data = SegmentSizeSnapshotSerializer(reversed(list(snapshots)), many=True).data
        return Response(data)

    @extend_schema(
        request=SegmentExportSerializer,
        responses={(200, "text/csv"): OpenApiTypes.STR, 202: SegmentRefreshSerializer},
    )
    @action(detail=True, methods=["post"])
    def export(self, request, pk=None):
        """Members who granted the purpose, as a CSV download or POSTed to a webhook. Exports
        carry e-mail addresses and phone numbers: they need the PII permission. A webhook URL
        reaching an internal address (loopback, private, link-local, cloud metadata) is
        refused; a queued export records its outcome, shown among the requester's jobs."""
        segment = self.get_object()
        if not can_view_pii(request.user, request.auth):
            raise PermissionDenied("exporting members needs the pii:read scope or PII permission")
        params = SegmentExportSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        purpose = params.validated_data["purpose"]
        if params.validated_data["format"] == "webhook":
            export = segment_export_request(
                segment=segment,
                purpose_code=purpose,
                url=params.validated_data["url"],
                user=acting_user(request),
            )
            transaction.on_commit(lambda: run_segment_export_task.delay(export.pk))
            return Response(
                {"status": "queued", "export": export.pk}, status=status.HTTP_202_ACCEPTED
            )
        fields = params.validated_data.get("fields", EXPORT_FIELDS)
        lines = segment_export_csv(segment=segment, purpose_code=purpose, fields=fields)
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        filename = f"segment-{segment.pk}-{purpose}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ProfileMergeViewSet(viewsets.ReadOnlyModelViewSet):
    """Merges (audit rows, newest first); ``undo`` splits a merge again."""

    queryset = ProfileMerge.objects.all()
    serializer_class = ProfileMergeSerializer
    filterset_class = ProfileMergeFilter

    @extend_schema(request=None, responses={200: ProfileMergeSerializer, 400: REFUSED})
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        merge = profile_merge_undo(merge=self.get_object(), undone_by=acting_user(request))
        return Response(ProfileMergeSerializer(merge).data)


class MergeConflictViewSet(viewsets.ReadOnlyModelViewSet):
    """Profiles an identifier links but no rule allowed to merge: approve (merge) or reject."""

    queryset = MergeConflict.objects.all()
    serializer_class = MergeConflictSerializer
    filterset_class = MergeConflictFilter

    def decide(self, request, service):
        conflict = service(conflict=self.get_object(), decided_by=acting_user(request))
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


# A destination's history per hour goes back as far as its attempts are kept by default.
MAX_HISTORY_HOURS = 14 * 24
DAYS_PARAMETER = OpenApiParameter(
    "days", int, description="The last days counted (1 to 90; default 7), today included."
)


class ComputedTraitViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """Computed traits that marketers define. Saving one computes it for every profile in the
    background (``status`` says how far); deleting one removes its values from profiles.
    Every write goes through ``profiles.segments.defined_traits``."""

    queryset = ComputedTrait.objects.all()
    serializer_class = ComputedTraitSerializer
    filterset_fields = {"kind": ["exact"], "status": ["exact"], "key": ["exact"]}
    ordering_fields = ["id", "name", "key", "updated_at"]

    def perform_create(self, serializer):
        trait = ComputedTrait(**serializer.validated_data)
        self.saved(defined_traits.computed_trait_save(trait=trait, by=acting_user(self.request)))
        serializer.instance = trait

    def perform_update(self, serializer):
        trait = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(trait, field, value)
        self.saved(defined_traits.computed_trait_save(trait=trait))

    def saved(self, trait: ComputedTrait) -> None:
        transaction.on_commit(lambda: recompute_defined_trait_task.delay(trait.pk))

    def perform_destroy(self, instance):
        # A segment or destination whose rule reads the trait refuses the delete (a 409).
        key = defined_traits.computed_trait_delete(trait=instance)
        transaction.on_commit(lambda: remove_defined_trait_values_task.delay(key))

    @extend_schema(
        request=ComputedTraitSerializer,
        responses=ComputedTraitPreviewSerializer,
        summary="A definition computed for a sample of recently active profiles, not saved",
    )
    @action(detail=False, methods=["post"], filterset_fields=None)
    def preview(self, request):
        """Values are masked unless the caller may see personal data (pii:read). With ``id``,
        the changes given are previewed on that saved trait (its key stays its own)."""
        saved = self.saved_trait(request.data)
        definition = ComputedTraitSerializer(saved, data=request.data, partial=saved is not None)
        definition.is_valid(raise_exception=True)
        trait = ComputedTrait(
            **{
                **{field: getattr(saved, field) for field in DEFINITION_FIELDS if saved},
                **definition.validated_data,
            }
        )
        preview = defined_traits.defined_trait_preview(
            trait, pii=can_view_pii(request.user, request.auth)
        )
        examples = [{"profile": pk, "value": value} for pk, value in preview["examples"]]
        return Response({**preview, "examples": examples})

    def saved_trait(self, data) -> ComputedTrait | None:
        """The saved trait a preview changes (``id``), or None for a new definition."""
        identifier = data.get("id") if isinstance(data, dict) else None
        if identifier in (None, ""):
            return None
        trait = None
        if str(identifier).isdigit() and not isinstance(identifier, bool):
            trait = ComputedTrait.objects.filter(pk=int(identifier)).first()
        if trait is None:
            raise ValidationError({"id": [f"no saved computed trait has the id {identifier!r}"]})
        return trait

    @extend_schema(request=None, responses=ComputedTraitSerializer)
    @action(detail=True, methods=["post"], filterset_fields=None)
    def recompute(self, request, pk=None):
        """Compute the trait again for every profile, in the background."""
        trait = self.get_object()
        ComputedTrait.objects.filter(pk=trait.pk).update(status=ComputedTrait.Status.NEW)
        transaction.on_commit(lambda: recompute_defined_trait_task.delay(trait.pk))
        trait.refresh_from_db()
        return Response(self.get_serializer(trait).data, status=status.HTTP_202_ACCEPTED)


class TrackingPlanViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """Tracking plans: the events sources may send with a JSON Schema of their properties, the
    sources following each and what a violation does; their violations, what a source sends
    (observed) and a draft plan generated from it. Every write goes through
    ``profiles.ingest.plans``."""

    queryset = TrackingPlan.objects.prefetch_related("events", "sources")
    serializer_class = TrackingPlanSerializer
    filterset_fields = {"status": ["exact"], "name": ["exact", "icontains"]}
    ordering_fields = ["id", "name", "updated_at"]

    def perform_create(self, serializer):
        plan = plans.tracking_plan_create(
            **serializer.validated_data, actor=acting_user(self.request)
        )
        serializer.instance = self.get_queryset().get(pk=plan.pk)

    def perform_update(self, serializer):
        plan = plans.tracking_plan_update(
            plan=serializer.instance, **serializer.validated_data, actor=acting_user(self.request)
        )
        serializer.instance = self.get_queryset().get(pk=plan.pk)

    def perform_destroy(self, instance):
        blockers = delete_blockers(instance)
        if blockers:
            raise DeleteProtected(instance, blockers)
        plans.tracking_plan_delete(plan=instance, actor=acting_user(self.request))

    @extend_schema(
        parameters=[DAYS_PARAMETER],
        responses=TrackingPlanViolationSummarySerializer(many=True),
        summary="The plan's violations of the last days",
        description="Per source, event, property and kind, most frequent first, with the "
        "latest examples.",
    )
    @action(detail=True, methods=["get"], filterset_fields=None, pagination_class=None)
    def violations(self, request, pk=None):
        plan = self.get_object()
        refuse_unknown_parameters(request, None, self, takes=("days",))
        params = TrackingPlanDaysSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        summary = plans.violations_summary(plan=plan, days=params.validated_data["days"])
        context = self.get_serializer_context()
        return Response(
            TrackingPlanViolationSummarySerializer(summary, many=True, context=context).data
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("source", int, required=True, description="The source's id."),
            DAYS_PARAMETER,
        ],
        responses=ObservedSerializer,
        summary="The events a source sent lately and the types of their properties",
        description="From at most 10,000 of its events of the last days, the newest days first.",
    )
    @action(detail=False, methods=["get"], filterset_fields=None, pagination_class=None)
    def observed(self, request):
        refuse_unknown_parameters(request, None, self, takes=("source", "days"))
        params = TrackingPlanObservedInputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        observed = plans.observed_events(
            source=params.validated_data["source"], days=params.validated_data["days"]
        )
        return Response(ObservedSerializer(observed).data)

    @extend_schema(
        request=TrackingPlanGenerateSerializer,
        responses={201: TrackingPlanSerializer},
        summary="A draft plan of what a source sent lately",
        description="Made from what `observed` answers; the source follows it if it follows "
        "no plan yet.",
    )
    @action(detail=False, methods=["post"], filterset_fields=None, pagination_class=None)
    def generate(self, request):
        params = TrackingPlanGenerateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        plan = plans.tracking_plan_generate(**params.validated_data, actor=acting_user(request))
        data = self.get_serializer(self.get_queryset().get(pk=plan.pk)).data
        return Response(data, status=status.HTTP_201_CREATED)


class TrackingPlanViolationViewSet(viewsets.ReadOnlyModelViewSet):
    """Violations of tracking plans per day, source, event, property and kind, with the latest
    examples (values masked without personal data access)."""

    queryset = TrackingPlanViolation.objects.all()
    serializer_class = TrackingPlanViolationSerializer
    filterset_fields = {
        "plan": ["exact"],
        "source": ["exact"],
        "kind": ["exact"],
        "event_type": ["exact"],
        "event_name": ["exact"],
        "property": ["exact"],
        "day": ["exact", "gte", "lte"],
    }


class DestinationViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """Destinations: where collected events are sent (a webhook: signed JSON batches), what
    each receives, and its deliveries. Every write goes through
    ``profiles.destinations.services``; pausing, resuming and retrying need the permission to
    change destinations (people) or ``profiles:write`` (API keys)."""

    queryset = Destination.objects.all()
    serializer_class = DestinationSerializer
    filterset_fields = {"kind": ["exact"], "status": ["exact"], "name": ["exact", "icontains"]}
    ordering_fields = ["id", "name", "created_at"]

    def check_change_permission(self, request) -> None:
        if isinstance(request.auth, ApiKey):
            return  # profiles:write, checked for every POST
        if not request.user.has_perm("profiles.change_destination"):
            raise PermissionDenied("You may not change destinations.")

    @extend_schema(responses={201: DestinationCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        destination, secret = destination_create(
            **serializer.validated_data, actor=acting_user(request)
        )
        destination.signing_secret = secret
        return Response(
            DestinationCreatedSerializer(destination, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    def perform_update(self, serializer):
        changes = dict(serializer.validated_data)
        for fixed in ("kind", "receiving", "segment"):
            if fixed in changes and changes.pop(fixed) != getattr(serializer.instance, fixed):
                raise ValidationError({fixed: ["cannot be changed"]})
        serializer.instance = destination_update(
            destination=serializer.instance, actor=acting_user(self.request), **changes
        )

    def perform_destroy(self, instance):
        blockers = delete_blockers(instance)
        if blockers:
            raise DeleteProtected(instance, blockers)
        destination_delete(destination=instance, actor=acting_user(self.request))

    @extend_schema(
        request=DestinationPauseSerializer,
        responses=DestinationSerializer,
        summary="Pause: nothing is sent; what it receives meanwhile waits for the resume",
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        self.check_change_permission(request)
        destination = self.get_object()
        params = DestinationPauseSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        destination_pause(
            destination=destination,
            reason=params.validated_data["reason"],
            actor=acting_user(request),
        )
        return Response(self.get_serializer(destination).data)

    @extend_schema(
        request=None,
        responses=DestinationSerializer,
        summary="Resume: send what waited, then new events",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        self.check_change_permission(request)
        destination = destination_resume(destination=self.get_object(), actor=acting_user(request))
        transaction.on_commit(deliveries_schedule)
        return Response(self.get_serializer(destination).data)

    @extend_schema(
        request=DestinationReplaySerializer,
        responses=DestinationReplayedSerializer,
        summary="Replay: send the events of a time range again (a backfill, or after an outage)",
        description="Queues the stored events of [since, until) the destination receives, in "
        "order, with their messageId; consent is checked when they are sent. At most "
        "CDPHUB_REPLAY_MAX_EVENTS (100,000) events: a larger range is a 400, replay it in parts.",
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        self.check_change_permission(request)
        destination = self.get_object()
        params = DestinationReplaySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        queued = destination_replay(
            destination=destination, **params.validated_data, actor=acting_user(request)
        )
        transaction.on_commit(deliveries_schedule)
        return Response({"queued": queued})

    @extend_schema(
        request=DeliveryRetrySerializer,
        responses=DeliveryRetriedSerializer,
        summary="Retry dead letters (the given ones, or all) after the receiver was fixed",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        self.check_change_permission(request)
        destination = self.get_object()
        params = DeliveryRetrySerializer(data=request.data)
        params.is_valid(raise_exception=True)
        deliveries = Delivery.objects.filter(destination=destination)
        if "deliveries" in params.validated_data:
            deliveries = deliveries.filter(pk__in=params.validated_data["deliveries"])
        retried = deliveries_retry(deliveries=deliveries, actor=acting_user(request))
        transaction.on_commit(deliveries_schedule)
        return Response({"retried": retried})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=Delivery.Status.values,
                description="Only deliveries in this status (dead: the dead letters).",
            )
        ],
        responses=DeliverySerializer(many=True),
        summary="The destination's deliveries, newest first",
    )
    @action(detail=True, methods=["get"], filterset_fields=None)
    def deliveries(self, request, pk=None):
        destination = self.get_object()
        refuse_unknown_parameters(request, None, self, takes=("status", "page", "page_size"))
        deliveries = Delivery.objects.filter(destination=destination).order_by("-id")
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in Delivery.Status.values:
                raise ValidationError({"status": [f"one of {', '.join(Delivery.Status.values)}"]})
            deliveries = deliveries.filter(status=wanted)
        page = self.paginate_queryset(deliveries)
        context = self.get_serializer_context()
        return self.get_paginated_response(
            DeliverySerializer(page, many=True, context=context).data
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "hours", int, description="Hours back, 1 to 336 (14 days); 48 if not given."
            )
        ],
        responses=DeliveryHourSerializer(many=True),
        summary="Per hour: events delivered, retried and refused, and the receiver's latency",
    )
    @action(detail=True, methods=["get"], filterset_fields=None)
    def history(self, request, pk=None):
        destination = self.get_object()
        refuse_unknown_parameters(request, None, self, takes=("hours",))
        hours = request.query_params.get("hours", "48")
        if not hours.isdigit() or not 1 <= int(hours) <= MAX_HISTORY_HOURS:
            raise ValidationError({"hours": [f"a whole number from 1 to {MAX_HISTORY_HOURS}"]})
        history = delivery_history(destination, hours=int(hours))
        return Response(DeliveryHourSerializer(history, many=True).data)

    @extend_schema(
        responses=DeliveryAttemptSerializer(many=True),
        summary="The destination's delivery attempts, newest first (status, latency, error)",
    )
    @action(detail=True, methods=["get"], filterset_fields=None)
    def attempts(self, request, pk=None):
        destination = self.get_object()
        refuse_unknown_parameters(request, None, self, takes=("page", "page_size"))
        page = self.paginate_queryset(DeliveryAttempt.objects.filter(destination=destination))
        return self.get_paginated_response(DeliveryAttemptSerializer(page, many=True).data)
