"""The REST API's shared parts: pagination, the error shape, PII masking in serializers."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.views import exception_handler as drf_exception_handler

from cdphub.pii import can_view_pii, mask_traits, mask_value


class Pagination(CursorPagination):
    """Cursor pagination: stable under inserts, and no COUNT(*) over big tables."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc, context):
    """Every error is ``{"code", "message", "errors"}``: a client can always tell what to fix."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
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
        response.data = {"code": "invalid", "message": message, "errors": errors}
    else:
        code = getattr(exc, "default_code", "error")
        if isinstance(detail, dict) and "detail" in detail:
            code = getattr(detail["detail"], "code", code)
            message = str(detail["detail"])
        else:
            message = str(detail)
        response.data = {"code": code, "message": message, "errors": {}}
    return response


class PiiMaskedSerializerMixin:
    """Masks ``Meta.pii_fields`` (plain values) and ``Meta.pii_json_fields`` (trait documents)
    unless the caller may see personal data."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and can_view_pii(request.user, request.auth):
            return data
        meta = self.Meta
        for field in getattr(meta, "pii_fields", ()):
            if field in data:
                data[field] = mask_value(data[field])
        for field in getattr(meta, "pii_json_fields", ()):
            if field in data:
                data[field] = mask_traits(data[field])
        return data


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField()
