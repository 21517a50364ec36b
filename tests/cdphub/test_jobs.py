import pytest

from consent.models import DataSubjectRequest
from crm.models import ImportJob
from profiles.models import SegmentExport
from tests.factories import SegmentFactory

pytestmark = pytest.mark.django_db


def import_job(user, **fields) -> ImportJob:
    defaults = {
        "resource": ImportJob.Resource.CONTACTS,
        "key_field": "email",
        "file_name": "contacts.csv",
        "file_data": b"email\n",
        "created_by": user,
    }
    return ImportJob.objects.create(**{**defaults, **fields})


def test_jobs_page_lists_only_my_jobs(client, user_with_role):
    me, colleague = user_with_role("Sales", "me"), user_with_role("Sales", "colleague")
    import_job(
        me, file_name="mine.csv", status=ImportJob.Status.APPLYING, rows_done=40, rows_total=100
    )
    import_job(colleague, file_name="theirs.csv")
    client.force_login(me)

    page = client.get("/admin/jobs/").content.decode()

    assert "mine.csv" in page and "theirs.csv" not in page
    assert 'data-running="1"' in page
    assert "40 / 100" in page


def test_status_endpoint_reports_progress(client, user_with_role):
    me = user_with_role("Sales")
    job = import_job(me, status=ImportJob.Status.APPLYING, rows_done=250, rows_total=1000)
    client.force_login(me)

    first = client.get("/admin/jobs/status.json").json()["jobs"][0]
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.APPLIED, rows_done=1000)
    second = client.get("/admin/jobs/status.json").json()["jobs"][0]

    assert (first["percent"], first["running"]) == (25, True)
    assert (second["percent"], second["running"], second["status"]) == (100, False, "Applied")


def test_jobs_follow_permissions(client, user_with_role):
    analyst = user_with_role("Analyst")
    DataSubjectRequest.objects.create(
        kind="access", subject_email="x@example.com", created_by=analyst
    )
    import_job(analyst)
    client.force_login(analyst)

    kinds = {job["kind"] for job in client.get("/admin/jobs/status.json").json()["jobs"]}

    assert kinds == {"Import"}  # only privacy officers see data subject requests


def test_jobs_need_a_login(client):
    assert client.get("/admin/jobs/status.json").status_code == 302
    assert client.get("/admin/jobs/").status_code == 302


def test_dashboard_shows_my_recent_jobs(client, user_with_role):
    me = user_with_role("Sales")
    import_job(me, file_name="leads.xlsx")
    client.force_login(me)

    assert "leads.xlsx" in client.get("/admin/").content.decode()


def test_a_failed_webhook_export_shows_why(client, user_with_role):
    me = user_with_role("Marketer")
    SegmentExport.objects.create(
        segment=SegmentFactory(name="Newsletter"),
        purpose_code="email_marketing",
        url="https://hooks.example/in?token=secret",
        status=SegmentExport.Status.FAILED,
        message="could not deliver to hooks.example:443: Connection refused",
        created_by=me,
    )
    client.force_login(me)

    (job,) = client.get("/admin/jobs/status.json").json()["jobs"]

    assert (job["kind"], job["title"], job["failed"]) == (
        "Webhook export",
        "Newsletter to hooks.example",
        True,
    )
    assert job["status"] == "Failed: could not deliver to hooks.example:443: Connection refused"
