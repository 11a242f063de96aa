from django.urls import include, path

from apps.api.docs import RedocView, SchemaView, SwaggerView

# Each app contributes its own endpoints under /api/v1/; this module only assembles them.
urlpatterns = [
    path("v1/", include("apps.projects.api_urls")),
    path("v1/", include("apps.datasets.api_urls")),
    path("v1/", include("apps.datasets.export_api_urls")),
    path("v1/", include("apps.jobs.api_urls")),
    path("v1/", include("apps.training.api_urls")),
    path("v1/", include("apps.rules.api_urls")),
    path("v1/", include("apps.alignment.api_urls")),
    path("v1/", include("apps.distill.api_urls")),
    # OpenAPI schema and its docs pages (Swagger UI and Redoc assets served locally by the
    # drf-spectacular-sidecar app, no CDN), behind login unless FRUGAL_API_DOCS_PUBLIC.
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", RedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
