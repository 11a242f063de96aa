"""Preference API: pairs with their weights (paged, or streamed as JSONL/Parquet/TRL), the
top-weighted subset, the reward model download and scoring with it. Members read; non-members
get 404 (``ProjectScopedMixin``)."""

from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.alignment import selectors, services
from apps.alignment.serializers import (
    PairSerializer,
    ScoreRequestSerializer,
    ScoreResponseSerializer,
)
from apps.alignment.views import export_response
from apps.jobs.artifacts import open_artifact
from apps.projects.models import TaskType
from apps.projects.permissions import ProjectScopedMixin


class PairPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class _PreferenceScoped(ProjectScopedMixin):
    """Members read (a project of another task type has no pairs); scoring needs a preference
    project."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        writes = request.method not in ("GET", "HEAD", "OPTIONS")
        if writes and self.project.task_type != TaskType.PREFERENCE:
            raise Http404("Not a preference project.")


class PairListView(_PreferenceScoped, generics.ListAPIView):
    serializer_class = PairSerializer
    pagination_class = PairPagination

    @extend_schema(
        summary="List a preference project's pairs with their DORM weights",
        parameters=[
            OpenApiParameter("split", str, description="pool, dev or test"),
            OpenApiParameter("source", str),
            OpenApiParameter("order", str, description="id (default) or weight"),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.pairs_of(project=self.project)
        p = self.request.query_params
        if p.get("split"):
            qs = qs.filter(split=p["split"])
        if p.get("source"):
            qs = qs.filter(source=p["source"])
        return qs.order_by("weight", "id") if p.get("order") == "weight" else qs.order_by("id")


class TopWeightedView(_PreferenceScoped, generics.ListAPIView):
    serializer_class = PairSerializer
    pagination_class = PairPagination

    @extend_schema(
        summary="The top-weighted fraction of the active pool pairs (highest weight first)",
        parameters=[OpenApiParameter("fraction", float, description="0 < fraction ≤ 1 (0.1)")],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        try:
            fraction = float(self.request.query_params.get("fraction", "0.1"))
        except ValueError:
            fraction = -1.0
        if not 0 < fraction <= 1:
            from rest_framework.exceptions import ValidationError as DRFValidationError

            raise DRFValidationError({"fraction": "must be a number above 0 and at most 1."})
        return selectors.top_weighted(project=self.project, fraction=fraction)


class PairExportView(_PreferenceScoped, APIView):
    @extend_schema(
        summary="Stream every pair with its weight",
        parameters=[OpenApiParameter("layout", str, description="jsonl (default), parquet or trl")],
        responses={(200, "application/x-ndjson"): bytes},
    )
    def get(self, request, project_id: int):
        # ``layout``, not ``format``: DRF reserves ``?format=`` for its content negotiation
        return export_response(
            project=self.project, fmt=request.query_params.get("layout", "jsonl")
        )


class RewardModelView(_PreferenceScoped, APIView):
    @extend_schema(
        summary="Download the latest reward model (torch.save of config + state dict)",
        responses={(200, "application/octet-stream"): bytes},
    )
    def get(self, request, project_id: int):
        artifact = selectors.latest_reward_model(project=self.project)
        if artifact is None:  # 409, not 404: the project exists and the caller may see it
            return Response(
                {"detail": "No reward model has been trained yet."},
                status=status.HTTP_409_CONFLICT,
            )
        return FileResponse(
            open_artifact(artifact), as_attachment=True, filename=f"reward-model-{artifact.pk}.pt"
        )


class ScoreView(_PreferenceScoped, APIView):
    @extend_schema(
        summary="Rewards for (prompt, response) pairs from the latest reward model",
        description=f"At most {services.MAX_SCORE_ITEMS} pairs, each text at most "
        f"{services.MAX_SCORE_CHARS:,} characters.",
        request=ScoreRequestSerializer,
        responses=ScoreResponseSerializer,
    )
    def post(self, request, project_id: int):
        artifact = selectors.latest_reward_model(project=self.project)
        if artifact is None:
            return Response(
                {"detail": "No reward model has been trained yet."}, status=status.HTTP_409_CONFLICT
            )
        data = request.data if isinstance(request.data, dict) else {}
        try:
            rewards = services.score(
                artifact=artifact,
                prompts=data.get("prompts"),
                responses=data.get("responses"),
            )
        except ValidationError as exc:
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"rewards": rewards, "model": artifact.pk})
