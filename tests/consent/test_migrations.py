"""The consent migrations are reversible: the trigger and the seeded rows go and come back.

Going back takes the other apps' migrations that depend on them along; the test applies every
app's migrations again, so the tests after it find the whole schema."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

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
    call_command("migrate", verbosity=0)  # every app: what went back with consent, too
    assert trigger_exists()
    assert Purpose.objects.filter(code="sms_marketing", requires_express_written=True).exists()
    assert RetentionPolicy.objects.get(category="visitor_data").retention_days == 90
    assert unapplied_migrations() == []


def unapplied_migrations() -> list[str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [str(migration) for migration, _ in plan]
