from django.urls import path

from apps.alignment import api

urlpatterns = [
    path("projects/<int:project_id>/pairs/", api.PairListView.as_view(), name="api-pairs"),
    path(
        "projects/<int:project_id>/pairs/top/", api.TopWeightedView.as_view(), name="api-pairs-top"
    ),
    path(
        "projects/<int:project_id>/pairs/export/",
        api.PairExportView.as_view(),
        name="api-pairs-export",
    ),
    path(
        "projects/<int:project_id>/reward-model/",
        api.RewardModelView.as_view(),
        name="api-reward-model",
    ),
    path(
        "projects/<int:project_id>/reward-model/score/",
        api.ScoreView.as_view(),
        name="api-reward-score",
    ),
]
