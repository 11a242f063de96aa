from django.urls import path

from apps.distill import views

app_name = "distill"
urlpatterns = [
    path("", views.page, name="page"),
    path("launch/", views.launch, name="launch"),
    path("cancel/", views.cancel, name="cancel"),
    path("students/<int:student_id>/download/", views.download, name="download"),
]
