"""The collection endpoints: ``POST /v1/batch`` and ``/v1/<type>``, as Segment's Tracking API,
and the short paths browser and mobile SDKs use (``/v1/t``, ``/v1/b``, ``/b``, ...).

Browsers: every answer carries CORS headers for the request's ``Origin`` (so a page can read
an error too), a preflight is answered for any origin (the write key is not in a preflight),
and a request whose ``Origin`` the source does not allow is refused with 403.

APIViews only so that they appear in the OpenAPI schema: authentication, parsing and rendering
are our own (write keys, gzip, Segment's error shape) and kept lean, this is the hot path."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from cdphub.metrics import MESSAGES
from profiles.ingest.collect import (
    CollectError,
    batch_messages,
    body_read,
    client_ip,
    context_ip_fill,
    messages_collect,
    source_access,
    write_key_from_headers,
)
from profiles.ingest.limits import messages_admit, rate_limited_count
from profiles.ingest.spec import request_schema
from profiles.models import Source

ERROR = inline_serializer(
    "CollectError", {"code": serializers.CharField(), "message": serializers.CharField()}
)
ACCEPTED = inline_serializer(
    "CollectAccepted",
    {
        "success": serializers.BooleanField(),
        "accepted": serializers.IntegerField(help_text="Messages stored for processing."),
        "duplicates": serializers.IntegerField(help_text="Messages with a known messageId."),
        "rejected": serializers.ListField(
            child=serializers.DictField(),
            help_text="Messages refused alone, with their index and reason; kept for review.",
        ),
        "rate_limited": serializers.ListField(
            child=serializers.DictField(),
            help_text="Messages refused, with their index and reason, because their userId or "
            "anonymousId sent more than the source's limit per minute; counted, not kept.",
        ),
    },
)
RESPONSES = {
    200: ACCEPTED,
    400: OpenApiResponse(ERROR, description="Invalid JSON, oversize body or invalid message."),
    401: OpenApiResponse(ERROR, description="Missing, unknown or inactive write key."),
    403: OpenApiResponse(ERROR, description="A browser page of an origin the source refuses."),
    429: OpenApiResponse(
        ERROR,
        description="Over the source's rate limit, or every message's sender over its limit: "
        "nothing stored; send again after the Retry-After header's seconds.",
    ),
}
# What a browser may send in a cross-origin request (asked in its preflight). The SDKs add
# headers of their own: analytics.js X-Retry-Count when it sends a call again, RudderStack's
# JavaScript SDK AnonymousId and SentAt to every call and Rsa-* to a retry. A preflight that
# does not allow every one of them makes the browser drop the call.
CORS_ALLOWED_HEADERS = ", ".join(
    (
        "Content-Type",
        "Authorization",
        "X-Write-Key",
        "Content-Encoding",
        "X-Retry-Count",
        "AnonymousId",
        "SentAt",
        "Rsa-Recovered",
        "Rsa-Retry-Attempt",
        "Rsa-Retry-Reason",
        "Rsa-Since-First-Attempt",
        "Rsa-Since-Last-Attempt",
    )
)
CORS_MAX_AGE = 86400
# What the page's script may read of an answer: when to send again after a 429.
CORS_EXPOSED_HEADERS = "Retry-After, X-RateLimit-Reset"
BATCH_EXAMPLE = OpenApiExample(
    "batch",
    value={
        "batch": [
            {"type": "identify", "userId": "u-1", "traits": {"email": "anna@example.com"}},
            {"type": "track", "userId": "u-1", "event": "Order Completed"},
        ],
        "context": {"library": {"name": "analytics-python"}},
        "sentAt": "2026-01-01T12:00:00Z",
    },
    request_only=True,
)


def error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


def origin_refusal(source, origin: str | None) -> JsonResponse | None:
    """The 403 for a page of an origin the source does not allow (servers and apps send no
    origin), or None."""
    if origin and not source.allows_origin(origin):
        return error(
            403,
            "origin_not_allowed",
            f"pages of {origin} may not send to this source: add the origin to the source's "
            "allowed origins",
        )
    return None


def with_cors(response, origin: str | None):
    """The answer readable by the page that sent the request: an error too, so that the page's
    developer sees why."""
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        # A beacon is sent with credentials: without this the browser drops it (the write
        # key, not a cookie, is what authenticates it).
        response["Access-Control-Allow-Credentials"] = "true"
        response["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        response["Vary"] = "Origin"
    return response


def body_bytes(django_request, limit: int) -> bytes:
    """At most ``limit`` bytes of the body. A streamed upload (``Transfer-Encoding: chunked``,
    no Content-Length: analytics-kotlin up to 1.22, gzipping Java clients) is read from the
    server's input, which decodes the chunks; Django would read it as empty."""
    meta = django_request.META
    if not meta.get("CONTENT_LENGTH") and "chunked" in meta.get("HTTP_TRANSFER_ENCODING", ""):
        return meta["wsgi.input"].read(limit)
    return django_request.read(limit)


