"""A person's day in the admin, in a real browser."""

import json
from pathlib import Path

import pytest

from cdphub.roles import ROLES
from tests.browser.conftest import log_in
from tests.factories import (
    ContactFactory,
    EventFactory,
    IdentityFactory,
    ProfileFactory,
    SourceFactory,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def customer():
    source = SourceFactory(name="Web shop")
    profile = ProfileFactory(
        traits={"email": "anna.visser@example.com", "firstName": "Anna", "lastName": "Visser"}
    )
    IdentityFactory(profile=profile, kind="email", value="anna.visser@example.com", source=source)
    for name in ("Product Viewed", "Added to Cart", "Order Completed"):
        EventFactory(profile=profile, source=source, name=name)
    return profile


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_logs_in_and_sees_its_dashboard(page, user_with_role, screenshot, role, customer):
    user_with_role(role)

    log_in(page, role.lower().replace(" ", "_"))

    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert page.get_by_text("Profiles", exact=True).first.is_visible()
    screenshot(page, f"dashboard-{role.lower().replace(' ', '-')}")


def test_marketer_finds_a_profile_by_email_and_opens_it(page, user_with_role, screenshot, customer):
    user_with_role("Marketer")
    log_in(page, "marketer")

    page.goto("/admin/profiles/profile/")
    ProfileFactory(traits={"email": "someone.else@example.com"})
    page.locator("#searchbar").fill("Anna.Visser@Example.com")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot(page, "profile-search")
    page.get_by_role("link", name=str(customer.pk), exact=True).click()
    page.wait_for_url(f"**/profile/{customer.pk}/change/**")

    overview = page.get_by_role("region", name="Profile overview")
    assert overview.get_by_role("heading", name="Anna Visser").is_visible()
    assert overview.get_by_text("anna.visser@example.com").is_visible()
    assert page.get_by_text("Order Completed").first.is_visible()
    screenshot(page, "profile-360")


def test_analyst_sees_the_profile_without_personal_data(page, user_with_role, customer):
    user_with_role("Analyst")
    log_in(page, "analyst")

    page.goto(f"/admin/profiles/profile/{customer.pk}/change/")

    assert page.get_by_text("Order Completed").first.is_visible()
    assert "anna.visser@example.com" not in page.content()
    assert "Visser" not in page.content()


def test_dashboard_is_usable_on_a_tablet(browser, live_server, superuser, screenshot, customer):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 768, "height": 1024})
    page = context.new_page()
    log_in(page, "root")

    width = page.evaluate("document.documentElement.scrollWidth")

    assert width <= 768, "the dashboard must not scroll sideways on a tablet"
    screenshot(page, "dashboard-tablet")
    context.close()


CONTACTS_CSV = (
    "First Name,Last Name,E-mail address,Phone\n"
    "Sanne,de Boer,sanne.deboer@example.com,06 11122233\n"
    "Joost,Bakker,joost.bakker@example.com,+31 6 44455566\n"
)


def test_sales_imports_contacts_with_a_preview_then_applies(
    page, user_with_role, screenshot, tmp_path
):
    from crm.models import Contact

    user_with_role("Sales")
    log_in(page, "sales")
    upload = tmp_path / "contacts.csv"
    upload.write_text(CONTACTS_CSV)

    page.goto("/admin/crm/importjob/add/")
    page.get_by_label("Resource").select_option("contacts")
    page.get_by_label("Key").select_option("email")
    page.get_by_label("File").set_input_files(str(upload))
    with page.expect_navigation():
        page.get_by_role("button", name="Upload and check").click()
    page.wait_for_selector("text=Checked: ready to apply")

    outcomes = page.locator("#job-preview tbody tr td:nth-child(2)").all_inner_texts()
    assert outcomes == ["new", "new"]
    assert Contact.objects.count() == 0  # the check writes nothing
    screenshot(page, "import-preview")

    with page.expect_navigation():
        page.get_by_role("button", name="Apply the import").click()
    page.wait_for_selector("text=Status: Applied")
    screenshot(page, "import-applied")
    assert set(Contact.objects.values_list("email", flat=True)) == {
        "sanne.deboer@example.com",
        "joost.bakker@example.com",
    }


