"""Tasks that remind: at the due time (or the chosen minutes before) the owner gets an e-mail,
once, whatever the number of workers; a task done or deleted in time sends nothing; a new due
time sends again. "My tasks", due today and overdue, and done in one click or in bulk, in the
admin and the API."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from crm import reminders
from crm.models import Task
from crm.reminders import reminders_send
from tests.factories import DealFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(user_with_role):
    user = user_with_role("Sales", "rep")
    user.email = "rep@example.com"
    user.save()
    return user


def due_task(owner, minutes_from_now: float, remind: int | None = 0, **fields) -> Task:
    return TaskFactory(
        owner=owner,
        due_at=timezone.now() + timedelta(minutes=minutes_from_now),
        remind_minutes_before=remind,
        **fields,
    )


def test_a_reminder_goes_to_the_owner_once_at_its_time(rep):
    task = due_task(rep, 30, remind=45, title="Call Anna back", deal=DealFactory(name="Q4 deal"))
    not_yet = due_task(rep, 30, remind=10, title="Later")

    assert reminders_send() == 1
    assert reminders_send() == 0
    [message] = mail.outbox
    assert message.to == ["rep@example.com"]
    assert message.subject.startswith("Reminder: Call Anna back (due ")
    assert "Deal: Q4 deal" in message.body
    assert reverse("admin:crm_task_change", args=[task.pk]) in message.body
    task.refresh_from_db()
    assert task.reminder_sent_at is not None
    not_yet.refresh_from_db()
    assert not_yet.reminder_sent_at is None

    # Twenty minutes later the second one is due too.
    assert reminders_send(now=timezone.now() + timedelta(minutes=21)) == 1
    assert [m.subject.split(" (")[0] for m in mail.outbox] == [
        "Reminder: Call Anna back",
        "Reminder: Later",
    ]


def test_done_deleted_unset_or_unreachable_tasks_send_nothing(rep, user_with_role):
    due_task(rep, -5, done_at=timezone.now())
    due_task(rep, -5).delete()
    due_task(rep, -5, remind=None)
    due_task(None, -5)
    mute = user_with_role("Sales", "no-mail")  # a user without an e-mail address
    silent = due_task(mute, -5)

    assert reminders_send() == 0
    assert mail.outbox == []
    silent.refresh_from_db()
    assert silent.reminder_sent_at is None


def test_a_new_due_time_sends_the_reminder_again(rep):
    task = due_task(rep, -1)
    reminders_send()
    task.due_at = timezone.now() + timedelta(minutes=5)
    reminders.task_save(task=task)
    assert task.reminder_sent_at is None
    assert reminders_send() == 0  # not due yet
    assert reminders_send(now=timezone.now() + timedelta(minutes=6)) == 1
    assert len(mail.outbox) == 2


class FailingBackend(EmailBackend):
    def send_messages(self, messages):
        if any("Broken" in m.subject for m in messages):
            raise ConnectionError("the mail server is down")
        return super().send_messages(messages)


def test_a_reminder_that_could_not_be_sent_is_tried_again(rep, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    broken = due_task(rep, -1, title="Broken")
    due_task(rep, -1, title="Fine")
    assert reminders_send() == 1
    broken.refresh_from_db()
    assert broken.reminder_sent_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert reminders_send() == 1


class SlowBackend(EmailBackend):
    """Sending takes a moment, so that two workers' transactions overlap."""

    def send_messages(self, messages):
        time.sleep(0.02)
        return super().send_messages(messages)


@pytest.mark.django_db(transaction=True)
def test_several_workers_send_each_reminder_once(rep, settings, monkeypatch):
    settings.EMAIL_BACKEND = f"{__name__}.SlowBackend"
    monkeypatch.setattr(reminders, "BATCH", 5)
    tasks = [due_task(rep, -1, title=f"Task {n}") for n in range(40)]
    sent, errors = [], []

    def worker():
        try:
            sent.append(reminders_send())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(sent) == 40
    assert sorted(m.subject.split(" (")[0] for m in mail.outbox) == sorted(
        f"Reminder: {t.title}" for t in tasks
    )
    assert len([n for n in sent if n]) >= 2  # the workers really shared the work


