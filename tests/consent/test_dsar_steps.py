"""Handling a data subject request from its own page: verify (with how), preview an erasure per
app, run, extend (with a reason), reject; a completed request offers nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.dsar import dsar_create, dsar_verify
from consent.models import DataSubjectRequest, Suppression
from profiles.models import Event, Identity
from tests.factories import EventFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def step_url(request_, step: str) -> str:
    return reverse(f"admin:consent_datasubjectrequest_{step}", args=[request_.pk])


def page_of(request_) -> str:
    return reverse("admin:consent_datasubjectrequest_change", args=[request_.pk])


@pytest.fixture
def erasure(db):
    identity = IdentityFactory(kind=Identity.Kind.EMAIL, value="sanne@example.org")
    EventFactory.create_batch(3, profile=identity.profile)
    return dsar_create(kind="erasure", email="sanne@example.org")


@pytest.fixture
def officer(client, user_with_role):
    client.force_login(user_with_role("Privacy officer"))
    return client


def test_a_new_request_offers_verify_preview_extend_and_reject(officer, erasure):
    page = officer.get(page_of(erasure)).content.decode()

    for step in ("verify", "preview", "extend", "reject"):
        assert step_url(erasure, step) in page
    assert step_url(erasure, "run") not in page  # not before its identity is verified


def test_verifying_needs_a_note_of_how_and_keeps_it(officer, erasure):
    refused = officer.post(step_url(erasure, "verify"), {"note": ""})
    assert refused.status_code == 200 and refused.context["form"].errors["note"]
    erasure.refresh_from_db()
    assert erasure.status == "received"

    done = officer.post(step_url(erasure, "verify"), {"note": "Replied from the address on file"})

    assert done.status_code == 302 and done.url == page_of(erasure)
    erasure.refresh_from_db()
    assert erasure.status == "verified" and erasure.profile_id
    assert erasure.actions.filter(note="Replied from the address on file").exists()
    offered = officer.get(page_of(erasure)).content.decode()
    assert step_url(erasure, "run") in offered and step_url(erasure, "reject") in offered
    assert step_url(erasure, "verify") not in offered  # the request service allows it once


def test_the_preview_counts_what_the_erasure_removes_per_app_and_changes_nothing(officer, erasure):
    page = officer.get(step_url(erasure, "preview"))

    rows = {(row["app"], row["records"]): row["count"] for row in page.context["preview"]["rows"]}
    assert rows[("Customer profiles (CDP)", "events")] == 3
    assert rows[("Customer profiles (CDP)", "identities")] == 1
    assert page.context["preview"]["suppressed"] >= 1
    assert "Rows deleted or anonymised" in page.content.decode()
    assert Event.objects.count() == 3
    assert not Suppression.objects.exists()


def test_running_from_the_page_erases(officer, erasure, django_capture_on_commit_callbacks):
    dsar_verify(request=erasure, note="checked")
    run_page = officer.get(step_url(erasure, "run"))
    assert run_page.context["preview"]["rows"]  # shown before it is confirmed

    with django_capture_on_commit_callbacks(execute=True):
        done = officer.post(step_url(erasure, "run"))

    assert done.status_code == 302
    erasure.refresh_from_db()
    assert erasure.status == "completed"
    assert not Event.objects.exists()


def test_extending_needs_a_reason_and_stays_within_two_months(officer, erasure):
    due = erasure.due_at
    no_reason = officer.post(step_url(erasure, "extend"), {"days": 10, "reason": " "})
    too_long = officer.post(step_url(erasure, "extend"), {"days": 62, "reason": "Complex"})

    assert no_reason.context["form"].errors
    assert "at the latest" in str(too_long.context["form"].errors["days"])
    done = officer.post(step_url(erasure, "extend"), {"days": 14, "reason": "Many systems"})

    assert done.status_code == 302
    erasure.refresh_from_db()
    assert (erasure.due_at - due).days == 14
    assert "Many systems" in erasure.extension_reason


def test_rejecting_needs_a_reason_and_locks_the_request(officer, erasure):
    assert officer.post(step_url(erasure, "reject"), {"reason": ""}).context["form"].errors

    officer.post(step_url(erasure, "reject"), {"reason": "Identity not confirmed"})

    erasure.refresh_from_db()
    assert erasure.status == "rejected"
    page = officer.get(page_of(erasure)).content.decode()
    for step in ("verify", "preview", "run", "extend", "reject"):
        assert step_url(erasure, step) not in page
        assert officer.post(step_url(erasure, step), {"reason": "again"}).status_code == 403


def test_a_step_the_status_does_not_allow_is_refused_with_the_reason(officer, erasure):
    response = officer.post(step_url(erasure, "run"), follow=True)

    assert "it cannot be run" in response.content.decode()
    erasure.refresh_from_db()
    assert erasure.status == "received"


def test_a_role_that_may_only_look_gets_no_steps(client, user_with_role, erasure):
    client.force_login(user_with_role("Analyst"))
    page = client.get(page_of(erasure))

    assert page.status_code == 403  # requests are a privacy officer's
    assert client.post(step_url(erasure, "verify"), {"note": "x"}).status_code == 403
    erasure.refresh_from_db()
    assert erasure.status == "received"


def test_only_an_erasure_offers_a_preview(officer):
    access = dsar_create(kind="access", email="someone@example.org")

    assert step_url(access, "preview") not in officer.get(page_of(access)).content.decode()
    assert DataSubjectRequest.objects.filter(pk=access.pk, status="received").exists()
