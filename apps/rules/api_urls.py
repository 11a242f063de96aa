from django.urls import path

from apps.rules import api

urlpatterns = [
    path("projects/<int:project_id>/rules/", api.ProjectRulesApi.as_view(), name="api-rules"),
    path(
        "projects/<int:project_id>/rules/next/",
        api.NextSuggestionApi.as_view(),
        name="api-rules-next",
    ),
    path("projects/<int:project_id>/rules/undo/", api.UndoApi.as_view(), name="api-rules-undo"),
    path(
        "projects/<int:project_id>/rules/preview/",
        api.PreviewApi.as_view(),
        name="api-rules-preview",
    ),
    path(
        "projects/<int:project_id>/rules/<int:rule_id>/",
        api.RuleDetailApi.as_view(),
        name="api-rule",
    ),
    path(
        "projects/<int:project_id>/rules/<int:rule_id>/decisions/",
        api.RuleDecisionsApi.as_view(),
        name="api-rule-decisions",
    ),
]
