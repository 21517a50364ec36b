from consent import views


def register(router) -> None:
    router.register("consent/purposes", views.PurposeViewSet)
    router.register("consent/records", views.ConsentRecordViewSet)
    router.register("consent/states", views.ConsentStateViewSet)
    router.register("consent/requests", views.DataSubjectRequestViewSet)
    router.register("consent/suppressions", views.SuppressionViewSet)
    router.register("consent/retention-policies", views.RetentionPolicyViewSet)
    router.register("consent/processing-activities", views.ProcessingActivityViewSet)
