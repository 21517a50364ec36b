"""A crawl of every admin page and API endpoint the roles without personal data access can
open, over the demo data, searching each answer for the demo people's e-mails, phones and
full names. Whatever renders them (a list column, an autocomplete, a preview's "why", a JSON
field) is caught here, not only the pages someone remembered to mask."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from cdphub.demo.seed import demo_data_seed
from cdphub.services import api_key_create
from crm.models import Contact
from profiles.models import Identity, Profile

pytestmark = pytest.mark.django_db

MASKED_ROLES = ("Data engineer", "Analyst")
READ_SCOPES = ["profiles:read", "crm:read", "audiences:read", "consent:read"]


def personal_values() -> set[str]:
    """E-mails, phones and full names of the demo people, as stored."""
    values = set(
        Identity.objects.filter(kind__in=Identity.PII_KINDS).values_list("value", flat=True)
    )
    for first, last, email, phone in Contact.objects.values_list(
        "first_name", "last_name", "email", "phone"
    ):
        values |= {email, phone, f"{first} {last}".strip()}
    for traits in Profile.objects.values_list("traits", flat=True):
        for key in ("email", "phone", "name"):
            if isinstance(traits.get(key), str):
                values.add(traits[key])
        if traits.get("firstName") and traits.get("lastName"):
            values.add(f"{traits['firstName']} {traits['lastName']}")
    return {value for value in values if value and len(value) >= 6}


def admin_urls() -> list[str]:
    urls = [reverse("admin:index"), reverse("admin:jobs") if _has("admin:jobs") else ""]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
        for field in getattr(model_admin, "autocomplete_fields", ()):
            related = model._meta.get_field(field).related_model._meta
            urls.append(
                reverse("admin:autocomplete")
                + f"?app_label={info[0]}&model_name={info[1]}&field_name={field}&term="
                + f"&_related={related.model_name}"
            )
    return [url for url in urls if url]


def _has(name: str) -> bool:
    try:
        reverse(name)
    except NoReverseMatch:
        return False
    return True


def api_urls() -> list[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    urls = []
    for path, operations in schema["paths"].items():
        if "get" not in operations or not path.startswith("/api/") or "schema" in path:
            continue
        if "{" not in path:
            urls.append(path)
    return sorted(urls)


def other_paths_with_personal_data() -> None:
    """What the demo leaves out: a pair of likely duplicates, an import checked with a
    preview whose reasons quote its key values and an error quoting a cell."""
    from crm.imports import import_job_create, import_job_validate
    from crm.services import duplicates_refresh

    first = Contact.objects.exclude(email="").order_by("pk").first()
    Contact.objects.create(
        first_name=first.first_name, last_name=first.last_name, email=first.email.upper()
    )
    duplicates_refresh()
    known = Contact.objects.exclude(email="").order_by("-pk")[1]
    data = (
        "first_name,last_name,email,birth_date\n"
        f"{known.first_name},{known.last_name},{known.email},not-a-date\n"
        f"{first.first_name},{first.last_name},{first.email},\n"
    ).encode()
    job = import_job_create(
        resource="contacts", mode="update", key_field="email", file_name="c.csv", data=data
    )
    import_job_validate(job=job)


def leaks(text: str, values: set[str]) -> list[str]:
    lowered = text.lower()
    return sorted(value for value in values if value.lower() in lowered)


@pytest.fixture
def demo(db):
    demo_data_seed(profiles=60)
    other_paths_with_personal_data()
    return personal_values()


@pytest.mark.parametrize("role", MASKED_ROLES)
def test_masked_roles_see_no_personal_data_on_any_admin_page(demo, user_with_role, role):
    browser = Client()
    browser.force_login(user_with_role(role))
    found = {}
    for url in admin_urls():
        response = browser.get(url)
        if response.status_code != 200:
            continue
        body = response.content.decode(errors="replace")
        body = re.sub(r'<input type="hidden" name="csrfmiddlewaretoken"[^>]*>', "", body)
        if hits := leaks(body, demo):
            found[url] = hits[:3]
    assert sorted(found) == [], found


def test_a_key_without_pii_read_sees_no_personal_data_in_any_api_answer(demo):
    _, key = api_key_create(name="crawler", scopes=READ_SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    found = {}
    for url in api_urls():
        response = client.get(url, {"page_size": 100})
        if response.status_code != 200:
            continue
        if hits := leaks(response.content.decode(errors="replace"), demo):
            found[url] = hits[:3]
    assert sorted(found) == [], found
