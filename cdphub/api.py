"""The REST API's shared parts: the error shape and the one exception handler, pagination,
filtering, protected deletes, PII masking in serializers (the parsers and the NUL check are in
``cdphub.parsers``, the schema generator in ``cdphub.schema``).

Every request reaches the database only through these: a value PostgreSQL cannot store or
compare (a NUL character, a time zone offset beyond +-15:59, a cursor position of the wrong
type) is refused here with a 400/404 in the error shape, so no such input becomes a 500."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, JsonResponse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, serializers
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from cdphub.deletion import DeleteProtected, delete_blockers
from cdphub.errors import DomainError
from cdphub.parsers import NUL, NUL_MESSAGE, nul_paths
from cdphub.pii import MASK, can_view_pii, mask_json, mask_traits, mask_value

# PostgreSQL's timestamptz takes UTC offsets up to 15:59:59 either way.
MAX_UTC_OFFSET = timedelta(hours=16)


# --- Errors -------------------------------------------------------------------------------------


def error_body(code: str, message: str, errors: dict | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "errors": errors or {}}


def exception_handler(exc, context):
    """Every error is ``{"code", "message", "errors"}``: a client can always tell what to fix."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DomainError):
        exc = exceptions.ValidationError(exc.errors())
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, DeleteProtected):
        exc = Conflict(str(exc), errors=exc.errors)
    elif isinstance(exc, ProtectedError | RestrictedError):
        # The EXISTS check in ProtectedDestroyMixin comes first; this is a row referencing
        # the object that was added between that check and the delete.
        objects = getattr(exc, "protected_objects", None) or exc.restricted_objects
        exc = Conflict(f"cannot be deleted: {len(objects)} other records refer to it")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        message = "Invalid input: " + "; ".join(
            f"{field}: {' '.join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))}"
            for field, msgs in errors.items()
        )
        response.data = error_body("invalid", message, errors)
    else:
        code = getattr(exc, "default_code", "error")
        if isinstance(detail, dict) and "detail" in detail:
            code = getattr(detail["detail"], "code", code)
            message = str(detail["detail"])
        else:
            message = str(detail)
        response.data = error_body(code, message, getattr(exc, "errors", None))
    return response


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail=None, code=None, errors: dict | None = None):
        super().__init__(detail, code)
        self.errors = errors or {}


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField()


# --- Requests ----------------------------------------------------------------------------------


class ApiMiddleware:
    """Before any view: API paths and query strings with a NUL character answer 404 / 400, so
    filters, lookups and cursors never see one. After: a 404 from URL routing (a path no route
    matches) is in the JSON error shape like every other API answer, not an HTML page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        if NUL in request.path:
            return JsonResponse(error_body("not_found", "Not found."), status=404)
        paths = nul_paths({key: request.GET.getlist(key) for key in request.GET})
        if paths:
            errors = {path.split("[")[0]: [NUL_MESSAGE] for path in paths}
            message = f"Invalid input: {', '.join(errors)}: {NUL_MESSAGE}"
            return JsonResponse(error_body("invalid", message, errors), status=400)
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return JsonResponse(error_body("not_found", "Not found."), status=404)
        return response


# --- Filtering ----------------------------------------------------------------------------------


def validate_storable_datetime(value: datetime | None) -> None:
    offset = value.utcoffset() if value is not None else None
    if offset is not None and abs(offset) >= MAX_UTC_OFFSET:
        raise DjangoValidationError(
            "The UTC offset must be between -15:59 and +15:59.", code="invalid_offset"
        )


def add_datetime_validators(field: forms.Field) -> None:
    if isinstance(field, forms.DateTimeField):
        field.validators.append(validate_storable_datetime)
    for subfield in getattr(field, "fields", ()):  # range filters: a MultiValueField
        add_datetime_validators(subfield)


class FilterBackend(DjangoFilterBackend):
    """django-filter for every view, with three rules for all FilterSets:

    - list filters narrow lists; a detail route or detail action (``/{id}/``, ``/{id}/merge/``)
      finds its object whatever the query string says;
    - a date-time filter takes only what PostgreSQL can compare (UTC offsets within +-15:59),
      anything else is a 400 naming the parameter;
    - a list refuses query parameters it does not know (400, listing the ones it does): an
      integration guessing ``?email=`` must not act on the whole list."""

    def filter_queryset(self, request, queryset, view):
        if getattr(view, "detail", False):
            return queryset
        if getattr(view, "action", None) == "list":
            refuse_unknown_parameters(request, self.get_filterset(request, queryset, view), view)
        return super().filter_queryset(request, queryset, view)

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for field in filterset.form.fields.values():
                add_datetime_validators(field)
        return filterset


def refuse_unknown_parameters(request, filterset, view, *, takes: tuple[str, ...] = ()) -> None:
    """400 for a query parameter that is neither a filter of ``filterset``, a pagination or
    ordering parameter, nor one of ``takes`` (the parameters of a list action of one's own)."""
    known = set(filterset.form.fields) if filterset is not None else set()
    known.update(takes)
    known.add(api_settings.URL_FORMAT_OVERRIDE)
    if any(issubclass(backend, OrderingFilter) for backend in view.filter_backends):
        known.add(api_settings.ORDERING_PARAM)
    paginator = getattr(view, "paginator", None)
    for name in ("cursor_query_param", "page_size_query_param", "page_query_param"):
        if getattr(paginator, name, None):
            known.add(getattr(paginator, name))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known - {None}))
        raise exceptions.ValidationError(
            {name: [f"unknown query parameter; this list takes: {allowed}"] for name in unknown}
        )


