"""Health checks for load balancers and orchestrators, answered before anything else runs.

- ``GET /healthz``: the process is up and answers (it touches nothing: a database outage must
  not make an orchestrator restart every web process).
- ``GET /readyz``: this process can serve: the database answers, every migration is applied,
  and the broker (when one is configured) accepts a connection. 200 when all pass, 503 naming
  the checks that failed, each with a one-line reason.

They are public on purpose (a probe carries no credentials) and say nothing but these checks.
The middleware answers them first, before the host check and the HTTPS redirect: a probe
reaches a process by its own address and over plain HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0


def database_check(database=connection) -> str:
    """Empty when the database answers."""
    with database.cursor() as cursor:
        cursor.execute("SELECT 1")
    return ""


_migrated = False


def migrations_check() -> str:
    """Empty when every migration is applied. Once they are, this process never asks again
    (a deployment that migrates starts new processes)."""
    global _migrated
    if _migrated:
        return ""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:3])
        more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
        return f"{len(plan)} migrations not applied: {names}{more}"
    _migrated = True
    return ""


def broker_check() -> str:
    """Empty when no broker is configured (tasks run in the process) or it accepts a
    connection within BROKER_TIMEOUT_SECONDS."""
    if not settings.CELERY_BROKER_URL:
        return ""
    from cdphub.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return ""


CHECKS: dict[str, Callable[[], str]] = {
    "database": database_check,
    "migrations": migrations_check,
    "broker": broker_check,
}


def readiness() -> dict[str, str]:
    """Each check's result: "ok", or why it failed (one line)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            problem = check()
        except Exception as error:  # any failure of a dependency is an answer, not a 500
            logger.warning("readiness check %s failed: %s", name, error)
            problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
        results[name] = problem or "ok"
    return results


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    checks = readiness()
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """First in MIDDLEWARE: answers GET/HEAD of the probes, passes everything else on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info.rstrip("/") or "/")
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse(
                {"error": "method_not_allowed", "message": "probes answer GET and HEAD"},
                status=405,
                headers={"Allow": "GET, HEAD"},
            )
        response = probe(request)
        response["Cache-Control"] = "no-store"
        return response
