"""An import's page shows a role without personal data access no cell value, and no reason
or error that quotes one."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.crm.test_imports import checked, csv_bytes

pytestmark = pytest.mark.django_db


def test_import_page_quotes_no_personal_value_to_a_masked_role(user_with_role, superuser):
    data = csv_bytes(
        "email,phone,birth_date",
        "hidden.person@example.com,,",
        "second.person@example.com,+31 6 1234 5678,not-a-date",
    )
    job = checked(data, mode="update", created_by=superuser)
    assert "hidden.person@example.com" in str(job.preview)  # the reason quotes the key

    browser = Client()
    browser.force_login(user_with_role("Analyst"))
    page = browser.get(reverse("admin:crm_importjob_change", args=[job.pk])).content.decode()

    assert "hidden.person@example.com" not in page
    assert "second.person@example.com" not in page
    assert "1234 5678" not in page
