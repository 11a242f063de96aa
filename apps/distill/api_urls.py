from django.urls import path

from apps.distill import api

urlpatterns = [
    path("projects/<int:project_id>/predict", api.PredictView.as_view(), name="api-predict"),
]
