from django.urls import path

from apps.jobs import api

urlpatterns = [
    path("jobs/", api.JobListView.as_view(), name="api-jobs"),
    path("jobs/kinds/", api.LaunchableKindsView.as_view(), name="api-job-kinds"),
    path("jobs/<int:pk>/", api.JobDetailView.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/cancel/", api.JobCancelView.as_view(), name="api-job-cancel"),
    path("projects/<int:project_id>/jobs/", api.ProjectJobsView.as_view(), name="api-project-jobs"),
]
