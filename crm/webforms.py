"""Web forms into the hub: a website's form posts a lead to ``/forms/<key>/`` (form-encoded, as
a plain HTML form sends it, or JSON from a script). Each accepted post creates or updates the
contact by its e-mail address and links its CDP profile through the one resolver
(``services.contact_save``), and records the consent its checkbox gave with the proof (form,
text version, page URL, address, browser). Spam is refused: a filled honeypot field, and more
than the form's posts per hour from one address (a flood). Pages of the form's allowed origins
read the answer (CORS)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils import timezone
from django.utils.html import escape

from consent.services import consent_record
from crm import services
from crm.models import Contact, WebForm, WebFormPost
from profiles.ingest.collect import client_ip

# A field people do not see (hidden by the snippet's style) but form-filling robots do fill.
HONEYPOT = "website"
FIELDS = ("email", "first_name", "last_name", "phone", "job_title")
TICKED = {"on", "true", "1", "yes"}


class FormRefused(Exception):
    def __init__(self, status: int, code: str, message: str, field: str = ""):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@dataclass(frozen=True)
class Proof:
    """Where a post came from, kept with the consent it gave."""

    ip_address: str | None
    user_agent: str
    page_url: str


def web_form_key() -> str:
    return secrets.token_urlsafe(16)


def web_form_save(*, form: WebForm) -> WebForm:
    if not form.key:
        form.key = web_form_key()
    form.full_clean()
    form.save()
    return form


def web_form_submit(*, form: WebForm, data: dict, proof: Proof) -> Contact:
    """Accept one post, or raise ``FormRefused`` saying why (nothing is then kept)."""
    if data.get(HONEYPOT):
        raise FormRefused(400, "spam", "the post was refused as spam")
    flood_check(form, proof.ip_address)
    consent = str(data.get("consent", "")).strip().lower() in TICKED
    if form.consent_required and not consent:
        purpose = form.consent_purpose.name if form.consent_purpose else "this form's terms"
        raise FormRefused(400, "consent_required", f"consent to {purpose} is required", "consent")
    values = {name: str(data.get(name, "")).strip() for name in FIELDS}
    if not values["email"]:
        raise FormRefused(400, "invalid", "an e-mail address is required", "email")
    try:
        with transaction.atomic():
            contact = contact_upsert(form, values, str(data.get("company", "")).strip())
            if consent and form.consent_purpose:
                consent_give(form, contact, proof)
            WebFormPost.objects.create(form=form, contact=contact, ip_address=proof.ip_address)
    except services.ContactSuppressed as exc:
        raise FormRefused(400, "invalid", " ".join(exc.messages), "email") from None
    except ValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise FormRefused(400, "invalid", " ".join(exc.messages)) from None
        field, messages = next(iter(exc.message_dict.items()))
        raise FormRefused(400, "invalid", f"{field}: {' '.join(messages)}", field) from None
    return contact


def flood_check(form: WebForm, ip_address: str | None) -> None:
    since = timezone.now() - timedelta(hours=1)
    posts = WebFormPost.objects.filter(form=form, ip_address=ip_address, created_at__gte=since)
    if posts.count() >= form.posts_per_hour:
        raise FormRefused(
            429,
            "rate_limited",
            f"more than {form.posts_per_hour} posts per hour from this address: try again later",
        )


def contact_upsert(form: WebForm, values: dict, company_name: str) -> Contact:
    """The contact with this e-mail address (the one the visitor may see and correct), given
    the non-empty values posted; a new one gets the form's stage and owner."""
    email, _ = services.contact_identifiers_normalize(email=values["email"], phone="")
    contact = Contact.objects.select_for_update().filter(email=email).order_by("pk").first()
    if contact is None:
        contact = Contact(lifecycle_stage=form.lifecycle_stage, owner_id=form.owner_id)
    for name, value in values.items():
        if value:
            setattr(contact, name, value)
    if company_name and contact.company_id is None:
        contact.company = services.company_by_name(company_name)
    return services.contact_save(contact=contact)


