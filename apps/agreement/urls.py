"""Pages under /projects/<project_id>/agreement/ (project admins)."""

from django.urls import path

from apps.agreement import views

app_name = "agreement"
urlpatterns = [
    path("", views.agreement, name="agreement"),
    path("overlap/", views.overlap, name="overlap"),
    path("conflicts/", views.conflicts, name="conflicts"),
]