def shop_activity():
    """Customers and their orders, sent through collection and processing (which also records
    the fields the rule builder offers)."""
    from profiles.ingest.collect import messages_collect
    from profiles.ingest.processing import pending_process

    source = SourceFactory(name="Web shop")
    messages = []
    for number, (country, totals) in enumerate(
        [("NL", [80, 20]), ("NL", [30]), ("BE", [120]), ("NL", [])], start=1
    ):
        user = f"customer-{number}"
        messages.append({"type": "identify", "userId": user, "traits": {"country": country}})
        for total in totals:
            messages.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"total": total, "currency": "EUR"},
                }
            )
    messages_collect(source_id=source.pk, messages=messages)
    pending_process()


def test_marketer_builds_a_segment_with_the_builder_and_a_live_count(
    page, user_with_role, screenshot, settings
):
    from profiles.models import Segment

    settings.CDPHUB_INGEST_PROCESSING = "off"
    shop_activity()
    user_with_role("Marketer")
    log_in(page, "marketer")

    page.goto("/admin/profiles/segment/add/")
    page.get_by_label("Name").fill("Dutch big spenders")
    builder = page.get_by_role("group", name="Rule builder")
    # Ordered more than 50 in the last 30 days...
    builder.get_by_role("button", name="+ Condition").click()
    builder.get_by_label("Event name").fill("Order Completed")
    builder.get_by_label("Event name").press("Tab")
    builder.get_by_label("When").select_option("within")
    builder.get_by_role("button", name="+ Property filter").click()
    builder.get_by_label("Property").fill("total")
    builder.get_by_label("Property").press("Tab")
    builder.get_by_label("Operator").select_option("gt")
    builder.get_by_label("Value").fill("50")
    # ... and live in the Netherlands.
    builder.get_by_role("button", name="+ Condition").last.click()
    builder.get_by_label("Kind of condition").last.select_option("trait")
    builder.get_by_label("Field").fill("country")
    builder.get_by_label("Field").press("Tab")
    builder.get_by_label("Value").last.fill("NL")

    page.wait_for_selector("text=1 profile matches now.")
    screenshot(page, "segment-builder")
    page.get_by_text("Advanced: the rule as JSON").click()
    expected = {
        "all": [
            {
                "event": "Order Completed",
                "within_days": 30,
                "where": [{"property": "total", "op": "gt", "value": 50}],
            },
            {"trait": "country", "op": "eq", "value": "NL"},
        ]
    }
    assert json.loads(page.locator("#id_rule").input_value()) == expected

    # A typo gets a warning, not a silent zero.
    builder.get_by_label("Event name").fill("Order Complete")
    page.wait_for_selector("text=No event named 'Order Complete' has been received yet.")
    builder.get_by_label("Event name").fill("Order Completed")
    page.wait_for_selector("text=1 profile matches now.")

    with page.expect_navigation():
        page.get_by_role("button", name="Save and continue editing").click()
    segment = Segment.objects.get(name="Dutch big spenders")
    assert segment.rule == expected

    # Exported in two clicks, through the consent selector.
    from consent.services import consent_record, purposes_ensure_defaults
    from profiles.segments.membership import segment_refresh

    purposes_ensure_defaults()
    segment_refresh(segment=segment)
    (member,) = [m.profile for m in segment.memberships.all()]
    consent_record(profile=member, purpose="email_marketing", status="granted", method="web_form")
    page.reload()
    page.get_by_role("link", name="Export members…").click()
    counts = page.locator(".cdp-export-counts[aria-busy=false]")
    counts.wait_for()
    assert counts.locator("tr", has_text="E-mail marketing").locator("td").all_inner_texts() == [
        "1",
        "0",
    ]
    page.get_by_label("Only people who agreed to").select_option("email_marketing")
    page.get_by_label("Trait: country").check()
    screenshot(page, "segment-export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert lines == ["profile_id,email,trait.country", f"{member.pk},,NL"]


def test_the_builder_keeps_every_part_of_a_rule_it_redraws(page, user_with_role, settings):
    """Round trip: a rule with every kind of condition, a first-occurrence window and a node
    the builder cannot draw comes back unchanged after edits that cancel out."""
    from profiles.models import Segment

    settings.CDPHUB_INGEST_PROCESSING = "off"
    shop_activity()
    other = Segment.objects.create(name="Everyone", rule={"all": []})
    rule = {
        "any": [
            {"trait": "country", "op": "in", "value": ["NL", "BE"]},
            {"computed": "order_count", "op": "gte", "value": 2},
            {
                "event": "Order Completed",
                "between": ["2026-01-01", "2026-06-30"],
                "count": {"op": "lte", "value": 3},
                "where": [{"property": "currency", "op": "exists", "value": True}],
            },
            {"page": "/pricing", "op": "starts_with", "occurrence": "first", "within_days": 7},
            {"not": {"all": [{"segment": other.pk}, {"consent": "email_marketing"}]}},
            {"crm": "lifecycle_stage", "op": "eq", "value": "customer"},
            {"future_leaf": {"unknown": [1, 2.5, None]}},
        ]
    }
    segment = Segment.objects.create(name="Everything", rule=rule)
    user_with_role("Marketer")
    log_in(page, "marketer")

    page.goto(f"/admin/profiles/segment/{segment.pk}/change/")
    builder = page.get_by_role("group", name="Rule builder")
    top = builder.locator(":scope > fieldset")
    top.locator(":scope > .cdp-rule-actions").get_by_role("button", name="+ Condition").click()
    assert top.locator(":scope > ol > li").count() == len(rule["any"]) + 1
    added = top.locator(":scope > ol > li").last
    added.get_by_role("button", name="Remove this condition").last.click()
    page.get_by_text("Advanced: the rule as JSON").click()

    assert json.loads(page.locator("#id_rule").input_value()) == rule
    assert builder.get_by_label("Condition as JSON").input_value() == json.dumps(
        {"future_leaf": {"unknown": [1, 2.5, None]}}, separators=(",", ":")
    )


def test_marketer_defines_a_computed_trait_sees_it_on_a_profile_and_segments_on_it(
    page, user_with_role, screenshot, customer
):
    from profiles.models import ComputedTrait

    user_with_role("Marketer")
    log_in(page, "marketer")

    page.goto("/admin/profiles/computedtrait/add/")
    page.get_by_role("textbox", name="Name:", exact=True).fill("Orders placed")
    page.get_by_role("textbox", name="Key:", exact=True).fill("orders_placed")
    page.get_by_role("combobox", name="Kind:", exact=True).select_option("count")
    page.get_by_label("Event name").fill("Order Completed")
    page.get_by_role("button", name="Preview on a sample of profiles").click()
    page.wait_for_selector("text=1 of 1 recently active profiles have a value.")
    screenshot(page, "computed-trait-preview")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    assert ComputedTrait.objects.get(key="orders_placed").status == "ready"

    page.goto(f"/admin/profiles/profile/{customer.pk}/change/")
    row = page.locator("tr", has=page.locator("th", has_text="Orders placed"))
    assert row.locator("td").inner_text().strip() == "1"
    screenshot(page, "computed-trait-on-profile")

    page.goto("/admin/profiles/segment/add/")
    page.get_by_label("Name").fill("Buyers")
    page.get_by_text("Advanced: the rule as JSON").click()
    page.locator("#id_rule").fill('{"computed": "orders_placed", "op": "gte", "value": 1}')
    page.wait_for_selector("text=1 profile matches now.")
    assert page.get_by_label("Field").input_value() == "orders_placed"  # drawn by the builder
    screenshot(page, "computed-trait-in-segment")


def test_privacy_officer_handles_an_access_request(page, user_with_role, screenshot, customer):
    from consent.models import DataSubjectRequest

    user_with_role("Privacy officer")
    log_in(page, "privacy_officer")

    page.goto("/admin/consent/datasubjectrequest/add/")
    page.get_by_label("Kind").select_option("access")
    page.get_by_label("Subject email").fill("anna.visser@example.com")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    request = DataSubjectRequest.objects.get()

    for action in ("verify_requests", "process_requests"):
        page.goto("/admin/consent/datasubjectrequest/")
        page.locator(f"input[name=_selected_action][value='{request.pk}']").check()
        page.locator("select[name=action]").select_option(action)
        with page.expect_navigation():
            page.get_by_role("button", name="Go").click()

    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.COMPLETED
    assert request.result_file
    page.goto(f"/admin/consent/datasubjectrequest/{request.pk}/change/")
    screenshot(page, "dsar-completed")


def test_privacy_officer_handles_an_erasure_from_its_page(
    page, user_with_role, screenshot, customer
):
    from consent.dsar import dsar_create
    from consent.models import DataSubjectRequest
    from profiles.models import Event

    request = dsar_create(kind="erasure", email="anna.visser@example.com")
    user_with_role("Privacy officer")
    log_in(page, "privacy_officer")
    page.goto(f"/admin/consent/datasubjectrequest/{request.pk}/change/")

    page.get_by_role("link", name="Verify identity").click()
    page.get_by_label("Note").fill("Replied from the address on file")
    with page.expect_navigation():
        page.get_by_role("button", name="Verify identity").click()
    page.get_by_role("link", name="Run").click()
    preview = page.locator("table.erasure-preview")
    assert "Events" in preview.inner_text() and "3" in preview.inner_text()
    screenshot(page, "dsar-erasure-preview")
    with page.expect_navigation():
        page.get_by_role("button", name="Run").click()

    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.COMPLETED
    assert not Event.objects.filter(profile=customer).exists()
    assert page.get_by_role("link", name="Run").count() == 0  # completed: locked
    screenshot(page, "dsar-erasure-done")


UNLABELLED_CONTROLS = """
() => Array.from(document.querySelectorAll("input, select, textarea"))
  .filter(el => !["hidden", "submit", "button"].includes(el.type))
  .filter(el => el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                && !el.getAttribute("aria-labelledby") && !el.title)
  .map(el => el.name || el.id || el.outerHTML.slice(0, 80))
"""


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/profiles/profile/",
        "/admin/crm/contact/",
        "/admin/profiles/segment/add/",
        "/admin/profiles/computedtrait/add/",
        "/admin/crm/importjob/add/",
        "/admin/consent/datasubjectrequest/add/",
    ],
)
def test_every_form_control_has_a_label(page, superuser, customer, url):
    log_in(page, "root")

    page.goto(url)

    assert page.evaluate(UNLABELLED_CONTROLS) == []


