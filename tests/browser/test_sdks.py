"""The browser SDKs as a website includes them, unmodified from their npm packages, on a page of
another origin than cdphub's: Segment's analytics.js 2.0 and RudderStack's JavaScript SDK v3 read
their source's settings from cdphub, send a visit (page, track, alias, identify, group) that ends
on one profile, send a call made offline again when the page is back online (with their retry
headers, which cdphub's preflight must allow), and are refused, storing nothing, from an origin
their source does not allow.

The pages are tests/browser/sdks/*.html, the snippets a website owner pastes; the SDKs come from
tests/browser/sdks/node_modules (``make sdks``)."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crm.models import Company
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, RejectedMessage
from profiles.services import source_create
from tests.server import current_database_url, running_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SDKS = Path(__file__).resolve().parent / "sdks"
NODE_MODULES = SDKS / "node_modules"
# The bundles a website includes with a script tag, as the pages do.
BUNDLES = {
    "analytics-js": "@segment/analytics-next/dist/umd/index.js",
    "rudderstack": "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js",
}
# What each SDK reads before it sends, and where it sends the calls.
SETTINGS_PATH = {"analytics-js": "/v1/projects/", "rudderstack": "/sourceConfig/"}
CALL_PATHS = {
    "analytics-js": {"/v1/p", "/v1/t", "/v1/a", "/v1/i", "/v1/g"},
    "rudderstack": {"/v1/page", "/v1/track", "/v1/alias", "/v1/identify", "/v1/group"},
}
# How each sends a call: analytics.js as text/plain JSON (no preflight needed) with the write key
# in the body, RudderStack's SDK as JSON with the key as HTTP Basic user name.
CALL_CONTENT_TYPE = {"analytics-js": "text/plain", "rudderstack": "application/json;charset=UTF-8"}
# What each says when it sends a call again: how often it tried, and RudderStack's SDK when and why.
RETRY_HEADERS = {
    "x-retry-count",
    "rsa-retry-attempt",
    "rsa-retry-reason",
    "rsa-since-first-attempt",
    "rsa-since-last-attempt",
}
# A call the page makes later, as on a click (analytics.js answers once it has handled the call).
CHECKOUT = {
    "analytics-js": "async () => { await analytics.track('Checkout Started', { step: 1 }); }",
    "rudderstack": "() => rudderanalytics.track('Checkout Started', { step: 1 })",
}
# A page that gives the SDK its source's settings instead of reading them from cdphub.
INLINE_SETTINGS_PAGE = {
    "analytics-js": """<!doctype html>
<script src="/sdks/{bundle}"></script>
<script>
  AnalyticsNext.AnalyticsBrowser.load({{ writeKey: "{write_key}", cdnSettings: {settings} }})
    .track("Product Viewed");
</script>""",
    "rudderstack": """<!doctype html>
<script src="/sdks/{bundle}"></script>
<script>
  new rudderanalytics.RudderAnalytics();
  rudderanalytics.load("{write_key}", "{cdphub}", {{ getSourceConfig: () => ({settings}) }});
  rudderanalytics.track("Product Viewed");
</script>""",
}
USER = "user-42"
WAIT_SECONDS = 30


@pytest.fixture(scope="module", autouse=True)
def sdk_bundles(browser) -> None:
    """chromium (the browser fixture skips or fails without it) and the SDKs' bundles, before
    any server starts."""
    missing = [path for path in BUNDLES.values() if not (NODE_MODULES / path).is_file()]
    if missing:
        reason = (
            f"the browser SDKs are not installed ({', '.join(missing)} missing): `make sdks` "
            "installs them with npm into tests/browser/sdks/node_modules"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def cdphub() -> Iterator[str]:
    # Processing is left to the test: the server only collects.
    with running_server(
        database_url=current_database_url(), env={"CDPHUB_INGEST_PROCESSING": "off"}
    ) as url:
        yield url


class Website:
    """A shop's web server on its own port, so another origin than cdphub's: ``/<sdk>.html`` is
    that SDK's page from tests/browser/sdks with cdphub's address and the write key filled in,
    ``/sdks/...`` the SDKs' files from node_modules, as the shop would host them, and
    ``pages`` the test's own pages by name."""

    def __init__(self, cdphub: str) -> None:
        self.write_key = ""
        self.pages: dict[str, str] = {}
        website = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path.startswith("/sdks/"):
                    self.path = self.path.removeprefix("/sdks")
                    return super().do_GET()
                name = self.path.lstrip("/")
                page = SDKS / name
                if name in website.pages:
                    body = website.pages[name].encode()
                elif page.suffix == ".html" and page.parent == SDKS and page.is_file():
                    body = website.fill(page.read_text(), cdphub).encode()
                else:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(NODE_MODULES))
        )
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fill(self, html: str, cdphub: str) -> str:
        protocol, host = cdphub.split("://")
        for placeholder, value in (
            ("WRITE_KEY", self.write_key),
            ("CDPHUB_URL", cdphub),
            ("CDPHUB_HOST", host),
            ("CDPHUB_PROTOCOL", protocol),
        ):
            html = html.replace(placeholder, value)
        return html

    def __enter__(self) -> Website:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def website(cdphub) -> Iterator[Website]:
    with Website(cdphub) as website:
        yield website


