"""Task reminders: at a task's due time, or the chosen number of minutes before it, its owner
gets an e-mail (Django's e-mail backend: the console in development).

A scheduled task sends what has come due (``reminders_send``, every minute). Each task is sent
once, however many workers run it: the tasks due are locked ``FOR UPDATE SKIP LOCKED`` while
their e-mails go out, and marked sent in that transaction; a task done or deleted before its
time is not due any more. A new due time or reminder makes it due again (``task_save``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.urls import reverse
from django.utils import timezone

from crm.models import Task

logger = logging.getLogger(__name__)

BATCH = 200
# The longest reminder allowed (Task.remind_minutes_before's validator): bounds the index scan.
LONGEST = timedelta(days=30)


def task_errors(task: Task) -> dict[str, list[str]]:
    """What stops the task's reminder from reaching anyone, by field (empty when nothing)."""
    if task.remind_minutes_before is None:
        return {}
    if task.due_at is None:
        return {"due_at": ["a reminder needs a due time"]}
    if task.owner_id is None:
        return {"owner": ["a reminder goes to the task's owner: choose one"]}
    if not task.owner.email:
        return {"owner": [f"{task.owner} has no e-mail address to be reminded at"]}
    return {}


def task_save(*, task: Task) -> Task:
    """Save a task (refused when its reminder could reach no one); a new due time or reminder
    makes a sent reminder due again."""
    errors = task_errors(task)
    if errors:
        raise ValidationError(errors)
    if task.pk is not None:
        before = Task.objects.filter(pk=task.pk).values("due_at", "remind_minutes_before").first()
        if before and (before["due_at"], before["remind_minutes_before"]) != (
            task.due_at,
            task.remind_minutes_before,
        ):
            task.reminder_sent_at = None
    task.save()
    return task


def tasks_mark_done(*, tasks, when: datetime | None = None) -> int:
    """Mark open tasks done (one click or a selection); how many were open."""
    return tasks.filter(done_at__isnull=True).update(
        done_at=when or timezone.now(), updated_at=timezone.now()
    )


DUE_CHOICES = {"overdue": "Overdue", "today": "Due today", "open": "All open"}


def tasks_due(tasks, due: str, *, now: datetime | None = None):
    """The open ``tasks`` past their due time ("overdue"), due today in the site's time zone
    ("today"), or all open ones ("open"): the one rule of the admin's and the API's filters."""
    now = timezone.localtime(now or timezone.now())
    open_tasks = tasks.filter(done_at__isnull=True)
    if due == "overdue":
        return open_tasks.filter(due_at__lt=now)
    if due == "today":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return open_tasks.filter(due_at__gte=start, due_at__lt=start + timedelta(days=1))
    return open_tasks


def reminders_due(now: datetime):
    remind_at = ExpressionWrapper(
        F("due_at") - F("remind_minutes_before") * Value(timedelta(minutes=1)),
        output_field=DateTimeField(),
    )
    return (
        Task.objects.filter(
            done_at__isnull=True,
            reminder_sent_at__isnull=True,
            remind_minutes_before__isnull=False,
            due_at__lte=now + LONGEST,
        )
        .exclude(Q(owner__isnull=True) | Q(owner__email=""))
        .alias(remind_at=remind_at)
        .filter(remind_at__lte=now)
    )


def reminders_send(*, now: datetime | None = None) -> int:
    """Send every reminder that has come due; how many were sent."""
    now = now or timezone.now()
    sent = 0
    while True:
        with transaction.atomic():
            tasks = list(
                reminders_due(now)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("owner", "contact", "deal")
                .order_by("due_at", "pk")[:BATCH]
            )
            if not tasks:
                return sent
            delivered = send(tasks)
            Task.objects.filter(pk__in=delivered).update(reminder_sent_at=now)
        sent += len(delivered)
        if len(delivered) < len(tasks):
            return sent  # the others failed to send: the next run tries them again


def send(tasks: list[Task]) -> list[int]:
    """E-mail each task's owner; the ids of the tasks whose e-mail went out."""
    delivered = []
    with get_connection() as connection:
        for task in tasks:
            try:
                reminder_message(task, connection).send()
            except Exception:  # the mail server refused or is down: retried next run
                logger.exception("the reminder of task %s could not be sent", task.pk)
            else:
                delivered.append(task.pk)
    return delivered


def reminder_message(task: Task, connection) -> EmailMessage:
    due = timezone.localtime(task.due_at).strftime("%Y-%m-%d %H:%M")
    lines = [f"{task.title}", f"Due: {due} ({settings.TIME_ZONE})"]
    lines.append(f"Priority: {task.get_priority_display()}")
    if task.contact_id:
        lines.append(f"Contact: {task.contact}")
    if task.deal_id:
        lines.append(f"Deal: {task.deal}")
    if task.description:
        lines += ["", task.description]
    lines += ["", f"{settings.CDPHUB_ADMIN_URL}{reverse('admin:crm_task_change', args=[task.pk])}"]
    return EmailMessage(
        subject=f"Reminder: {task.title} (due {due})",
        body="\n".join(lines),
        to=[task.owner.email],
        connection=connection,
    )
