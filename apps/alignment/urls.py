from django.urls import path

from apps.alignment import views

app_name = "alignment"
urlpatterns = [
    path("", views.weights, name="weights"),
    path("launch/", views.launch, name="launch"),
    path("import/", views.import_pairs, name="import"),
    path("export/", views.export, name="export"),
    path("rejudge/", views.rejudge, name="rejudge"),
    path("annotate/", views.annotate, name="annotate"),
    path("agreement/", views.agreement, name="agreement"),
]
