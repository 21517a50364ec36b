"""A person's recent long operations across the apps (imports, segment refreshes, data subject
requests, exports), in one list the admin shows and refreshes while any of them runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.urls import reverse


@dataclass(frozen=True)
class Job:
    kind: str
    title: str
    status: str
    running: bool
    failed: bool
    done: int
    total: int
    url: str
    started_at: datetime

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else (0 if self.running else 100)

    def as_json(self) -> dict:
        return {**asdict(self), "percent": self.percent, "started_at": self.started_at.isoformat()}


JobSource = Callable[[object, int], Iterable[Job]]
SOURCES: list[tuple[str, JobSource]] = []


def register(permission: str):
    """Register a source of jobs, shown to users with ``permission``."""

    def decorator(source: JobSource) -> JobSource:
        SOURCES.append((permission, source))
        return source

    return decorator


def recent_jobs(user, limit: int = 15) -> list[Job]:
    jobs = [
        job
        for permission, source in SOURCES
        if user.has_perm(permission)
        for job in source(user, limit)
    ]
    return sorted(jobs, key=lambda job: job.started_at, reverse=True)[:limit]


@register("crm.view_importjob")
def import_jobs(user, limit: int) -> Iterable[Job]:
    from crm.models import ImportJob

    running = {ImportJob.Status.PENDING, ImportJob.Status.VALIDATING, ImportJob.Status.APPLYING}
    failed = {ImportJob.Status.INVALID, ImportJob.Status.FAILED}
    for job in ImportJob.objects.filter(created_by=user).order_by("-created_at")[:limit]:
        yield Job(
            kind="Import",
            title=f"{job.get_resource_display()} from {job.file_name}",
            status=job.get_status_display(),
            running=job.status in running,
            failed=job.status in failed,
            done=job.rows_done,
            total=job.rows_total,
            url=reverse("admin:crm_importjob_change", args=[job.pk]),
            started_at=job.created_at,
        )


@register("profiles.view_segment")
def segment_refreshes(user, limit: int) -> Iterable[Job]:
    from profiles.models import Segment

    segments = Segment.objects.filter(created_by=user, refresh_started_at__isnull=False)
    for segment in segments.order_by("-refresh_started_at")[:limit]:
        running = segment.status == Segment.Status.CALCULATING
        yield Job(
            kind="Segment refresh",
            title=segment.name,
            status=segment.last_error[:120] if segment.last_error else segment.get_status_display(),
            running=running,
            failed=segment.status == Segment.Status.FAILED,
            done=0 if running else segment.size,
            total=0 if running else segment.size,
            url=reverse("admin:profiles_segment_change", args=[segment.pk]),
            started_at=segment.refresh_started_at,
        )


@register("profiles.view_segment")
def segment_webhook_exports(user, limit: int) -> Iterable[Job]:
    from profiles.models import SegmentExport

    status = SegmentExport.Status
    exports = SegmentExport.objects.filter(created_by=user).select_related("segment")
    for export in exports.order_by("-created_at")[:limit]:
        failed = export.status == status.FAILED
        yield Job(
            kind="Webhook export",
            title=f"{export.segment.name} to {urlsplit(export.url).hostname}",
            status=f"Failed: {export.message}"[:160] if failed else export.get_status_display(),
            running=export.status in {status.QUEUED, status.SENDING},
            failed=failed,
            done=export.sent,
            total=0 if export.status != status.DONE else export.sent,
            url=reverse("admin:profiles_segment_change", args=[export.segment_id]),
            started_at=export.created_at,
        )


@register("audiences.view_audience")
def lookalike_builds(user, limit: int) -> Iterable[Job]:
    from audiences.models import Audience

    status = Audience.BuildStatus
    audiences = Audience.objects.filter(build_requested_by=user, build_requested_at__isnull=False)
    for audience in audiences.order_by("-build_requested_at")[:limit]:
        failed = audience.build_status == status.FAILED
        yield Job(
            kind="Lookalike build",
            title=audience.name,
            status=(
                f"Failed: {audience.build_message}"
                if failed
                else audience.get_build_status_display()
            )[:160],
            running=audience.build_status in {status.QUEUED, status.BUILDING},
            failed=failed,
            done=audience.size if audience.build_status == status.READY else 0,
            total=audience.size if audience.build_status == status.READY else 0,
            url=reverse("admin:audiences_audience_change", args=[audience.pk]),
            started_at=audience.build_requested_at,
        )


@register("consent.view_datasubjectrequest")
def data_subject_requests(user, limit: int) -> Iterable[Job]:
    from consent.models import DataSubjectRequest

    status = DataSubjectRequest.Status
    requests = DataSubjectRequest.objects.filter(created_by=user).order_by("-created_at")
    for request in requests[:limit]:
        yield Job(
            kind="Data subject request",
            title=str(request),
            status=request.get_status_display() + (" (overdue)" if request.is_overdue else ""),
            running=request.status in {status.RECEIVED, status.VERIFIED, status.IN_PROGRESS},
            failed=request.status == status.REJECTED,
            done=0,
            total=0,
            url=reverse("admin:consent_datasubjectrequest_change", args=[request.pk]),
            started_at=request.created_at,
        )
