from __future__ import annotations

from django.db.models import F, Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from cdphub.api import Conflict, ErrorSerializer, ProtectedDestroyMixin, refuse_unknown_parameters
from cdphub.models import ApiKey
from cdphub.pii import can_view_pii
from crm import filters, reminders, selectors, serializers, services
from crm.accounts import (
    SuggestionRefused,
    account_suggestion_accept,
    account_suggestion_dismiss,
    with_account_figures,
)
from crm.board import BoardFilterForm, board_columns, board_deals, column_page
from crm.customfields import custom_field_delete, custom_field_save
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
)

ORDERING = ["id", "created_at", "updated_at"]


class VisibleRecordsMixin:
    """Only the records the caller may see: a person as their sales teams allow, an API key
    everything its scopes allow (``crm.selectors.visible_to``). Lists, filters and details all
    start here, so a record out of sight is a 404 like one that does not exist."""

    def get_queryset(self):
        return selectors.visible_to(self.request.user, super().get_queryset())


class TagViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Tag.objects.all()
    serializer_class = serializers.TagSerializer
    filterset_class = filters.TagFilter
    ordering_fields = ["id", "name"]


class CompanyViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    queryset = Company.objects.prefetch_related("tags")
    serializer_class = serializers.CompanySerializer
    filterset_class = filters.CompanyFilter
    ordering_fields = [*ORDERING, "name"]

    def get_queryset(self):
        return with_account_figures(super().get_queryset())


class ContactViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    """Contacts; writes go through the contact service, which normalises e-mail and phone,
    refuses erased people and links the contact to its CDP profile."""

    queryset = Contact.objects.prefetch_related("tags")
    serializer_class = serializers.ContactSerializer
    filterset_class = filters.ContactFilter
    ordering_fields = [*ORDERING, "last_name"]

    def perform_create(self, serializer):
        serializer.instance = services.contact_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.contact_update(
            contact=serializer.instance, **serializer.validated_data
        )

    @extend_schema(
        parameters=[serializers.MailingListQuerySerializer],
        responses=serializers.MailingListContactSerializer(many=True),
    )
    @action(detail=False, url_path="mailing-list")
    def mailing_list(self, request):
        """Contacts a campaign for the purpose may reach now (consent checked per request;
        a withdrawal takes effect at once). Personal data: needs ``pii:read``."""
        if not can_view_pii(request.user, request.auth):
            raise PermissionDenied("A mailing list is personal data: the pii:read scope is needed.")
        refuse_unknown_parameters(request, None, self, takes=("purpose",))
        query = serializers.MailingListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        contacts = selectors.visible_to(
            request.user, selectors.contacts_for_mailing(query.validated_data["purpose"])
        )
        page = self.paginate_queryset(contacts)
        return self.get_paginated_response(
            serializers.MailingListContactSerializer(page, many=True).data
        )


class PipelineViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Pipeline.objects.prefetch_related(
        Prefetch("stages", queryset=Stage.objects.order_by("order"))
    )
    serializer_class = serializers.PipelineSerializer
    filterset_class = filters.PipelineFilter
    ordering_fields = ["id", "name"]

    @extend_schema(
        parameters=[
            OpenApiParameter("owner", str, description='A user id, or "me".'),
            OpenApiParameter("team", int, description="A sales team's id: its people's deals."),
            OpenApiParameter("close_after", OpenApiTypes.DATE),
            OpenApiParameter("close_before", OpenApiTypes.DATE),
            OpenApiParameter("stage", int, description="Only this column, from `offset`."),
            OpenApiParameter("offset", int, description="Where the column's page starts."),
        ],
        responses=serializers.BoardColumnSerializer(many=True),
        summary="The pipeline as a board: per stage its totals and a page of its deals",
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def board(self, request, pk=None):
        """Per stage: the number and amount (per currency) of the deals the caller sees,
        open ones and, in won and lost stages, those closed in the last 30 days, and the first
        page of them, closing soonest first. ``stage`` and ``offset`` page one column."""
        if not isinstance(request.auth, ApiKey) and not request.user.has_perm("crm.view_deal"):
            raise PermissionDenied("Reading the board needs the permission to view deals.")
        refuse_unknown_parameters(
            request,
            None,
            self,
            takes=("owner", "team", "close_after", "close_before", "stage", "offset"),
        )
        pipeline = self.get_object()
        form = BoardFilterForm(request.query_params, user=request.user)
        if not form.is_valid():
            raise ValidationError({name: list(errors) for name, errors in form.errors.items()})
        filters = form.cleaned_data
        columns = board_columns(pipeline=pipeline, user=request.user, filters=filters)
        stage, offset = request.query_params.get("stage"), request.query_params.get("offset", "0")
        if not offset.isdigit():
            raise ValidationError({"offset": ["A whole number, 0 or more."]})
        if stage is not None:
            columns = [column for column in columns if str(column.stage.pk) == stage]
            if not columns:
                raise ValidationError({"stage": [f"No stage {stage} in pipeline {pipeline}."]})
            deals = board_deals(pipeline=pipeline, user=request.user, filters=filters)
            columns[0].deals = column_page(deals, columns[0].stage, int(offset))
        context = self.get_serializer_context()
        return Response(serializers.BoardColumnSerializer(columns, many=True, context=context).data)


class StageViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    queryset = Stage.objects.all()
    serializer_class = serializers.StageSerializer
    filterset_class = filters.StageFilter
    ordering_fields = ["id", "order"]


class DealViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    """Deals; entering a won or lost stage sets the status (and closes the deal)."""

    queryset = Deal.objects.select_related("stage")
    serializer_class = serializers.DealSerializer
    filterset_class = filters.DealFilter
    ordering_fields = [*ORDERING, "amount", "expected_close_date"]

    def perform_create(self, serializer):
        deal = Deal(**serializer.validated_data)
        serializer.instance = services.deal_save(deal=deal, actor=self.request.user)

    def perform_update(self, serializer):
        deal = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(deal, name, value)
        serializer.instance = services.deal_save(deal=deal, actor=self.request.user)

    @extend_schema(
        request=serializers.DealMoveSerializer,
        responses={
            200: serializers.DealSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The deal was moved meanwhile."),
        },
        summary="Move the deal to another stage of its pipeline, as the board does",
        description="A stage of another pipeline is a 400; a deal no longer in `from_stage` "
        "is a 409.",
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def move(self, request, pk=None):
        if not isinstance(request.auth, ApiKey) and not request.user.has_perm("crm.change_deal"):
            raise PermissionDenied("Moving a deal needs the permission to change deals.")
        deal = self.get_object()
        move = serializers.DealMoveSerializer(data=request.data)
        move.is_valid(raise_exception=True)
        try:
            deal = services.deal_move(
                deal=deal,
                stage=move.validated_data["stage"],
                from_stage_id=move.validated_data.get("from_stage"),
                actor=request.user,
            )
        except services.DealMoveConflict as conflict:
            raise Conflict(" ".join(conflict.messages)) from conflict
        except services.DealMoveRefused as refused:
            raise ValidationError({"stage": refused.messages}) from refused
        return Response(self.get_serializer(deal).data)


class ActivityViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    queryset = Activity.objects.all()
    serializer_class = serializers.ActivitySerializer
    filterset_class = filters.ActivityFilter
    ordering_fields = [*ORDERING, "due_at"]


class TicketViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    queryset = Ticket.objects.all()
    serializer_class = serializers.TicketSerializer
    filterset_class = filters.TicketFilter
    ordering_fields = ORDERING


class TaskViewSet(ProtectedDestroyMixin, VisibleRecordsMixin, viewsets.ModelViewSet):
    """Tasks, open ones first; ``remind_minutes_before`` e-mails the owner before the due time
    (a new due time or reminder sends it again)."""

    queryset = Task.objects.order_by(
        F("done_at").asc(nulls_first=True), F("due_at").asc(nulls_last=True), "pk"
    )
    serializer_class = serializers.TaskSerializer
    filterset_class = filters.TaskFilter
    ordering_fields = [*ORDERING, "due_at"]

    def perform_create(self, serializer):
        serializer.instance = reminders.task_save(task=Task(**serializer.validated_data))

    def perform_update(self, serializer):
        task = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(task, field, value)
        reminders.task_save(task=task)

    @extend_schema(request=None, responses=serializers.TaskSerializer)
    @action(detail=True, methods=["post"], filterset_class=None)
    def done(self, request, pk=None):
        """Mark the task done (a task done already keeps its time)."""
        task = self.get_object()
        reminders.tasks_mark_done(tasks=Task.objects.filter(pk=task.pk))
        task.refresh_from_db()
        return Response(self.get_serializer(task).data)


class AccountSuggestionViewSet(VisibleRecordsMixin, viewsets.ReadOnlyModelViewSet):
    """Existing companies an account from group calls may be (its website or domain is their
    domain, or their contacts' e-mail domain): accept or dismiss each."""

    queryset = AccountSuggestion.objects.select_related("account", "company")
    serializer_class = serializers.AccountSuggestionSerializer
    filterset_fields = {"status": ["exact"], "account": ["exact"], "company": ["exact"]}
    ordering_fields = ["id", "created_at"]

    def decide(self, service):
        try:
            return service(suggestion=self.get_object(), by=self.request.user)
        except SuggestionRefused as refused:
            raise Conflict(str(refused)) from refused

    @extend_schema(
        request=None,
        responses={
            200: serializers.CompanySerializer,
            409: OpenApiResponse(ErrorSerializer, description="Refused: `errors` says why."),
        },
        summary="Accept: the company becomes the account",
        description="The company becomes the account (its group id, traits and people); the "
        "company the group calls made is deleted. A 409 says why when refused.",
    )
    @action(detail=True, methods=["post"], filterset_fields=None)
    def accept(self, request, pk=None):
        company = self.decide(account_suggestion_accept)
        context = self.get_serializer_context()
        return Response(serializers.CompanySerializer(company, context=context).data)

    @extend_schema(request=None, responses=serializers.AccountSuggestionSerializer)
    @action(detail=True, methods=["post"], filterset_fields=None)
    def dismiss(self, request, pk=None):
        """Not the same organisation: not suggested again."""
        return Response(self.get_serializer(self.decide(account_suggestion_dismiss)).data)


class CustomFieldViewSet(ProtectedDestroyMixin, viewsets.ModelViewSet):
    """Custom fields of contacts, companies and deals. A change that would leave stored
    values behind (another key or type while records have values, a choice in use removed,
    required while records have none) is a 400 saying how many records; deleting a field
    records have values for is a 409."""

    queryset = CustomField.objects.all()
    serializer_class = serializers.CustomFieldSerializer
    filterset_fields = {"model": ["exact"], "type": ["exact"]}
    ordering_fields = ["id", "order"]

    def perform_create(self, serializer):
        self._save(serializer, CustomField(**serializer.validated_data))

    def perform_update(self, serializer):
        field = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(field, name, value)
        self._save(serializer, field)

    def _save(self, serializer, field):
        serializer.instance = custom_field_save(field=field, actor=self.request.user)

    def perform_destroy(self, instance):
        custom_field_delete(field=instance, actor=self.request.user)  # in use: a 409
