"""Import pages, mounted at /projects/<project_id>/import/."""

from django.urls import path

from apps.datasets import import_views

app_name = "imports"
urlpatterns = [
    path("", import_views.import_start, name="new"),
    path("columns/", import_views.import_columns, name="columns"),
    path("preview/", import_views.import_preview, name="preview"),
    path("cancel/", import_views.import_discard, name="discard"),
]
