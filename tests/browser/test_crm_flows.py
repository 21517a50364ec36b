"""A sales rep's day in the admin, in a real browser: the pipeline board."""

import pytest

from crm import services
from crm.models import Deal
from tests import factories
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def rep(user_with_role):
    return user_with_role("Sales", "rep")


@pytest.fixture
def pipeline(rep):
    sales = factories.PipelineFactory(name="New business")
    stages = [
        factories.StageFactory(pipeline=sales, name=name, order=order, probability=probability)
        for order, (name, probability) in enumerate([("Lead", 10), ("Proposal", 60)])
    ]
    factories.StageFactory(pipeline=sales, name="Won", order=9, is_won=True)
    for number, amount in enumerate([1200, 800]):
        deal = factories.DealFactory.build(
            name=f"Acme {number}", stage=stages[0], pipeline=sales, amount=amount, owner=rep
        )
        deal.company.save()
        deal.contact.company = deal.company
        deal.contact.save()
        deal.company_id, deal.contact_id = deal.company.pk, deal.contact.pk
        services.deal_save(deal=deal)
    return sales


def column(page, name):
    return page.locator(".board-column", has=page.get_by_role("heading", name=name, exact=True))


def test_rep_drags_a_deal_to_the_next_stage(page, rep, pipeline, screenshot):
    log_in(page, "rep")
    page.goto(f"/admin/crm/deal/board/?pipeline={pipeline.pk}")
    lead, proposal = column(page, "Lead"), column(page, "Proposal")
    assert lead.locator(".board-count").inner_text() == "2 deals"
    assert lead.locator(".board-amounts").inner_text() == "EUR 2,000"
    screenshot(page, "board")

    card = lead.locator(".board-card", has_text="Acme 0")
    card.drag_to(proposal.locator(".board-cards"))

    page.wait_for_selector("#board-message:has-text('Acme 0 moved to Proposal.')")
    assert proposal.locator(".board-card", has_text="Acme 0").is_visible()
    assert lead.locator(".board-count").inner_text() == "1 deal"
    assert proposal.locator(".board-amounts").inner_text() == "EUR 1,200"
    assert Deal.objects.get(name="Acme 0").stage.name == "Proposal"
    screenshot(page, "board-after-drag")


def test_rep_moves_a_deal_with_the_keyboard(page, rep, pipeline):
    log_in(page, "rep")
    page.goto(f"/admin/crm/deal/board/?pipeline={pipeline.pk}")
    move_to = page.get_by_label("Move to").first  # the first card, Acme 0 or Acme 1
    deal_name = page.locator(".board-card").first.locator(".board-card-name").inner_text()

    move_to.focus()
    move_to.select_option(label="Won")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")

    page.wait_for_selector(f"#board-message:has-text('{deal_name} moved to Won.')")
    assert column(page, "Won").locator(".board-card", has_text=deal_name).is_visible()
    assert Deal.objects.get(name=deal_name).status == "won"


def test_a_deal_moved_meanwhile_snaps_back_with_the_reason(page, rep, pipeline, screenshot):
    log_in(page, "rep")
    page.goto(f"/admin/crm/deal/board/?pipeline={pipeline.pk}")
    stale = Deal.objects.get(name="Acme 1")
    services.deal_move(deal=stale, stage=pipeline.stages.get(name="Won"), from_stage_id=None)
    lead, proposal = column(page, "Lead"), column(page, "Proposal")

    lead.locator(".board-card", has_text="Acme 1").drag_to(proposal.locator(".board-cards"))

    page.wait_for_selector("#board-message:has-text('Not moved')")
    assert "no longer where the board showed it" in page.locator("#board-message").inner_text()
    assert lead.locator(".board-card", has_text="Acme 1").is_visible()
    assert proposal.locator(".board-card").count() == 0
    screenshot(page, "board-refused-move")


def test_every_board_control_has_a_label(page, rep, pipeline):
    from tests.browser.test_admin_flows import UNLABELLED_CONTROLS

    log_in(page, "rep")
    page.goto(f"/admin/crm/deal/board/?pipeline={pipeline.pk}")

    assert page.evaluate(UNLABELLED_CONTROLS) == []


def test_rep_logs_a_call_from_the_contact_page(page, rep, pipeline, screenshot):
    contact = Deal.objects.get(name="Acme 0").contact
    log_in(page, "rep")
    page.goto(f"/admin/crm/contact/{contact.pk}/change/")

    page.get_by_role("link", name="Log call").click()
    page.get_by_label("Subject").fill("Called about the renewal")
    page.get_by_label("Outcome").select_option(label="Left voicemail")
    page.get_by_label("Notes").fill("Call back on Monday.")
    screenshot(page, "log-a-call")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()

    assert page.url.endswith(f"/admin/crm/contact/{contact.pk}/change/")
    assert page.get_by_text("Call logged.").is_visible()
    timeline = page.locator("#record-timeline")
    assert timeline.get_by_text("Call - Left voicemail").is_visible()
    assert timeline.get_by_text("Called about the renewal").is_visible()
    call = contact.activities.get()
    assert (call.owner, call.deal.name, call.outcome) == (rep, "Acme 0", "left_voicemail")
    screenshot(page, "contact-after-logging-a-call")


def test_rep_imports_the_valid_rows_and_downloads_the_rest(page, rep, screenshot, tmp_path):
    from crm.models import Contact

    upload = tmp_path / "leads.csv"
    upload.write_text(
        "First Name,Last Name,E-mail address\n"
        "Sanne,de Boer,sanne.deboer@example.com\n"
        "Broken,Row,not-an-address\n"
        "Joost,Bakker,joost.bakker@example.com\n"
    )
    log_in(page, "rep")
    page.goto("/admin/crm/importjob/add/")
    page.get_by_label("Resource").select_option("contacts")
    page.get_by_label("Key").select_option("email")
    page.get_by_label("File").set_input_files(str(upload))
    with page.expect_navigation():
        page.get_by_role("button", name="Upload and check").click()
    page.wait_for_selector("#job-modes")
    assert "2" in page.locator("#job-modes").inner_text()
    screenshot(page, "import-keep-good-rows-preview")

    with page.expect_navigation():
        page.get_by_role("button", name="Apply the valid rows").click()
    page.wait_for_selector("text=Status: Applied")
    assert set(Contact.objects.values_list("email", flat=True)) == {
        "sanne.deboer@example.com",
        "joost.bakker@example.com",
    }
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the rows left out").click()
    rows = download.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert rows[0].startswith("First Name,Last Name,E-mail address,import error")
    assert rows[1].startswith("Broken,Row,not-an-address,")
    assert len(rows) == 2
    screenshot(page, "import-keep-good-rows-applied")
