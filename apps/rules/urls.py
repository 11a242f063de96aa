from django.urls import path

from apps.rules import views

app_name = "rules"

urlpatterns = [
    path("", views.rule_list, name="list"),
    path("review/", views.review, name="review"),
    path("new/", views.new_rule, name="new"),
    path("preview/", views.preview, name="preview"),
    path("<int:rule_id>/", views.rule_detail, name="detail"),
    path("<int:rule_id>/preview/", views.rule_preview, name="rule_preview"),
    path("<int:rule_id>/decide/", views.decide, name="decide"),
    path("<int:rule_id>/delete/", views.delete, name="delete"),
]
