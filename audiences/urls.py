from audiences import views


def register(router) -> None:
    router.register("audiences/visitors", views.VisitorViewSet)
    router.register("audiences/providers", views.DataProviderViewSet)
    router.register("audiences/categories", views.CategoryViewSet)
    router.register("audiences/trait-hits", views.VisitorTraitHitViewSet)
    router.register("audiences/audiences", views.AudienceViewSet)
    router.register("audiences/provider-imports", views.ProviderFileImportViewSet)
    router.register("audiences/exports", views.AudienceExportViewSet)
    router.register("audiences/syncs", views.AudienceSyncViewSet)