def consent_give(form: WebForm, contact: Contact, proof: Proof) -> None:
    consent_record(
        profile=contact.profile,
        purpose=form.consent_purpose,
        status="granted",
        method="web_form",
        source=f"web form {form.name} (#{form.pk})",
        identifier_kind="email",
        identifier_value=contact.email,
        text_version=form.consent_text,
        ip_address=proof.ip_address,
        user_agent=proof.user_agent[:1000],
        form_url=proof.page_url[:1000],
    )


# --- The endpoint ---------------------------------------------------------------------------


def web_form_view(request: HttpRequest, key: str) -> HttpResponse:
    """``POST /forms/<key>/``: 200 ``{"success": true}`` (or, for a plain post with a success
    URL, a redirect there); 4xx ``{code, message, field}`` saying what to fix. ``OPTIONS``
    answers a script's preflight."""
    origin = request.META.get("HTTP_ORIGIN")
    form = WebForm.objects.filter(key=key, is_active=True).first()
    if form is None:
        return answer(404, {"code": "not_found", "message": "no such form"}, origin, None)
    if origin and not form.allows_origin(origin):
        message = f"pages of {origin} may not post to this form: add it to its allowed origins"
        return answer(403, {"code": "origin_not_allowed", "message": message}, origin, None)
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        return with_cors(response, origin)
    if request.method != "POST":
        return answer(405, {"code": "method_not_allowed", "message": "post the form"}, origin, form)
    try:
        data = posted_data(request)
        proof = Proof(
            ip_address=client_ip(request.META) or None,
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            page_url=str(data.get("page_url") or request.META.get("HTTP_REFERER", "")),
        )
        web_form_submit(form=form, data=data, proof=proof)
    except FormRefused as refused:
        body = {"code": refused.code, "message": refused.message, "field": refused.field}
        return answer(refused.status, body, origin, form)
    if form.success_url and plain_post(request):
        return HttpResponseRedirect(form.success_url, status=303)
    return answer(200, {"success": True}, origin, form)


def plain_post(request: HttpRequest) -> bool:
    """A browser's own form submission (not a script's): answered with the page to go to."""
    return "json" not in request.META.get("HTTP_ACCEPT", "") and not request.content_type.endswith(
        "json"
    )


def posted_data(request: HttpRequest) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise FormRefused(400, "invalid_body", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise FormRefused(400, "invalid_body", "the body must be a JSON object")
        return data
    return request.POST.dict()


def answer(status: int, body: dict, origin: str | None, form: WebForm | None) -> HttpResponse:
    """JSON, readable by the page when it comes from the form's allowed origins (an error too,
    so its developer sees why) or when the refusal is the origin itself."""
    response = JsonResponse(body, status=status)
    return with_cors(response, origin) if form is not None or status == 403 else response


def with_cors(response: HttpResponse, origin: str | None) -> HttpResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    return response


# --- The snippet a website embeds -------------------------------------------------------------


def web_form_snippet(form: WebForm, base_url: str) -> str:
    """The HTML form a website embeds: the fields, the honeypot (hidden from people) and the
    consent checkbox with its text."""
    consent = ""
    if form.consent_purpose:
        text = form.consent_text.text if form.consent_text else form.consent_purpose.name
        required = " required" if form.consent_required else ""
        consent = (
            f'  <label><input type="checkbox" name="consent" value="on"{required}> '
            f"{escape(text)}</label>\n"
        )
    return (
        f'<form method="post" action="{base_url}/forms/{form.key}/">\n'
        '  <label>E-mail <input type="email" name="email" required></label>\n'
        '  <label>First name <input name="first_name"></label>\n'
        '  <label>Last name <input name="last_name"></label>\n'
        '  <label>Phone <input type="tel" name="phone"></label>\n'
        '  <label>Company <input name="company"></label>\n'
        f'  <div style="position:absolute;left:-5000px" aria-hidden="true">'
        f'<input name="{HONEYPOT}" tabindex="-1" autocomplete="off"></div>\n'
        f"{consent}"
        '  <button type="submit">Send</button>\n'
        "</form>"
    )
