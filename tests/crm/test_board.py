"""The pipeline board: moves through the one service (history, stale boards, other pipelines),
columns with totals and pages, the admin page and the API, sales team sight on each."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from cdphub.models import AuditEntry
from crm import board, services
from crm.models import Deal, DealStageChange, ImportJob
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline():
    """Lead -> Proposal -> Won / Lost."""
    sales = factories.PipelineFactory(name="Sales")
    stages = {
        name: factories.StageFactory(pipeline=sales, name=name, order=order, **flags)
        for order, (name, flags) in enumerate(
            [
                ("Lead", {}),
                ("Proposal", {"probability": 60}),
                ("Won", {"is_won": True}),
                ("Lost", {"is_lost": True}),
            ]
        )
    }
    sales.s = stages
    return sales


def deal_in(stage, **fields):
    deal = factories.DealFactory.build(stage=stage, pipeline=stage.pipeline, **fields)
    deal.company.save()
    deal.contact.company = deal.company
    deal.contact.save()
    deal.company_id, deal.contact_id = deal.company.pk, deal.contact.pk
    return services.deal_save(deal=deal)


# --- The service -------------------------------------------------------------------------------


def test_a_move_enters_the_stage_and_is_recorded(pipeline, superuser):
    deal = deal_in(pipeline.s["Lead"])
    entered = deal.stage_entered_at

    moved = services.deal_move(
        deal=deal,
        stage=pipeline.s["Proposal"],
        from_stage_id=pipeline.s["Lead"].pk,
        actor=superuser,
    )

    assert (moved.stage, moved.probability, moved.status) == (pipeline.s["Proposal"], 60, "open")
    assert moved.stage_entered_at > entered
    history = list(
        DealStageChange.objects.filter(deal=deal)
        .order_by("changed_at")
        .values_list("from_stage__name", "to_stage__name", "changed_by__username")
    )
    assert history == [(None, "Lead", None), ("Lead", "Proposal", "root")]
    assert AuditEntry.objects.filter(action="stage.move", object_id=str(deal.pk)).count() == 1


def test_moving_to_won_wins_the_deal(pipeline):
    deal = deal_in(pipeline.s["Proposal"])

    services.deal_move(deal=deal, stage=pipeline.s["Won"], from_stage_id=pipeline.s["Proposal"].pk)

    deal.refresh_from_db()
    assert (deal.status, deal.probability, deal.closed_at is not None) == ("won", 100, True)


def test_a_stage_of_another_pipeline_is_refused_and_changes_nothing(pipeline):
    deal = deal_in(pipeline.s["Lead"])
    elsewhere = factories.StageFactory(name="Elsewhere")

    with pytest.raises(services.DealMoveRefused, match="belongs to pipeline"):
        services.deal_move(deal=deal, stage=elsewhere, from_stage_id=pipeline.s["Lead"].pk)

    deal.refresh_from_db()
    assert deal.stage == pipeline.s["Lead"]
    assert DealStageChange.objects.filter(deal=deal).count() == 1


def test_a_stale_board_is_refused_naming_who_moved_the_deal(pipeline, user_with_role):
    mate = user_with_role("Sales", "mate")
    deal = deal_in(pipeline.s["Lead"])
    services.deal_move(
        deal=deal, stage=pipeline.s["Proposal"], from_stage_id=pipeline.s["Lead"].pk, actor=mate
    )

    with pytest.raises(services.DealMoveConflict, match="mate moved it to 'Proposal'"):
        services.deal_move(deal=deal, stage=pipeline.s["Lost"], from_stage_id=pipeline.s["Lead"].pk)

    deal.refresh_from_db()
    assert deal.stage == pipeline.s["Proposal"]


def test_saving_a_deal_records_a_stage_change_only_when_the_stage_changed(pipeline):
    deal = deal_in(pipeline.s["Lead"])
    deal.amount = 5000
    services.deal_save(deal=deal)
    deal.stage = pipeline.s["Proposal"]
    services.deal_save(deal=deal)

    assert DealStageChange.objects.filter(deal=deal).count() == 2


def test_bulk_stage_change_records_each_deal_that_moved(pipeline):
    moving = deal_in(pipeline.s["Lead"])
    already = deal_in(pipeline.s["Proposal"])

    moved = services.deals_move_to_stage(queryset=Deal.objects.all(), stage=pipeline.s["Proposal"])

    assert moved == 1
    assert DealStageChange.objects.filter(deal=moving, from_stage=pipeline.s["Lead"]).exists()
    assert DealStageChange.objects.filter(deal=already).count() == 1


def test_an_import_records_its_moves_and_reverting_it_removes_them(pipeline, superuser):
    from crm.imports.revert import import_job_revert
    from tests.crm.test_imports import csv_bytes, imported

    deal = deal_in(pipeline.s["Lead"], name="Acme renewal")
    data = csv_bytes("name,stage", "Acme renewal,Proposal", "Brand new,Lead")
    job = imported(data, resource="deals", key="name", created_by=superuser)
    assert job.status == ImportJob.Status.APPLIED, job.errors

    deal.refresh_from_db()
    assert deal.stage == pipeline.s["Proposal"]
    moves = DealStageChange.objects.filter(changed_by=superuser)
    assert sorted(moves.values_list("deal__name", "from_stage__name", "to_stage__name")) == [
        ("Acme renewal", "Lead", "Proposal"),
        ("Brand new", None, "Lead"),
    ]

    import_job_revert(job=job)

    deal.refresh_from_db()
    assert (deal.stage, deal.stage_entered_at < job.created_at) == (pipeline.s["Lead"], True)
    assert not DealStageChange.objects.filter(changed_by=superuser).exists()


# --- Columns -----------------------------------------------------------------------------------


def test_columns_have_totals_per_currency_and_a_first_page(pipeline, superuser):
    for _ in range(board.PAGE_SIZE + 2):
        deal_in(pipeline.s["Lead"], amount=100)
    deal_in(pipeline.s["Lead"], amount=50, currency="USD")
    soon = deal_in(pipeline.s["Lead"], expected_close_date=date.today())

    columns = board.board_columns(pipeline=pipeline, user=superuser, filters={})

    lead = columns[0]
    assert [c.stage.name for c in columns] == ["Lead", "Proposal", "Won", "Lost"]
    assert lead.count == board.PAGE_SIZE + 4
    assert dict(lead.amounts) == {"EUR": (board.PAGE_SIZE + 2) * 100 + 1000, "USD": 50}
    assert len(lead.deals) == board.PAGE_SIZE and lead.has_more
    assert lead.deals[0] == soon  # closing soonest first
    assert columns[1].count == 0 and columns[1].deals == []


def test_won_and_lost_columns_show_recently_closed_deals_only(pipeline, superuser):
    recent = deal_in(pipeline.s["Won"])
    old = deal_in(pipeline.s["Won"])
    Deal.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=90))

    won = board.board_columns(pipeline=pipeline, user=superuser, filters={})[2]

    assert won.deals == [recent]


def test_a_sales_rep_sees_the_team_deals_only_and_the_totals_agree(pipeline, sales_org, fresh):
    for name in ("me", "mate", "rival", "nobody"):
        deal_in(pipeline.s["Lead"], owner=getattr(sales_org, name, None), name=f"of {name}")

    lead = board.board_columns(pipeline=pipeline, user=fresh(sales_org.me), filters={})[0]

    assert sorted(deal.name for deal in lead.deals) == ["of mate", "of me", "of nobody"]
    assert lead.count == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"owner": "me"}, ["of me"]),
        ({"team": "South"}, ["of rival"]),
        ({"close_after": "2030-01-01"}, ["of mate"]),
        ({"close_before": "2029-12-31"}, ["of me"]),
    ],
)
def test_filters(pipeline, sales_org, superuser, query, expected):
    deal_in(
        pipeline.s["Lead"], owner=sales_org.me, name="of me", expected_close_date=date(2029, 6, 1)
    )
    deal_in(
        pipeline.s["Lead"],
        owner=sales_org.mate,
        name="of mate",
        expected_close_date=date(2030, 6, 1),
    )
    deal_in(pipeline.s["Lead"], owner=sales_org.rival, name="of rival")
    if "team" in query:
        query = {"team": str(sales_org.south.pk)}
    form = board.BoardFilterForm(query, user=sales_org.me)
    assert form.is_valid(), form.errors

    columns = board.board_columns(pipeline=pipeline, user=superuser, filters=form.cleaned_data)

    assert sorted(deal.name for deal in columns[0].deals) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"owner": "someone"}, "No user with id 'someone'"),
        ({"owner": "99999"}, "No user with id '99999'"),
        ({"close_after": "tomorrow"}, "Enter a valid date"),
        ({"close_after": "2030-02-01", "close_before": "2030-01-01"}, "ends before it starts"),
    ],
)
def test_bad_filters_are_named(superuser, query, message):
    form = board.BoardFilterForm(query, user=superuser)

    assert not form.is_valid()
    assert message in " ".join(m for messages in form.errors.values() for m in messages)


# --- The admin page ----------------------------------------------------------------------------


@pytest.fixture
def rep_client(client, sales_org):
    client.force_login(sales_org.me)
    return client


def test_the_board_page_shows_columns_and_visible_deals(rep_client, pipeline, sales_org):
    deal_in(pipeline.s["Lead"], owner=sales_org.me, name="Mine to close", amount=1234)
    deal_in(pipeline.s["Lead"], owner=sales_org.rival, name="Rival's secret")

    response = rep_client.get(reverse("admin:crm_deal_board"), {"pipeline": pipeline.pk})

    assert response.status_code == 200
    body = response.content.decode()
    assert "Mine to close" in body and "EUR 1,234" in body
    assert "Rival&#x27;s secret" not in body and "Rival's secret" not in body
    for stage in ("Lead", "Proposal", "Won", "Lost"):
        assert f'<h2 id="stage-{pipeline.s[stage].pk}">{stage}</h2>' in body


def test_the_board_needs_the_permission_to_view_deals(client, user_with_role, pipeline):
    client.force_login(user_with_role("Analyst"))
    user = user_with_role("Analyst", "nobody_crm")
    user.groups.clear()
    client.force_login(user)

    assert client.get(reverse("admin:crm_deal_board")).status_code == 403


def test_a_viewer_sees_the_board_without_move_forms_and_cannot_move(
    client, user_with_role, pipeline
):
    client.force_login(user_with_role("Marketer"))  # views the CRM, does not change it
    deal = deal_in(pipeline.s["Lead"])

    page = client.get(reverse("admin:crm_deal_board"))
    answer = client.post(
        reverse("admin:crm_deal_board_move"),
        {"deal": deal.pk, "from_stage": pipeline.s["Lead"].pk, "stage": pipeline.s["Won"].pk},
        HTTP_ACCEPT="application/json",
    )

    assert page.status_code == 200 and "board-move" not in page.content.decode()
    assert answer.status_code == 400 and "not move them" in answer.json()["error"]
    deal.refresh_from_db()
    assert deal.stage == pipeline.s["Lead"]


def test_a_move_from_the_script_answers_with_the_new_totals(rep_client, pipeline, sales_org):
    deal = deal_in(pipeline.s["Lead"], owner=sales_org.me, amount=700)

    answer = rep_client.post(
        reverse("admin:crm_deal_board_move"),
        {"deal": deal.pk, "from_stage": pipeline.s["Lead"].pk, "stage": pipeline.s["Proposal"].pk},
        HTTP_ACCEPT="application/json",
    )

    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["deal"]["stage"] == pipeline.s["Proposal"].pk
    assert data["columns"][str(pipeline.s["Lead"].pk)] == {"count": 0, "amounts": []}
    assert data["columns"][str(pipeline.s["Proposal"].pk)] == {
        "count": 1,
        "amounts": [["EUR", "700.00"]],
    }


def test_a_move_from_the_form_redirects_to_the_board_with_a_message(
    rep_client, pipeline, sales_org
):
    deal = deal_in(pipeline.s["Lead"], owner=sales_org.me)

    answer = rep_client.post(
        reverse("admin:crm_deal_board_move"),
        {
            "deal": deal.pk,
            "from_stage": pipeline.s["Lead"].pk,
            "stage": pipeline.s["Won"].pk,
            "board": f"pipeline={pipeline.pk}",
        },
        follow=True,
    )

    assert answer.redirect_chain[-1][0].endswith(f"board/?pipeline={pipeline.pk}")
    assert f"{deal.name} moved to Won." in answer.content.decode()
    deal.refresh_from_db()
    assert deal.status == "won"


def test_refused_moves_from_the_script_say_why(rep_client, pipeline, sales_org):
    deal = deal_in(pipeline.s["Lead"], owner=sales_org.me)
    hidden = deal_in(pipeline.s["Lead"], owner=sales_org.rival)
    elsewhere = factories.StageFactory()
    lead, proposal = pipeline.s["Lead"].pk, pipeline.s["Proposal"].pk
    url = reverse("admin:crm_deal_board_move")

    def post(**fields):
        return rep_client.post(url, fields, HTTP_ACCEPT="application/json")

    other_pipeline = post(deal=deal.pk, from_stage=lead, stage=elsewhere.pk)
    stale = post(deal=deal.pk, from_stage=proposal, stage=pipeline.s["Won"].pk)
    out_of_sight = post(deal=hidden.pk, from_stage=lead, stage=proposal)
    incomplete = post(deal=deal.pk, stage=proposal)

    assert (other_pipeline.status_code, stale.status_code) == (400, 409)
    assert "belongs to pipeline" in other_pipeline.json()["error"]
    assert "no longer where the board showed it" in stale.json()["error"]
    assert out_of_sight.status_code == 400 and "not yours to see" in out_of_sight.json()["error"]
    assert incomplete.status_code == 400
    assert set(Deal.objects.values_list("stage_id", flat=True)) == {lead}


def test_a_column_loads_its_next_page(rep_client, pipeline, sales_org):
    for number in range(board.PAGE_SIZE + 3):
        deal_in(pipeline.s["Lead"], owner=sales_org.me, name=f"Deal {number:03}")

    answer = rep_client.get(
        reverse("admin:crm_deal_board_column", args=[pipeline.s["Lead"].pk]),
        {"offset": board.PAGE_SIZE},
    )

    assert answer.status_code == 200
    assert answer.content.decode().count('class="board-card"') == 3


def test_the_contact_timeline_shows_board_moves(admin_client, pipeline):
    deal = deal_in(pipeline.s["Lead"], name="Acme renewal")
    services.deal_move(deal=deal, stage=pipeline.s["Proposal"], from_stage_id=None)

    page = admin_client.get(reverse("admin:crm_contact_change", args=[deal.contact_id]))

    assert "Acme renewal to Proposal" in page.content.decode()


# --- The API -----------------------------------------------------------------------------------


def test_api_board_has_columns_with_totals_and_deals(api_client_with_scopes, pipeline):
    deal = deal_in(pipeline.s["Proposal"], amount=250)
    client = api_client_with_scopes("crm:read")

    answer = client.get(f"/api/crm/pipelines/{pipeline.pk}/board/")

    assert answer.status_code == 200, answer.content
    columns = answer.json()
    assert [column["stage"]["name"] for column in columns] == ["Lead", "Proposal", "Won", "Lost"]
    assert columns[1]["count"] == 1
    assert columns[1]["amounts"] == [{"currency": "EUR", "amount": "250.00"}]
    assert columns[1]["deals"][0]["id"] == deal.pk


def test_api_board_pages_one_column(api_client_with_scopes, pipeline):
    for _ in range(board.PAGE_SIZE + 1):
        deal_in(pipeline.s["Lead"])
    client = api_client_with_scopes("crm:read")

    answer = client.get(
        f"/api/crm/pipelines/{pipeline.pk}/board/",
        {"stage": pipeline.s["Lead"].pk, "offset": board.PAGE_SIZE},
    )

    assert answer.status_code == 200
    assert [len(column["deals"]) for column in answer.json()] == [1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"owner": "x"}, "owner"),
        ({"close_before": "soon"}, "close_before"),
        ({"offset": "-1"}, "offset"),
        ({"stage": "0"}, "stage"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_api_board_names_a_bad_parameter(api_client_with_scopes, pipeline, query, field):
    answer = api_client_with_scopes("crm:read").get(
        f"/api/crm/pipelines/{pipeline.pk}/board/", query
    )

    assert answer.status_code == 400
    assert field in str(answer.json())


def test_api_move(api_client_with_scopes, pipeline):
    deal = deal_in(pipeline.s["Lead"])
    client = api_client_with_scopes("crm:write")
    url = f"/api/crm/deals/{deal.pk}/move/"
    lead, proposal = pipeline.s["Lead"].pk, pipeline.s["Proposal"].pk

    moved = client.post(url, {"stage": proposal, "from_stage": lead}, format="json")
    stale = client.post(url, {"stage": pipeline.s["Won"].pk, "from_stage": lead}, format="json")
    other = client.post(url, {"stage": factories.StageFactory().pk}, format="json")
    missing = client.post(url, {"stage": 0}, format="json")

    assert moved.status_code == 200 and moved.json()["stage"] == proposal
    assert stale.status_code == 409 and "no longer where" in str(stale.json())
    assert other.status_code == 400 and "belongs to pipeline" in str(other.json()["errors"])
    assert missing.status_code == 400
    deal.refresh_from_db()
    assert deal.stage_id == proposal


def test_api_move_needs_the_write_scope(api_client_with_scopes, pipeline):
    deal = deal_in(pipeline.s["Lead"])

    answer = api_client_with_scopes("crm:read").post(
        f"/api/crm/deals/{deal.pk}/move/", {"stage": pipeline.s["Won"].pk}, format="json"
    )

    assert answer.status_code == 403


def test_deal_save_refuses_a_stage_of_another_pipeline(pipeline):
    deal = deal_in(pipeline.s["Lead"])
    deal.stage = factories.StageFactory()

    with pytest.raises(ValidationError):
        services.deal_save(deal=deal)
