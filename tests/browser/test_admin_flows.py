"""A person's day in the admin, in a real browser."""

import pytest

from cdphub.roles import ROLES
from tests.browser.conftest import log_in
from tests.factories import EventFactory, IdentityFactory, ProfileFactory, SourceFactory

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
