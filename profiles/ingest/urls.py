"""Segment-compatible collection endpoints, at the root: ``/v1/batch``, ``/v1/track``, ..."""

from django.urls import path

from profiles.ingest.endpoints import collect_view

urlpatterns = [
    path("v1/batch", collect_view(None), name="collect-batch"),
    *(
        path(f"v1/{message_type}", collect_view(message_type), name=f"collect-{message_type}")
        for message_type in ("identify", "track", "page", "screen", "group", "alias")
    ),
]
