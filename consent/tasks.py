from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from consent.models import DataSubjectRequest


@shared_task(ignore_result=True)
def process_data_subject_request_task(request_id: int, actor_id: int | None = None) -> None:
    request = DataSubjectRequest.objects.filter(pk=request_id).first()
    if request is None or request.status not in ("verified", "in_progress"):
        return  # deleted, or already run: running twice is harmless
    from consent.dsar import dsar_process

    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    dsar_process(request=request, actor=actor)


@shared_task(ignore_result=True)
def purge_expired_data_task() -> None:
    """Nightly (Celery beat): purge every data category past its retention period."""
    from consent.services import retention_run_all

    retention_run_all()


@shared_task(ignore_result=True)
def purge_retention_category_task(category: str) -> None:
    """One category now (the admin's "purge now")."""
    from consent.services import retention_purge

    retention_purge(category=category)
