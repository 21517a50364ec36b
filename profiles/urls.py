from profiles import views


def register(router) -> None:
    router.register("sources", views.SourceViewSet)
    router.register("profiles", views.ProfileViewSet)
    router.register("identities", views.IdentityViewSet)
    router.register("events", views.EventViewSet)
    router.register("segments", views.SegmentViewSet)
