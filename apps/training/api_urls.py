from django.urls import path

from apps.training import api

urlpatterns = [
    path(
        "projects/<int:project_id>/training/",
        api.TrainingSummaryView.as_view(),
        name="api-training",
    ),
    path(
        "projects/<int:project_id>/training/rounds/",
        api.RoundListView.as_view(),
        name="api-training-rounds",
    ),
    path(
        "projects/<int:project_id>/training/jobs/",
        api.TrainingJobsView.as_view(),
        name="api-training-jobs",
    ),
    path(
        "projects/<int:project_id>/training/settings/",
        api.TrainingSettingsView.as_view(),
        name="api-training-settings",
    ),
]
