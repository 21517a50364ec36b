from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from audiences.urls import register as register_audiences
from consent.urls import register as register_consent
from crm.urls import register as register_crm
from crm.webforms import web_form_view
from profiles.urls import register as register_profiles

router = DefaultRouter(trailing_slash=True)
for register in (register_profiles, register_crm, register_audiences, register_consent):
    register(router)

# A refused admin page says which roles may open it (cdphub.admin_site.permission_denied).
handler403 = "cdphub.admin_site.permission_denied"

urlpatterns = [
    # The admin is the product: the site's root goes there.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # A website's forms post leads here (crm.webforms); public, CSRF-exempt like an API.
    path("forms/<str:key>/", csrf_exempt(web_form_view), name="web-form"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include(router.urls)),
    path("", include("profiles.ingest.urls")),
]
