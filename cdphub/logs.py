"""Logs an operator can follow: every line of a request carries its request id, and so do the
lines processing writes about a message that request sent (the id is staged with the message).
In production (``DJANGO_DEBUG=0``, or ``CDPHUB_LOG_FORMAT=json``) each line is one JSON object.

The request id is the caller's ``X-Request-ID`` (a load balancer's, or an SDK's) when it is a
plain token of at most 64 characters, else a new one; the response says it back in
``X-Request-ID``."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
USABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request (or staged message) being handled; empty outside of one."""
    return _request_id.get()


@contextmanager
def request_id_set(value: str) -> Iterator[None]:
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


def request_id_of(request: HttpRequest) -> str:
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    return given if USABLE.fullmatch(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_of(request)
        with request_id_set(request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response


def record_factory_install() -> None:
    """Every log record gets the request id of the moment it is made ('-' outside of one),
    whichever handler writes it."""
    make = logging.getLogRecordFactory()
    if getattr(make, "adds_request_id", False):
        return

    def make_with_request_id(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = current_request_id() or "-"
        return record

    make_with_request_id.adds_request_id = True
    logging.setLogRecordFactory(make_with_request_id)


class RequestIdFilter(logging.Filter):
    """For records made before the factory was installed: the request id of now."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and
    the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id()
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id if request_id not in ("", "-") else None,
            "process": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()
