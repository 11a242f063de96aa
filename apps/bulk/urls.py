"""Pages under /projects/<project_id>/bulk/ (project admins)."""

from django.urls import path

from apps.bulk import views

app_name = "bulk"
urlpatterns = [
    path("", views.bulk, name="bulk"),
    path("history/", views.history, name="history"),
    path("<int:action_id>/undo/", views.undo, name="undo"),
]
