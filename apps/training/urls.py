from django.urls import path

from apps.training import views

app_name = "training"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("launch/", views.launch, name="launch"),
    path("cancel/", views.cancel, name="cancel"),
    path("settings/", views.settings_view, name="settings"),
    path("settings/preview/", views.template_preview, name="template_preview"),
]
