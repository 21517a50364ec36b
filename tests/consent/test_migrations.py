"""The consent migrations are reversible: the trigger and the seeded rows go and come back."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from consent.models import Purpose, RetentionPolicy


def trigger_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'consent_record_append_only'")
        return cursor.fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_migrations_reverse_and_reapply():
    call_command("migrate", "consent", verbosity=0)
    assert trigger_exists()
    call_command("migrate", "consent", "0001", verbosity=0)
    assert not trigger_exists()
    assert not Purpose.objects.exists()
    assert not RetentionPolicy.objects.exists()
    call_command("migrate", "consent", verbosity=0)
    assert trigger_exists()
    assert Purpose.objects.filter(code="sms_marketing", requires_express_written=True).exists()
    assert RetentionPolicy.objects.get(category="visitor_data").retention_days == 90
