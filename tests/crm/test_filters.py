"""A filter on a linked record chooses among the records the caller's sales teams see."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path, param",
    [("/api/crm/contacts/", "company"), ("/api/crm/deals/", "contact")],
)
def test_filtering_by_a_hidden_record_answers_like_a_missing_one(sales_org, path, param):
    client = Client()
    client.force_login(sales_org.me)
    rival = sales_org.contacts["rival"]
    hidden_id = rival.company_id if param == "company" else rival.pk

    hidden = client.get(path, {param: hidden_id})
    missing = client.get(path, {param: 999_999})

    assert hidden.status_code == missing.status_code == 400
    assert hidden.json()["errors"][param] == missing.json()["errors"][param]
    mine = sales_org.contacts["me"]
    visible_id = mine.company_id if param == "company" else mine.pk
    assert client.get(path, {param: visible_id}).status_code == 200