class Visit:
    """One page visit in chromium, with every request the page made and cdphub's answers."""

    def __init__(self, browser, cdphub: str) -> None:
        self.cdphub = cdphub
        self.context = browser.new_context(locale="en-US")
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_SECONDS * 1000)
        self.requests: list[str] = []
        self.answers: list[dict] = []
        self.console: list[str] = []
        self.failed: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("response", self.record)
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page.on("console", lambda message: self.console.append(message.text))

    def record(self, response) -> None:
        request = response.request
        if not response.url.startswith(self.cdphub) or request.method == "OPTIONS":
            return
        try:
            answer = response.json()
        except Exception:  # noqa: BLE001 - an answer that is not JSON is kept as None
            answer = None
        self.answers.append(
            {
                "path": response.url.removeprefix(self.cdphub).split("?")[0],
                "status": response.status,
                "content_type": request.headers.get("content-type", ""),
                "retry_headers": {
                    name: value for name, value in request.headers.items() if name in RETRY_HEADERS
                },
                "body": request.post_data_json if request.method == "POST" else None,
                "answer": answer,
            }
        )

    def to(self, paths: set[str]) -> list[dict]:
        return [answer for answer in self.answers if answer["path"] in paths]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Until ``condition()`` holds; the page's events are delivered meanwhile."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} did not happen within {WAIT_SECONDS} s; cdphub answered "
                    f"{self.answers}; the page said {self.console}"
                )
            self.page.wait_for_timeout(50)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, cdphub) -> Iterator[Visit]:
    visit = Visit(browser, cdphub)
    yield visit
    visit.close()


def settings_json(cdphub: str, sdk: str, write_key: str) -> dict:
    """The settings cdphub answers a server (no origin) for this SDK."""
    path = {
        "analytics-js": f"/v1/projects/{write_key}/settings",
        "rudderstack": f"/sourceConfig/?writeKey={write_key}",
    }[sdk]
    with urllib.request.urlopen(f"{cdphub}{path}", timeout=10) as response:  # noqa: S310
        return json.load(response)


def assert_visit_on_one_profile(source) -> None:
    """The visit's five calls, processed, are one person's: the anonymous page and product view
    and the signed-up visitor's calls on the profile of the user id, with the e-mail."""
    assert not RejectedMessage.objects.exists()
    assert pending_process() == 5
    events = Event.objects.filter(source=source)
    assert sorted(events.values_list("type", flat=True)) == sorted(
        ["page", "track", "alias", "identify", "group"]
    )
    profile = Identity.objects.get(kind="user_id", value=USER).profile
    assert {event.profile_id for event in events} == {profile.pk}
    assert Identity.objects.get(kind="email", value="anna.visser@example.com").profile == profile
    assert profile.traits["email"] == "Anna.Visser@Example.com"
    assert profile.traits["name"] == "Anna"

    # Before signing up the visitor was anonymous: one anonymous id, no user id.
    page, track = events.get(type="page"), events.get(type="track")
    anonymous_id = page.anonymous_id
    assert anonymous_id and (page.user_id, track.user_id) == ("", "")
    assert track.anonymous_id == anonymous_id
    assert Identity.objects.get(kind="anonymous_id", value=anonymous_id).profile == profile
    assert page.name == "Jackets" and page.properties["category"] == "Shop"
    assert page.properties["url"].endswith(".html")
    assert track.name == "Product Viewed"
    assert track.properties == {"sku": "J-1", "price": 89.9}
    # The sign-up: the alias names the anonymous id as the user's previous id.
    alias = events.get(type="alias")
    assert (alias.user_id, alias.properties) == (USER, {"previousId": anonymous_id})
    identify, group = events.get(type="identify"), events.get(type="group")
    assert identify.properties["email"] == "Anna.Visser@Example.com"
    assert (group.name, group.properties, group.user_id) == ("acme", {"name": "Acme"}, USER)
    account = Company.objects.get(group_id="acme")
    assert account.name == "Acme"
    assert list(account.members.values_list("profile_id", flat=True)) == [profile.pk]


