from django.urls import path

from apps.lorc import views

app_name = "lorc"
urlpatterns = [
    path("", views.page, name="page"),
    path("launch/", views.launch, name="launch"),
    path("proposer/", views.proposer, name="proposer"),
]