def test_profile_search_works_from_the_keyboard(page, user_with_role, customer):
    user_with_role("Marketer")
    log_in(page, "marketer")
    page.goto("/admin/profiles/profile/")

    for _ in range(250):  # through the navigation sidebar first
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "searchbar":
            break
    else:
        pytest.fail("the search box cannot be reached with the Tab key")
    page.keyboard.type("anna.visser@example.com")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert page.locator("#result_list tbody tr").count() == 1


def test_marketer_finds_a_profile_by_name_and_merges_it_through_the_picker(
    page, user_with_role, screenshot, customer
):
    duplicate = ProfileFactory(
        traits={"firstName": "Anna", "lastName": "Visser", "email": "a.visser@shop.example"}
    )
    EventFactory(profile=duplicate, source=customer.events.first().source, name="Order Refunded")
    user_with_role("Marketer")
    log_in(page, "marketer")

    # Found by a misspelt name: nobody matches, the closest names are offered.
    page.goto("/admin/profiles/profile/")
    page.locator("#searchbar").fill("Anna Vissr")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_text("No profile matches").is_visible()
    screenshot(page, "profile-search-did-you-mean")
    page.get_by_role("link", name="Anna Visser").last.click()
    page.wait_for_url(f"**/profile/{duplicate.pk}/change/**")

    # Merge with...: found by part of the other e-mail, compared side by side, merged.
    page.get_by_role("link", name="Merge with…").click()
    page.get_by_label("Find the other profile").fill("anna.visser@")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.get_by_role("link", name="Compare").click()
    assert page.get_by_role("heading", name=f"Kept: profile {customer.pk}").is_visible()
    assert page.get_by_text("a.visser@shop.example").first.is_visible()
    screenshot(page, "profile-merge-compare")
    page.get_by_role("button", name="Merge these two profiles").click()
    page.wait_for_url(f"**/profile/{customer.pk}/change/**")

    assert page.get_by_text(
        f"Profile {duplicate.pk} merged into profile {customer.pk}"
    ).is_visible()
    assert page.get_by_text("Order Refunded").first.is_visible()
    duplicate.refresh_from_db()
    assert duplicate.merged_into_id == customer.pk
    screenshot(page, "profile-merged")


