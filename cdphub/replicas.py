"""Reads from PostgreSQL streaming replicas (``DATABASE_REPLICA_URLS``), writes to the primary.

Reads go to a replica only where they were allowed (``replica_reads``): the safe requests of
the admin and the API (``ReplicaReadsMiddleware``), and the background jobs that only read
(exports, segment previews). Everything else reads from the primary, as without the setting. Even
where allowed, a read goes to the primary:

- after a write in the same request or job (the router sees every ORM write): it reads what it
  wrote;
- inside a transaction on the primary (a replica would not see its changes);
- for sessions, users and API keys: a logout or a revoked key takes effect at once;
- for CDPHUB_REPLICA_STICKY_SECONDS after the browser's last write (a cookie): the page a form
  redirects to shows the change, even while the replica lags.

Someone else's change reaches a replica when it has replayed it (usually well under a second);
until then their pages show the state before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

PRIMARY = "default"
STICKY_COOKIE = "cdphub_primary_until"
# Read from the primary whatever the context: what decides who may do what, now (a logout, a
# revoked key or a withdrawn permission takes effect at once).
PRIMARY_ONLY_MODELS = frozenset(
    {
        "sessions.session",
        "auth.user",
        "auth.group",
        "auth.permission",
        "auth.user_groups",
        "auth.user_user_permissions",
        "auth.group_permissions",
        "cdphub.apikey",
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def replica_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias.startswith("replica")]


@dataclass
class _Reads:
    replica: str
    pin_on_write: bool = True
    wrote: bool = False


_reads: ContextVar[_Reads | None] = ContextVar("cdphub_replica_reads", default=None)


@contextmanager
def replica_reads(*, pin_on_write: bool = True) -> Iterator[None]:
    """Let the reads inside go to a replica (one, picked at random, for all of them), until
    something is written (unless not ``pin_on_write``: a job whose writes are only its own
    progress, which its reads never look at). Without replicas, it changes nothing."""
    aliases = replica_aliases()
    if not aliases:
        yield
        return
    replica = random.choice(aliases)  # noqa: S311 - spreading load, not a secret
    token = _reads.set(_Reads(replica=replica, pin_on_write=pin_on_write))
    try:
        yield
    finally:
        _reads.reset(token)


@contextmanager
def bookkeeping() -> Iterator[None]:
    """Writes inside leave the reads where they were: a record of the request itself (an API
    key's last use), which nothing it reads looks at."""
    reads = _reads.get()
    if reads is None or not reads.pin_on_write:
        yield
        return
    reads.pin_on_write = False
    try:
        yield
    finally:
        reads.pin_on_write = True


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str:
        reads = _reads.get()
        if (
            reads is None
            or reads.wrote
            or model._meta.label_lower in PRIMARY_ONLY_MODELS
            or connections[PRIMARY].in_atomic_block
        ):
            return PRIMARY
        return reads.replica

    def db_for_write(self, model, **hints) -> str:
        reads = _reads.get()
        if reads is not None and reads.pin_on_write:
            reads.wrote = True
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # every alias holds the same data

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == PRIMARY


class ReplicaReadsMiddleware:
    """Safe requests of the admin and the API read from a replica, unless this browser wrote
    within CDPHUB_REPLICA_STICKY_SECONDS; a request that writes marks the browser for as long."""

    PREFIXES = ("/admin/", "/api/")

    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = bool(replica_aliases())

    def __call__(self, request):
        if not self.enabled or not request.path.startswith(self.PREFIXES):
            return self.get_response(request)
        if request.method in SAFE_METHODS and not self._recently_wrote(request):
            with replica_reads():
                return self.get_response(request)
        response = self.get_response(request)
        if request.method not in SAFE_METHODS:
            seconds = settings.CDPHUB_REPLICA_STICKY_SECONDS
            response.set_cookie(
                STICKY_COOKIE,
                str(int(time.time()) + seconds),
                max_age=seconds,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
        return response

    @staticmethod
    def _recently_wrote(request) -> bool:
        try:
            return int(request.COOKIES.get(STICKY_COOKIE, "0")) > time.time()
        except ValueError:
            return False
