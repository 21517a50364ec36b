"""Only the person who started an import (or a superuser) applies, re-maps or reverts it, and
a revert touches only the records the person reverting sees: an import acts with its creator's
sight of the CRM (sales teams), which nobody else may borrow."""

from __future__ import annotations

import pytest
from django.urls import reverse

from crm.importfiles import ImportRefused
from crm.imports.jobs import import_job_check_actor
from crm.imports.revert import import_job_revert
from crm.models import Contact, ImportJob
from tests.crm.test_imports import csv_bytes, imported

pytestmark = pytest.mark.django_db


def updating_import(created_by, *emails: str) -> ImportJob:
    """An applied import by ``created_by`` that renamed the contacts with these e-mails."""
    rows = [f"Renamed,{email}" for email in emails]
    return imported(csv_bytes("first_name,email", *rows), created_by=created_by)


def test_another_sales_user_cannot_revert_someone_elses_import(client, sales_org, superuser):
    # Given an admin's import that changed a record of the South team
    rival_contact = sales_org.contacts["rival"]
    original = rival_contact.first_name
    job = updating_import(superuser, rival_contact.email)
    assert Contact.objects.get(pk=rival_contact.pk).first_name == "Renamed"

    # When a North sales user tries to revert it, in the admin or by the action
    client.force_login(sales_org.me)
    response = client.post(reverse("admin:crm_importjob_revert", args=[job.pk]), follow=True)
    assert "Only the person who started this import" in response.content.decode()
    client.post(
        reverse("admin:crm_importjob_changelist"),
        {"action": "revert", "_selected_action": [job.pk]},
    )

    # Then nothing is reverted
    job.refresh_from_db()
    assert job.status == ImportJob.Status.APPLIED
    assert Contact.objects.get(pk=rival_contact.pk).first_name == "Renamed"
    assert original != "Renamed"


def test_another_sales_user_cannot_apply_someone_elses_import(client, sales_org, superuser):
    from tests.crm.test_imports import checked

    job = checked(csv_bytes("first_name,email", "New,new@example.com"), created_by=superuser)
    client.force_login(sales_org.me)
    client.post(reverse("admin:crm_importjob_apply", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == ImportJob.Status.VALIDATED
    assert not Contact.objects.filter(email="new@example.com").exists()


def test_creator_and_superuser_may_act_others_not(sales_org, superuser):
    job = updating_import(sales_org.me, sales_org.contacts["me"].email)
    import_job_check_actor(job=job, actor=sales_org.me)
    import_job_check_actor(job=job, actor=superuser)
    import_job_check_actor(job=job, actor=None)  # the operator's manage.py
    with pytest.raises(ImportRefused, match="Only the person who started this import"):
        import_job_check_actor(job=job, actor=sales_org.mate)


def test_revert_touches_only_records_the_actor_sees(sales_org):
    # Given my import renamed my contact and a contact that later moved to another team
    mine, moved = sales_org.contacts["me"], sales_org.contacts["mate"]
    job = updating_import(sales_org.me, mine.email, moved.email)
    Contact.objects.filter(pk=moved.pk).update(owner=sales_org.rival)

    result = import_job_revert(job=job, actor=sales_org.me)

    assert Contact.objects.get(pk=mine.pk).first_name == mine.first_name
    assert Contact.objects.get(pk=moved.pk).first_name == "Renamed"  # out of my sight now
    assert result["restored"] == 1
    assert result["out_of_sight"] == 1
    assert "1 record(s) out of your sight" in ImportJob.objects.get(pk=job.pk).message
