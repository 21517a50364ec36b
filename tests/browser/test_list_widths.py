"""Every admin list fits a 1440 px screen with demo data in it: the columns that matter, no key
column pushed off screen (the rest is on the record's page)."""

import pytest
from django.contrib import admin

from cdphub.demo.seed import demo_data_seed
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PROJECT_APPS = ("cdphub", "profiles", "crm", "audiences", "consent")
WIDTH = 1440

# The list's right edge, and the page's, past the window's width (0 when it fits).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const table = document.querySelector('#result_list');
  const right = table ? table.getBoundingClientRect().right : 0;
  return Math.max(0, Math.round(right - width), document.documentElement.scrollWidth - width);
}"""


def changelists() -> list[str]:
    return sorted(
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
        if model._meta.app_label in PROJECT_APPS
    )


def test_every_list_fits_a_1440_px_screen(browser, live_server, superuser, screenshot):
    demo_data_seed(profiles=60)
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": 900}, locale="en-US"
    )
    page = context.new_page()
    log_in(page, "root")

    overflowing = {}
    for url in changelists():
        page.goto(url)
        excess = page.evaluate(OVERFLOW)
        if excess:
            overflowing[url] = excess
            screenshot(page, "list-overflow-" + url.strip("/").replace("/", "-"))
    context.close()

    assert overflowing == {}, f"{len(overflowing)} of {len(changelists())} lists overflow (px)"
