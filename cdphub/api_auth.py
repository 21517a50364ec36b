"""API-key authentication and scope permissions (kept free of DRF view imports, which load
these classes from settings)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from cdphub.hashing import secret_hash
from cdphub.models import ApiKey
from cdphub.replicas import bookkeeping

API_APPS = ("profiles", "crm", "audiences", "consent")
# An API key's last use is recorded at most this often: not a write per request.
LAST_USED_STEP = timedelta(minutes=1)
SCOPES = tuple(f"{app}:{access}" for app in API_APPS for access in ("read", "write")) + (
    "pii:read",
)


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <key>`` (or ``Bearer <key>``). Keys are looked up by hash."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"api-key", b"bearer"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Api-Key <key>'.")
        key = header[1].decode(errors="replace")
        api_key = (
            ApiKey.objects.select_related("created_by")
            .filter(key_hash=secret_hash(key), revoked_at__isnull=True)
            .first()
        )
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_STEP:
            with bookkeeping():
                ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return (ApiKeyUser(api_key), api_key)

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyUser:
    """The request user of an API-key request: authenticated, but not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.pk = None
        self.id = None
        self.username = f"api-key:{api_key.name}"

    def has_perm(self, perm: str, obj=None) -> bool:
        return False

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cdphub.api_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; create keys with `manage.py create_api_key`.",
        }


class HasScopeOrModelPermission(permissions.BasePermission):
    """API keys need ``<app>:read`` to read and ``<app>:write`` to write the view's app;
    people (session auth) need the matching Django model permission."""

    model_permissions = permissions.DjangoModelPermissions()
    model_permissions.perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if isinstance(request.auth, ApiKey):
            return request.auth.has_scope(required_scope(request, view))
        return self.model_permissions.has_permission(request, view)


def required_scope(request, view) -> str:
    app = getattr(view, "scope_app", None)
    if app is None:
        app = view.get_queryset().model._meta.app_label
    access = "read" if request.method in permissions.SAFE_METHODS else "write"
    return f"{app}:{access}"
