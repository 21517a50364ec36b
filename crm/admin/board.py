"""The pipeline board in the admin: Deals -> Board.

A page per pipeline (``board/?pipeline=<id>``), a fragment per further page of a column, and
the move a drag and drop (or a card's "Move to" form, for the keyboard and without scripts)
posts. Viewing needs the view permission on deals, moving the change permission; the sales
team rule decides which deals show and which can be moved."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from crm import services
from crm.board import PAGE_SIZE, BoardFilterForm, board_columns, board_deals, column_page
from crm.board import column_totals as board_column_totals
from crm.models import Deal, Pipeline, Stage
from crm.selectors import visible_to


class PipelineBoardMixin:
    """Adds the board's pages to the deal admin."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("board/", view(self.board_view), name="crm_deal_board"),
            path(
                "board/column/<int:stage_id>/",
                view(self.board_column_view),
                name="crm_deal_board_column",
            ),
            path("board/move/", view(self.board_move_view), name="crm_deal_board_move"),
            *super().get_urls(),
        ]

    def board_filters(self, request) -> tuple[BoardFilterForm, dict]:
        form = BoardFilterForm(request.GET, user=request.user)
        return form, (form.cleaned_data if form.is_valid() else {})

    @staticmethod
    def board_pipeline(request) -> Pipeline | None:
        wanted = request.GET.get("pipeline") or request.POST.get("pipeline")
        pipelines = Pipeline.objects.order_by("name")
        if wanted and wanted.isdigit():
            return get_object_or_404(pipelines, pk=wanted)
        return pipelines.first()

    @staticmethod
    def _board_query(request) -> str:
        """The board's own query string, carried through a move by the card's form."""
        return request.POST.get("board", "")

    @method_decorator(require_GET)
    def board_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        pipeline = self.board_pipeline(request)
        form, filters = self.board_filters(request)
        columns = []
        if pipeline is not None:
            columns = board_columns(pipeline=pipeline, user=request.user, filters=filters)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Pipeline board: {pipeline}" if pipeline else "Pipeline board",
            "pipeline": pipeline,
            "pipelines": Pipeline.objects.order_by("name"),
            "owners": get_user_model()
            .objects.filter(is_active=True, is_staff=True)
            .order_by("username"),
            "columns": columns,
            "stages": [column.stage for column in columns],
            "filter_form": form,
            "may_move": self.has_change_permission(request),
            "page_size": PAGE_SIZE,
            "query": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/crm/deal/board.html", context)

    @method_decorator(require_GET)
    def board_column_view(self, request, stage_id):
        """The next page of one column's cards, as the list items the board appends."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        stage = get_object_or_404(Stage.objects.select_related("pipeline"), pk=stage_id)
        _, filters = self.board_filters(request)
        offset = request.GET.get("offset", "0")
        if not offset.isdigit():
            raise Http404("offset must be a whole number")
        deals = board_deals(pipeline=stage.pipeline, user=request.user, filters=filters)
        context = {
            "deals": column_page(deals, stage, int(offset)),
            "stages": list(stage.pipeline.stages.order_by("order", "pk")),
            "may_move": self.has_change_permission(request),
            "query": request.GET.urlencode(),
            "pipeline": stage.pipeline,
        }
        return TemplateResponse(request, "admin/crm/deal/board_cards.html", context)

    @method_decorator(require_POST)
    def board_move_view(self, request):
        """Move a deal: JSON for the board's script, a redirect with a message for the form."""
        wants_json = "application/json" in request.headers.get("Accept", "")
        try:
            deal, from_stage, stage = self._move(request)
        except services.DealMoveRefused as refused:
            status = 409 if isinstance(refused, services.DealMoveConflict) else 400
            return self._move_answer(request, wants_json, status, " ".join(refused.messages))
        totals = board_column_totals(
            pipeline=deal.pipeline,
            user=request.user,
            filters=self.board_filters(request)[1],
            stage_ids={from_stage, stage.pk},
        )
        message = f"{deal.name} moved to {stage.name}."
        return self._move_answer(request, wants_json, 200, message, deal=deal, totals=totals)

    def _move(self, request):
        if not self.has_change_permission(request):
            raise services.DealMoveRefused("You may look at deals but not move them.")
        fields = {name: request.POST.get(name, "") for name in ("deal", "stage", "from_stage")}
        if not all(value.isdigit() for value in fields.values()):
            raise services.DealMoveRefused("A move needs a deal, its stage and the new stage.")
        deal = visible_to(request.user, Deal.objects.all()).filter(pk=fields["deal"]).first()
        if deal is None:
            raise services.DealMoveRefused("That deal does not exist or is not yours to see.")
        stage = Stage.objects.select_related("pipeline").filter(pk=fields["stage"]).first()
        if stage is None:
            raise services.DealMoveRefused("That stage does not exist (any more).")
        from_stage = int(fields["from_stage"])
        deal = services.deal_move(
            deal=deal, stage=stage, from_stage_id=from_stage, actor=request.user
        )
        return deal, from_stage, stage

    def _move_answer(self, request, wants_json, status, message, deal=None, totals=None):
        if wants_json:
            body = {"message": message} if status == 200 else {"error": message}
            if deal is not None:
                body["deal"] = {
                    "id": deal.pk,
                    "stage": deal.stage_id,
                    "status": deal.status,
                    "probability": deal.probability,
                }
                body["columns"] = {str(pk): value for pk, value in (totals or {}).items()}
            return JsonResponse(body, status=status)
        level = messages.SUCCESS if status == 200 else messages.ERROR
        self.message_user(request, message, level)
        back = reverse("admin:crm_deal_board") + "?" + self._board_query(request)
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = reverse("admin:crm_deal_board")
        return HttpResponseRedirect(back)
