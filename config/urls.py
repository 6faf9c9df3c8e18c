from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from levy.api.health import healthz, readyz
from levy.monitoring.views import metrics
from levy.notifications.backlog import LiveStateCollector

admin.site.site_header = "Levy administration"
admin.site.site_title = "Levy"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("levy.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's settings as a script file: the page runs under the
    # Content-Security-Policy, which refuses inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # The scrape-time gauges are the notifications app's: monitoring sits below the apps
    # (they count into its metrics), so the URL configuration hands them to the view.
    path("metrics", metrics, {"live": (LiveStateCollector(),)}, name="metrics"),
    path("", include("levy.web.urls")),
]

# Under /api/, errors raised outside the views answer in the API's JSON shape.
handler400 = "levy.api.outside.bad_request"
handler403 = "levy.api.outside.permission_denied"
handler404 = "levy.api.outside.page_not_found"
handler500 = "levy.api.outside.server_error"
