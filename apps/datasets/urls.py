"""Pages under /projects/<project_id>/data/: the examples browser and gold labeling."""

from django.urls import path

from apps.datasets import label_views, views

app_name = "datasets"
urlpatterns = [
    path("examples/", views.examples, name="examples"),
    path("examples/count/", views.examples_count, name="examples_count"),
    path("examples/<int:example_id>/", views.example_detail, name="example_detail"),
    path("label/", label_views.label, name="label"),
    path("disagreements/", views.disagreements, name="disagreements"),
]