@pytest.mark.parametrize("sdk", ["analytics-js", "rudderstack"])
def test_a_page_of_an_allowed_origin_sends_a_visit_that_ends_on_one_profile(
    sdk, cdphub, website, visit
):
    source, website.write_key = source_create(name="Shop", allowed_origins=[website.origin])

    visit.page.goto(f"{website.origin}/{sdk}.html")
    visit.wait_for(
        lambda: len(visit.to(CALL_PATHS[sdk])) >= 5, "the five calls' delivery to cdphub"
    )

    calls = visit.to(CALL_PATHS[sdk])
    assert [a["status"] for a in calls] == [200] * 5, visit.answers
    assert {a["content_type"] for a in calls} == {CALL_CONTENT_TYPE[sdk]}
    if sdk == "analytics-js":
        assert {a["body"]["writeKey"] for a in calls} == {website.write_key}
    settings = [a for a in visit.answers if a["path"].startswith(SETTINGS_PATH[sdk])]
    assert [a["status"] for a in settings] == [200]
    # Everything the page needed came from the shop's own server or from cdphub.
    assert all(url.startswith((website.origin, cdphub)) for url in visit.requests), visit.requests
    assert PendingMessage.objects.filter(source=source).count() == 5
    assert_visit_on_one_profile(source)


@pytest.mark.parametrize("sdk", ["analytics-js", "rudderstack"])
def test_a_call_made_offline_is_sent_again_when_the_page_is_back_online(
    sdk, cdphub, website, visit
):
    source, website.write_key = source_create(name="Shop", allowed_origins=[website.origin])
    visit.page.goto(f"{website.origin}/{sdk}.html")
    visit.wait_for(
        lambda: len(visit.to(CALL_PATHS[sdk])) >= 5, "the five calls' delivery to cdphub"
    )

    # The visitor's connection drops as they start the checkout: the SDK keeps the call (a
    # first attempt fails, or analytics.js, knowing it is offline, waits) ...
    visit.context.set_offline(True)
    visit.page.evaluate(CHECKOUT[sdk])
    if sdk == "rudderstack":
        visit.wait_for(lambda: visit.failed, "the first attempt")
    visit.context.set_offline(False)
    # ... and sends it again, saying so in headers of its own, which cdphub lets it send.
    visit.wait_for(
        lambda: len(visit.to(CALL_PATHS[sdk])) >= 6, "the checkout call's delivery to cdphub"
    )

    retry = visit.to(CALL_PATHS[sdk])[-1]
    assert (retry["status"], retry["body"]["event"]) == (200, "Checkout Started")
    assert retry["retry_headers"], retry
    assert PendingMessage.objects.filter(source=source).count() == 6


@pytest.mark.parametrize("sdk", ["analytics-js", "rudderstack"])
def test_a_page_of_an_origin_the_source_refuses_is_refused_and_nothing_is_kept(
    sdk, cdphub, website, visit
):
    source, website.write_key = source_create(
        name="Shop", allowed_origins=["https://shop.example.com"]
    )

    # The SDK reads its settings first: refused, it sends nothing.
    with visit.page.expect_response(lambda r: SETTINGS_PATH[sdk] in r.url) as settings:
        visit.page.goto(f"{website.origin}/{sdk}.html")
    visit.page.wait_for_load_state("networkidle")

    assert settings.value.status == 403
    assert settings.value.json()["code"] == "origin_not_allowed"
    # The answer is readable by the page: the SDK tells the site's developer why.
    assert any("origin_not_allowed" in line for line in visit.console), visit.console
    assert not visit.to(CALL_PATHS[sdk]), visit.answers

    # A page that carries the settings itself (both SDKs take them as a load option) sends
    # its calls anyway: each is refused.
    website.pages["inline.html"] = INLINE_SETTINGS_PAGE[sdk].format(
        bundle=BUNDLES[sdk],
        cdphub=cdphub,
        write_key=website.write_key,
        settings=json.dumps(settings_json(cdphub, sdk, website.write_key)),
    )
    visit.page.goto(f"{website.origin}/inline.html")
    visit.wait_for(lambda: visit.to(CALL_PATHS[sdk]), "a call's delivery to cdphub")
    visit.page.wait_for_load_state("networkidle")

    calls = visit.to(CALL_PATHS[sdk])
    assert {(a["status"], a["answer"]["code"]) for a in calls} == {(403, "origin_not_allowed")}
    assert not PendingMessage.objects.exists() and not RejectedMessage.objects.exists()
    assert not Event.objects.filter(source=source).exists()
