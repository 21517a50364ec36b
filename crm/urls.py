from crm import views


def register(router) -> None:
    router.register("crm/tags", views.TagViewSet)
    router.register("crm/companies", views.CompanyViewSet)
    router.register("crm/contacts", views.ContactViewSet)
    router.register("crm/pipelines", views.PipelineViewSet)
    router.register("crm/stages", views.StageViewSet)
    router.register("crm/deals", views.DealViewSet)
    router.register("crm/activities", views.ActivityViewSet)
    router.register("crm/tickets", views.TicketViewSet)
    router.register("crm/tasks", views.TaskViewSet)
    router.register("crm/account-suggestions", views.AccountSuggestionViewSet)
    router.register("crm/custom-fields", views.CustomFieldViewSet)
