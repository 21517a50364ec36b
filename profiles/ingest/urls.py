"""Segment-compatible collection endpoints, at the root: ``/v1/batch``, ``/v1/track``, ...,
and the short paths of the browser and mobile SDKs."""

from django.urls import path

from profiles.ingest.endpoints import (
    RudderSourceConfigView,
    SourceSettingsView,
    collect_view,
    path_slug,
)

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# analytics.js posts each call to /v1/<first letter> and batches to /v1/b; the mobile SDKs post
# batches to <api host>/b; Segment's Java SDK to /v1/import/ (/v1/import when given the URL).
SHORT_PATHS = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "s": "screen",
}
BATCH_PATHS = ("v1/b", "b", "v1/import", "v1/import/")

urlpatterns = [
    path("v1/batch", collect_view(None), name="collect-batch"),
    path(
        "v1/projects/<str:write_key>/settings",
        SourceSettingsView.as_view(),
        name="collect-source-settings",
    ),
    path("sourceConfig/", RudderSourceConfigView.as_view(), name="collect-source-config"),
    *(
        path(f"v1/{message_type}", collect_view(message_type), name=f"collect-{message_type}")
        for message_type in MESSAGE_TYPES
    ),
    *(
        path(f"v1/{short}", collect_view(message_type, path=f"v1/{short}"), name=f"collect-{short}")
        for short, message_type in SHORT_PATHS.items()
    ),
    *(
        path(batch, collect_view(None, path=batch), name=f"collect-{path_slug(batch, '-')}")
        for batch in BATCH_PATHS
    ),
]
