"""Dataset export endpoint under /api/v1/."""

from django.urls import path

from apps.datasets.export_api import ExportApi

urlpatterns = [
    path("projects/<int:project_id>/export/", ExportApi.as_view(), name="api-export"),
]
