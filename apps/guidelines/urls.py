"""Pages under /projects/<project_id>/guidelines/."""

from django.urls import path

from apps.guidelines import views

app_name = "guidelines"
urlpatterns = [
    path("", views.edit, name="edit"),
]
