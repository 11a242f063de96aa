from django.urls import include, path

# Each app contributes its own endpoints under /api/v1/; this module only assembles them.
urlpatterns = [
    path("v1/", include("apps.projects.api_urls")),
    path("v1/", include("apps.datasets.api_urls")),
    path("v1/", include("apps.datasets.export_api_urls")),
    path("v1/", include("apps.jobs.api_urls")),
]