def test_timeline_reads_as_an_activity_feed(page, user_with_role, screenshot, customer):
    EventFactory(
        profile=customer,
        source=customer.events.first().source,
        name="Order Completed",
        properties={"order_id": "o-77", "total": 42.5, "products": [{"name": "Mug", "qty": 2}]},
    )
    user_with_role("Marketer")
    log_in(page, "marketer")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"/admin/profiles/profile/{customer.pk}/timeline/?group=session")

    feed = page.locator("#timeline")
    assert feed.get_by_text("Session on").first.is_visible()
    assert feed.locator(".cdp-feed-commerce").first.is_visible()
    assert feed.get_by_role("cell", name="o-77").is_visible()
    overflowing = page.evaluate(
        "[...document.querySelectorAll('#timeline *')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth).length"
    )
    assert overflowing == 0
    screenshot(page, "profile-timeline-feed")


def test_marketer_builds_an_audience_and_a_lookalike_with_live_counts(
    page, user_with_role, screenshot
):
    import random as random_module

    from audiences.models import Audience
    from tests.audiences.test_lookalike import OUTDOOR, TECH, visitors_with_tastes
    from tests.factories import CategoryFactory, DataProviderFactory

    categories = {
        code: CategoryFactory(code=code, name=code.title()) for code in [*OUTDOOR, *TECH, "CITY"]
    }
    provider = DataProviderFactory(name="Acme Data")
    visitors_with_tastes(12, OUTDOOR, random_module.Random(3), categories, provider)
    user_with_role("Marketer")
    log_in(page, "marketer")

    page.goto("/admin/audiences/audience/add/")
    page.get_by_label("Name").fill("Campers")
    builder = page.get_by_role("group", name="Rule builder")
    builder.get_by_role("button", name="+ Condition").click()
    builder.get_by_label("Kind of condition").select_option("category")
    builder.get_by_label("Interest category").select_option("CAMP")
    builder.get_by_label("provider").select_option("Acme Data")
    builder.get_by_label("When").select_option("within")
    page.wait_for_selector("text=visitors match now.")
    screenshot(page, "audience-builder")

    # A lookalike shows its own fields, and its estimate.
    page.locator("#id_kind").select_option("lookalike")
    assert not builder.is_visible()
    assert page.get_by_label("Reach percent").is_visible()
    page.locator("#id_kind").select_option("rule")
    page.wait_for_selector("text=visitors match now.")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    audience = Audience.objects.get(name="Campers")
    assert audience.rule == {
        "all": [{"category": "CAMP", "provider": "Acme Data", "within_days": 30}]
    }
    assert audience.size > 0


