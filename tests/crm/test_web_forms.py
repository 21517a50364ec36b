"""Web forms into the hub: a website's form posts a lead; the contact and its CDP profile are
made or updated through the one resolver, the consent its checkbox gave is recorded with its
proof, and spam (a honeypot, a flood), a missing consent, a bad address or a foreign page are
refused with a clear answer that keeps nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.models import ConsentRecord, ConsentState, ConsentText, Purpose
from crm.models import Contact, WebForm, WebFormPost
from crm.webforms import web_form_save
from profiles.models import Identity

pytestmark = pytest.mark.django_db

PAGE = "https://shop.example.com/newsletter"


@pytest.fixture
def form(user_with_role):
    purpose = Purpose.objects.get(code="email_marketing")
    text = ConsentText.objects.create(
        purpose=purpose, version="2026-11", text="Yes, send me the newsletter."
    )
    return web_form_save(
        form=WebForm(
            name="Newsletter",
            allowed_origins=["https://shop.example.com"],
            consent_purpose=purpose,
            consent_text=text,
            consent_required=True,
            owner=user_with_role("Sales", "rep"),
            posts_per_hour=3,
            success_url="https://shop.example.com/thanks",
        )
    )


def url(form: WebForm) -> str:
    return reverse("web-form", args=[form.key])


LEAD = {"email": "Anna@Example.com", "first_name": "Anna", "company": "Acme", "consent": "on"}


def test_a_plain_form_post_makes_the_contact_profile_and_consent_with_its_proof(client, form):
    response = client.post(
        url(form), LEAD, HTTP_REFERER=PAGE, HTTP_USER_AGENT="Firefox/140", REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 303 and response["Location"] == form.success_url
    contact = Contact.objects.get()
    assert (contact.email, contact.first_name, contact.company.name) == (
        "anna@example.com",
        "Anna",
        "Acme",
    )
    assert contact.lifecycle_stage == "lead" and contact.owner == form.owner
    assert Identity.objects.filter(kind="email", value="anna@example.com").get().profile_id == (
        contact.profile_id
    )
    record = ConsentRecord.objects.get()
    assert (record.status, record.method, record.text_version, record.form_url) == (
        "granted",
        "web_form",
        form.consent_text,
        PAGE,
    )
    assert (record.ip_address, record.user_agent) == ("203.0.113.9", "Firefox/140")
    assert f"#{form.pk}" in record.source
    assert ConsentState.objects.get(profile=contact.profile).status == "granted"


def test_a_script_on_an_allowed_page_posts_json_and_a_second_post_updates(client, form):
    headers = {"HTTP_ORIGIN": "https://shop.example.com", "HTTP_ACCEPT": "application/json"}
    first = client.post(url(form), LEAD, content_type="application/json", **headers)
    assert first.status_code == 200 and first.json() == {"success": True}
    assert first["Access-Control-Allow-Origin"] == "https://shop.example.com"
    again = {**LEAD, "email": "anna@example.com", "last_name": "Visser", "page_url": PAGE}
    second = client.post(url(form), again, content_type="application/json", **headers)
    assert second.status_code == 200
    contact = Contact.objects.get()
    assert (contact.first_name, contact.last_name) == ("Anna", "Visser")
    assert WebFormPost.objects.filter(contact=contact).count() == 2


def test_a_preflight_is_answered_and_a_foreign_page_refused(client, form):
    preflight = client.options(url(form), HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204 and "POST" in preflight["Access-Control-Allow-Methods"]
    foreign = client.post(url(form), LEAD, HTTP_ORIGIN="https://evil.example")
    assert foreign.status_code == 403 and foreign.json()["code"] == "origin_not_allowed"
    assert foreign["Access-Control-Allow-Origin"] == "https://evil.example"
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [
        ({"website": "http://spam.example"}, 400, "spam", ""),
        ({"consent": ""}, 400, "consent_required", "consent"),
        ({"email": "not an address"}, 400, "invalid", "email"),
        ({"email": ""}, 400, "invalid", "email"),
    ],
)
def test_bad_posts_are_refused_with_the_reason_and_keep_nothing(
    client, form, changes, status, code, field
):
    response = client.post(url(form), {**LEAD, **changes}, HTTP_ACCEPT="application/json")
    assert response.status_code == status
    body = response.json()
    assert (body["code"], body["field"]) == (code, field)
    assert not Contact.objects.exists() and not ConsentRecord.objects.exists()
    assert not WebFormPost.objects.exists()


def test_a_flood_from_one_address_is_refused(client, form):
    for n in range(3):
        lead = {**LEAD, "email": f"p{n}@example.com"}
        assert client.post(url(form), lead, REMOTE_ADDR="198.51.100.7").status_code == 303
    flood = client.post(url(form), {**LEAD, "email": "p9@example.com"}, REMOTE_ADDR="198.51.100.7")
    assert flood.status_code == 429 and flood.json()["code"] == "rate_limited"
    other = client.post(url(form), {**LEAD, "email": "q@example.com"}, REMOTE_ADDR="198.51.100.8")
    assert other.status_code == 303
    assert Contact.objects.count() == 4


def test_an_unknown_or_switched_off_form_is_a_404(client, form):
    assert client.post("/forms/nope/", LEAD).status_code == 404
    WebForm.objects.filter(pk=form.pk).update(is_active=False)
    assert client.post(url(form), LEAD).status_code == 404


def test_the_admin_gives_the_snippet_to_embed(admin_client, form):
    page = admin_client.get(reverse("admin:crm_webform_change", args=[form.pk])).content.decode()
    assert f"/forms/{form.key}/" in page
    # Shown as code to copy (escaped in the page).
    assert "Yes, send me the newsletter." in page and "name=&quot;website&quot;" in page