class CollectView(APIView):
    """Accepts Segment/RudderStack messages. Write key as HTTP Basic username (empty password),
    ``X-Write-Key`` header or ``writeKey`` in the body; ``Content-Encoding: gzip`` accepted."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []
    message_type: str | None = None

    def dispatch(self, request, *args, **kwargs):
        """A POST goes straight to ``post`` with Django's request: DRF's request wrapping,
        content negotiation and authentication are not used here, and cost a browser's
        one-message request a fifth of its time. Other methods take DRF's way (the preflight,
        405)."""
        if request.method == "POST":
            return self.post(request)
        return super().dispatch(request, *args, **kwargs)

    def options(self, request, *args, **kwargs):
        """A browser's preflight: the request that follows is checked against its source's
        allowed origins."""
        return preflight(request._request.META.get("HTTP_ORIGIN"), "POST, OPTIONS")

    def post(self, request, *args, **kwargs):
        origin = request.META.get("HTTP_ORIGIN")
        return with_cors(self.collect(request, origin), origin)

    def collect(self, django_request, origin: str | None):
        max_bytes = settings.CDPHUB_INGEST_MAX_BATCH_BYTES
        if self.message_type is not None:
            max_bytes = settings.CDPHUB_INGEST_MAX_MESSAGE_BYTES
        write_key = write_key_from_headers(django_request.META)
        if write_key is not None and source_access(write_key) is None:
            return error(401, "invalid_write_key", "unknown or inactive write key")
        try:
            body = body_read(
                body_bytes(django_request, max_bytes + 1),
                content_encoding=django_request.META.get("HTTP_CONTENT_ENCODING", ""),
                max_bytes=max_bytes,
            )
            if not isinstance(body, dict):
                raise CollectError(400, "invalid_body", "the body must be a JSON object")
            if write_key is None:
                write_key = body.pop("writeKey", None)
            source = source_access(write_key if isinstance(write_key, str) else None)
            if source is None:
                return error(401, "invalid_write_key", "missing, unknown or inactive write key")
            refused = origin_refusal(source, origin)
            if refused is not None:
                return refused
            messages = batch_messages(body, self.message_type)
        except CollectError as exc:
            return error(exc.status, exc.code, exc.message)
        verdict = messages_admit(source.id, source.limits, messages)
        if verdict.source_refused or len(verdict.refused) == len(messages):
            return rate_limited(source, verdict, len(messages))
        context_ip_fill(messages, client_ip(django_request.META))
        result = messages_collect(
            source_id=source.id, messages=messages, rate_limited=verdict.refused
        )
        if result.rate_limited:
            rate_limited_count(
                source.id, source_limited=0, identifier_limited=len(result.rate_limited)
            )
        messages_counted(
            accepted=result.accepted,
            duplicate=result.duplicates,
            rejected=len(result.rejected),
            rate_limited=len(result.rate_limited),
        )
        if self.message_type is not None and result.rejected:
            return error(400, "invalid_message", result.rejected[0]["reason"])
        return JsonResponse(
            {
                "success": True,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "rate_limited": result.rate_limited,
            }
        )


def rate_limited(source, verdict, count: int) -> JsonResponse:
    """429 for a request none of whose messages may pass now, with when to send it again
    (``Retry-After``, honoured by analytics.js and the mobile SDKs); the refusal is counted."""
    if verdict.source_refused:
        limit = source.limits.source
        message = (
            f"this source sends more than {limit.rate} messages per second (burst "
            f"{limit.burst}): send again after {verdict.retry_after_header} s"
        )
        rate_limited_count(source.id, source_limited=count, identifier_limited=0)
    else:
        message = f"{next(iter(verdict.refused.values()))}: send again after "
        message += f"{verdict.retry_after_header} s"
        rate_limited_count(source.id, source_limited=0, identifier_limited=count)
    messages_counted(rate_limited=count)
    response = error(429, "rate_limited", message)
    # Every SDK reads Retry-After; older analytics.js releases read X-RateLimit-Reset.
    response["Retry-After"] = response["X-RateLimit-Reset"] = verdict.retry_after_header
    return response


def messages_counted(**outcomes: int) -> None:
    """The collected messages' outcomes, for the metrics."""
    for outcome, count in outcomes.items():
        if count:
            MESSAGES.labels(outcome).inc(count)


def path_slug(path: str, separator: str = "_") -> str:
    """A name for a path's route and schema operation: ``v1/import/`` is ``v1_import_slash``."""
    slug = separator.join(path.strip("/").split("/"))
    return f"{slug}{separator}slash" if path.endswith("/") else slug