def test_sales_saves_a_view_of_the_contacts_and_shares_it(page, user_with_role, screenshot):
    ContactFactory(first_name="Lena", lifecycle_stage="lead")
    ContactFactory(first_name="Mark", lifecycle_stage="customer")
    user_with_role("Sales manager", "manager")
    user_with_role("Sales", "rep")
    log_in(page, "manager")

    page.goto("/admin/crm/contact/?lifecycle_stage__exact=lead")
    page.get_by_text("Save this view…").click()
    page.get_by_label("Name", exact=True).fill("Open leads")
    page.get_by_label("Shared with everyone who can open this list").check()
    columns = page.get_by_role("group", name="Columns")
    columns.get_by_label("Company").uncheck()
    columns.get_by_label("Owner").uncheck()
    screenshot(page, "saved-view-form")
    with page.expect_navigation():
        page.get_by_role("button", name="Save view").click()

    views = page.get_by_role("navigation", name="Saved views")
    assert views.locator("[aria-current=page]").inner_text() == "Open leads"
    headers = " ".join(page.locator("#result_list thead th").all_inner_texts()).lower()
    assert "company" not in headers and "owner" not in headers and "email" in headers
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot(page, "saved-view-applied")

    page.context.clear_cookies()
    log_in(page, "rep")
    page.goto("/admin/crm/contact/")
    page.get_by_role("navigation", name="Saved views").get_by_role(
        "link", name="Open leads"
    ).click()
    page.wait_for_url("**_view=*")
    assert page.locator("#result_list tbody tr").count() == 1