def test_admin_my_tasks_due_filters_and_one_click_done(client, rep, user_with_role):
    overdue = due_task(rep, -60, title="Overdue one")
    today = due_task(rep, 1, title="Today one")
    other = due_task(user_with_role("Sales", "other"), -60, title="Someone else's")
    client.force_login(rep)
    changelist = reverse("admin:crm_task_changelist")

    page = client.get(changelist, {"mine": "1", "due": "overdue"}).content.decode()
    assert "Overdue one" in page and "Today one" not in page and "Someone else" not in page

    response = client.post(
        reverse("admin:crm_task_done", args=[overdue.pk]), {"next": changelist + "?mine=1"}
    )
    assert response.status_code == 302 and response["Location"] == changelist + "?mine=1"
    overdue.refresh_from_db()
    assert overdue.done_at is not None
    assert client.get(reverse("admin:crm_task_done", args=[today.pk])).status_code == 405
    # Off-site "next" is not followed.
    response = client.post(
        reverse("admin:crm_task_done", args=[today.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == changelist
    other.refresh_from_db()
    assert other.done_at is None


def test_admin_bulk_done_and_open_tasks_first(admin_client, rep):
    first = due_task(rep, 10, title="A")
    second = due_task(rep, 20, title="B")
    finished = due_task(rep, 5, title="C", done_at=timezone.now())
    page = admin_client.get(reverse("admin:crm_task_changelist")).content.decode()
    assert page.index(">A<") < page.index(">B<") < page.index(">C<")
    admin_client.post(
        reverse("admin:crm_task_changelist"),
        {"action": "mark_done", "_selected_action": [first.pk, second.pk, finished.pk]},
    )
    assert Task.objects.filter(done_at__isnull=True).count() == 0


def test_api_reminders_filters_and_done(rep, api_client_with_scopes):
    api = api_client_with_scopes("crm:read", "crm:write")
    created = api.post(
        "/api/crm/tasks/",
        {
            "title": "Send the quote",
            "owner": rep.pk,
            "due_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
            "remind_minutes_before": 15,
        },
        format="json",
    ).json()
    assert created["remind_minutes_before"] == 15 and created["reminder_sent_at"] is None
    assert reminders_send() == 1
    overdue = api.get("/api/crm/tasks/", {"due": "overdue"}).json()["results"]
    assert [task["id"] for task in overdue] == [created["id"]]
    done = api.post(f"/api/crm/tasks/{created['id']}/done/").json()
    assert done["done_at"] is not None
    assert api.get("/api/crm/tasks/", {"due": "overdue"}).json()["results"] == []
    refused = api.post(
        "/api/crm/tasks/", {"title": "x", "remind_minutes_before": -5}, format="json"
    )
    assert refused.status_code == 400


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"owner": None}, "owner", "choose one"),
        ({"due_at": None}, "due_at", "needs a due time"),
        ({"owner": "mute"}, "owner", "no e-mail address"),
    ],
)
def test_a_reminder_that_could_reach_no_one_is_refused(
    rep, user_with_role, api_client_with_scopes, admin_client, fields, field, message
):
    mute = user_with_role("Sales", "mute")
    body = {
        "title": "Follow up",
        "owner": rep.pk,
        "due_at": (timezone.now() + timedelta(hours=1)).isoformat(),
        "remind_minutes_before": 10,
    }
    body.update({k: (mute.pk if v == "mute" else v) for k, v in fields.items()})
    api = api_client_with_scopes("crm:read", "crm:write")
    response = api.post("/api/crm/tasks/", body, format="json")
    assert response.status_code == 400
    assert message in str(response.json()["errors"][field])

    form = {"title": "Follow up", "priority": "normal", "remind_minutes_before": 10}
    form["owner"] = "" if body["owner"] is None else body["owner"]
    form["due_at_0"], form["due_at_1"] = (
        ("", "") if body["due_at"] is None else ("2030-01-01", "10:00")
    )
    page = admin_client.post(reverse("admin:crm_task_add"), form)
    assert page.status_code == 200 and message in page.content.decode()
    assert not Task.objects.exists()
