"""Every task goes to the queue of its workload, so a worker given some queues takes exactly
that work (``-Q ingest``); a task added without a route is caught here, not in production."""

from __future__ import annotations

import pytest
from django.conf import settings

from cdphub.celery import app


def project_tasks() -> list[str]:
    app.loader.import_default_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def queue_of(task: str) -> str:
    return app.amqp.router.route({}, task)["queue"].name


def test_every_task_has_a_route_to_a_workload_queue():
    tasks = project_tasks()
    assert len(tasks) >= 15
    unrouted = [task for task in tasks if task not in settings.CELERY_TASK_ROUTES]
    assert unrouted == []
    assert {queue_of(task) for task in tasks} == set(settings.WORKLOADS)


def test_routes_name_only_tasks_that_exist():
    assert sorted(settings.CELERY_TASK_ROUTES) == project_tasks()


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("profiles.tasks.process_pending_task", "ingest"),
        ("crm.tasks.run_import_job_task", "imports"),
        ("audiences.tasks.import_provider_file_task", "imports"),
        ("cdphub.tasks.send_deliveries_task", "delivery"),
        ("consent.tasks.process_data_subject_request_task", "privacy"),
        ("profiles.tasks.refresh_segment_task", "refresh"),
    ],
)
def test_a_task_goes_to_its_workload(task, queue):
    assert queue_of(task) == queue


def test_scheduled_tasks_are_routed_too():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(settings.CELERY_TASK_ROUTES)


def test_a_worker_without_queues_given_takes_every_workload():
    assert {queue.name for queue in app.conf.task_queues} == set(settings.WORKLOADS)