# --- Pagination ---------------------------------------------------------------------------------


class Pagination(CursorPagination):
    """Cursor pagination: stable under inserts, and no COUNT(*) over big tables. A cursor
    whose position does not fit the ordering field (tampered with, or from another ordering)
    is a 404 "Invalid cursor", like any other invalid cursor."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            self.check_position(cursor.position)
        return cursor

    def check_position(self, position: str) -> None:
        try:
            field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            return
        try:
            value = field.to_python(position)
            field.run_validators(value)  # integer fields carry the database's range
            if isinstance(value, datetime):
                validate_storable_datetime(value)
        except (DjangoValidationError, TypeError, ValueError):
            raise exceptions.NotFound(self.invalid_cursor_message) from None


# --- Deleting -----------------------------------------------------------------------------------


class ProtectedDestroyMixin:
    """For every viewset that deletes: a row other rows still need (``PROTECT``/``RESTRICT``,
    directly or through what the delete would cascade to) is a 409 naming what refers to it,
    found with EXISTS queries (``cdphub.deletion``) before Django's collector would load every
    referencing row only to raise ``ProtectedError``."""

    def perform_destroy(self, instance):
        blockers = delete_blockers(instance)
        if blockers:
            raise DeleteProtected(instance, blockers)
        super().perform_destroy(instance)


# --- PII ----------------------------------------------------------------------------------------

PII_MASK_NOTE = "Masked (`a•••`) unless the caller may see personal data."


class PiiMaskedSerializerMixin:
    """Masks ``Meta.pii_fields`` (plain values) and ``Meta.pii_json_fields`` (trait documents)
    unless the caller may see personal data. A masked value is a plain string: the schema
    documents these fields without a format (``AutoSchema``), and a null stays null.

    Masks never come back as data. A caller who may not see personal data cannot change it:
    sending back what it was shown (the mask) keeps the stored value, anything else for a
    personal field of an existing record is refused, and personal trait keys it cannot see
    stay when it rewrites a document. From anyone, a value holding the mask is refused."""

    def caller_may_see_pii(self) -> bool:
        return caller_may_see_pii(self.context)

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # refused there, with the usual message
        meta = self.Meta
        pii, instance = self.caller_may_see_pii(), self.instance
        errors: dict[str, list[str]] = {}
        data = data.copy()
        for field in getattr(meta, "pii_fields", ()):
            if field not in data:
                continue
            stored = getattr(instance, field, None) if instance is not None else None
            if not pii and instance is not None and data[field] == shown_value(stored):
                del data[field]  # what the caller was shown, sent back: unchanged
            elif is_masked(data[field]):
                errors[field] = [MASK_REFUSED]
        attrs = super().to_internal_value(data)
        for field in getattr(meta, "pii_fields", ()):
            stored = getattr(instance, field, None) if instance is not None else None
            if field in attrs and not pii and instance is not None and attrs[field] != stored:
                errors.setdefault(field, [PII_WRITE_REFUSED])
        for field in getattr(meta, "pii_json_fields", ()):
            if field in attrs and isinstance(attrs[field], dict):
                stored = getattr(instance, field, None) if instance is not None else None
                attrs[field], problems = document_merge(stored or {}, attrs[field], pii=pii)
                errors.update({f"{field}.{key}": [message] for key, message in problems.items()})
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.caller_may_see_pii():
            return data
        meta = self.Meta
        for field in getattr(meta, "pii_fields", ()):
            if data.get(field) is not None:
                data[field] = mask_value(data[field])
        for field in getattr(meta, "pii_json_fields", ()):
            if field in data:
                data[field] = mask_json(field, data[field])
        return data


def caller_may_see_pii(context: dict) -> bool:
    """Whether the API caller of a serializer may see personal data; code without a request
    (a service, a task) may."""
    request = context.get("request")
    return request is None or can_view_pii(request.user, request.auth)


MASK_REFUSED = "this is a masked value, not data: send the real value or leave the field out"
PII_WRITE_REFUSED = "changing personal data needs personal data access (pii:read)"


def is_masked(value) -> bool:
    return isinstance(value, str) and MASK in value


def shown_value(value) -> object:
    """A personal field's value as a caller without personal data access was shown it."""
    return None if value is None else mask_value(value)


def document_merge(stored: dict, sent: dict, *, pii: bool) -> tuple[dict, dict[str, str]]:
    """The trait document to store when ``sent`` replaces ``stored``, and the problems by key.
    For a caller who may not see personal data, a key sent back as it was shown keeps its
    stored value, personal keys left out are kept (not deleted), and a new or changed
    personal value is refused; "personal" is whatever masking would change."""
    if pii:
        return sent, {key: MASK_REFUSED for key, value in sent.items() if _holds_mask(value)}
    shown = mask_traits(stored)
    merged, problems = {}, {}
    for key, value in sent.items():
        if key in stored and value == shown[key]:
            merged[key] = stored[key]
        elif _holds_mask(value):
            problems[key] = MASK_REFUSED
        elif mask_traits({key: value}) != {key: value} or shown.get(key) != stored.get(key):
            problems[key] = PII_WRITE_REFUSED
        else:
            merged[key] = value
    for key, value in stored.items():
        if key not in sent and shown[key] != value:
            merged[key] = value
    return merged, problems


def _holds_mask(value) -> bool:
    if isinstance(value, dict):
        return any(_holds_mask(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_mask(item) for item in value)
    return is_masked(value)