def collect_view(message_type: str | None, path: str | None = None):
    """The view of one endpoint; ``path`` names a short path (``t``, ``b``) for its schema."""
    name = path or message_type or "batch"
    description = (
        "A batch of up to 2,500 messages (500 KB by default); batch `context` and "
        "`integrations` are merged into each message. A bad message is rejected alone."
        if message_type is None
        else f"One {message_type} message (32 KB at most)."
    )
    schema = extend_schema(
        operation_id=f"collect_{path_slug(name)}",
        tags=["collection"],
        summary=f"Collect: {message_type or 'batch'}"
        + (f" (short path /{path}, as browser and mobile SDKs send)" if path else ""),
        description=description,
        # JSON, or the same as text/plain (browser SDKs send it so to skip a CORS preflight).
        request={
            "application/json": request_schema(message_type),
            "text/plain": request_schema(message_type),
        },
        responses=RESPONSES,
        examples=[BATCH_EXAMPLE] if message_type is None else [],
        auth=[],
    )

    # A function of its own per endpoint: extend_schema annotates the function it is given, so
    # sharing CollectView.post would give every endpoint the last one's operation id.
    def post(self, request, *args, **kwargs):
        return CollectView.post(self, request, *args, **kwargs)

    view_class = type(
        f"Collect{path_slug(name).title()}View",
        (CollectView,),
        {
            "message_type": message_type,
            "post": schema(post),
            "__doc__": CollectView.__doc__,
        },
    )
    return view_class.as_view()


# --- Source settings for browser SDKs -----------------------------------------------------------

SETTINGS_MAX_AGE = 300


def sdk_settings(request, write_key: str) -> dict:
    """What analytics.js reads before it sends anything: the Segment.io integration, pointed at
    this server, with the source's key. No device-mode destinations, no metrics (a sample rate
    of 0: nothing is posted to Segment's own metrics host)."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{request.get_host()}/v1",
                "protocol": request.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "enabledMiddleware": {},
        "middlewareSettings": {},
        "metrics": {"sampleRate": 0},
        "remotePlugins": [],
        "legacyVideoPluginsEnabled": False,
    }


def source_config(source_id: int, write_key: str) -> dict:
    """What RudderStack's JavaScript SDK v3 requires before it sends: a source with an id, a
    ``config`` object and a list of destinations (none: cdphub is where the events go)."""
    source = Source.objects.only("name", "is_active", "updated_at").get(pk=source_id)
    return {
        "isHosted": False,
        "source": {
            "id": str(source.pk),
            "name": source.name,
            "writeKey": write_key,
            "workspaceId": "cdphub",
            "enabled": source.is_active,
            "config": {},
            "destinations": [],
            "updatedAt": source.updated_at.isoformat(),
        },
    }


SETTINGS_RESPONSES = {
    200: OpenApiTypes.OBJECT,
    403: OpenApiResponse(ERROR, description="A page of an origin the source refuses."),
    404: OpenApiResponse(ERROR, description="Unknown or inactive write key."),
}


def settings_answer(write_key: str | None, origin: str | None, settings_of) -> JsonResponse:
    """An SDK's settings for the source of ``write_key`` (``settings_of(source)``), cacheable
    for five minutes; 404 for an unknown or inactive key, 403 for a refused origin."""
    source = source_access(write_key)
    if source is None:
        return with_cors(error(404, "not_found", "unknown or inactive write key"), origin)
    refused = origin_refusal(source, origin)
    if refused is not None:
        return with_cors(refused, origin)
    response = JsonResponse(settings_of(source))
    response["Cache-Control"] = f"public, max-age={SETTINGS_MAX_AGE}"
    return with_cors(response, origin)


def preflight(origin: str | None, methods: str) -> HttpResponse:
    """The answer to a browser's preflight: allowed for any origin, since it carries no key."""
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = methods
    response["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
    response["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return with_cors(response, origin)


class RudderSourceConfigView(APIView):
    """``GET /sourceConfig/?writeKey=...`` (or the key as HTTP Basic user name): the source
    configuration RudderStack's JavaScript SDK fetches from its ``configUrl``; it refuses to send
    without a valid one. 404 for an unknown or inactive key; cacheable for five minutes."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def options(self, request, *args, **kwargs):
        return preflight(request._request.META.get("HTTP_ORIGIN"), "GET, OPTIONS")

    @extend_schema(
        operation_id="collect_source_config",
        tags=["collection"],
        summary="Source configuration for RudderStack's JavaScript SDK",
        responses=SETTINGS_RESPONSES,
        auth=[],
    )
    def get(self, request):
        django_request = request._request
        origin = django_request.META.get("HTTP_ORIGIN")
        write_key = write_key_from_headers(django_request.META) or django_request.GET.get(
            "writeKey"
        )
        return settings_answer(
            write_key, origin, lambda source: source_config(source.id, write_key)
        )


class SourceSettingsView(APIView):
    """``GET /v1/projects/<writeKey>/settings``: the settings analytics.js fetches from its
    ``cdnURL`` before it sends. 404 for an unknown or inactive key; cacheable for five
    minutes; a page of an origin the source does not allow gets 403, as when it sends."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="collect_source_settings",
        tags=["collection"],
        summary="Source settings for analytics.js",
        responses=SETTINGS_RESPONSES,
        auth=[],
    )
    def get(self, request, write_key: str):
        origin = request._request.META.get("HTTP_ORIGIN")
        return settings_answer(
            write_key, origin, lambda source: sdk_settings(request._request, write_key)
        )
