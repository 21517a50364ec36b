from profiles import ingest_views, views


def register(router) -> None:
    router.register("sources", views.SourceViewSet)
    router.register("profiles", views.ProfileViewSet)
    router.register("identities", views.IdentityViewSet)
    router.register("events", views.EventViewSet)
    router.register("segments", views.SegmentViewSet)
    ingest_views.register(router)
