"""Examples endpoints under /api/v1/."""

from django.urls import path

from apps.datasets import api

urlpatterns = [
    path(
        "projects/<int:project_id>/examples/",
        api.ExampleListApi.as_view(),
        name="api-examples",
    ),
    path(
        "projects/<int:project_id>/examples/<int:example_id>/",
        api.ExampleDetailApi.as_view(),
        name="api-example-detail",
    ),
]
