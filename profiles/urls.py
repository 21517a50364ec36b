from profiles import views


def register(router) -> None:
    router.register("sources", views.SourceViewSet)
    router.register("profiles", views.ProfileViewSet)
    router.register("identities", views.IdentityViewSet)
    router.register("events", views.EventViewSet)
    router.register("segments", views.SegmentViewSet)
    router.register("computed-traits", views.ComputedTraitViewSet)
    router.register("profile-merges", views.ProfileMergeViewSet)
    router.register("merge-conflicts", views.MergeConflictViewSet)
    router.register("rejected-messages", views.RejectedMessageViewSet)
    router.register("tracking-plans", views.TrackingPlanViewSet)
    router.register("tracking-plan-violations", views.TrackingPlanViolationViewSet)
    router.register("destinations", views.DestinationViewSet)
