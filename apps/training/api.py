"""Training API: rounds with their metrics, a summary, the PRBoost settings, and launching the
training jobs (project admins). Jobs are watched and cancelled through the jobs API."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs.serializers import JobSerializer
from apps.projects.permissions import ProjectScopedMixin
from apps.training import selectors, services
from apps.training.prboost_settings import prboost_settings
from apps.training.serializers import (
    LabelSetSerializer,
    RoundSerializer,
    TrainingLaunchSerializer,
    TrainingSummarySerializer,
)
from apps.training.views import ACTIONS


@extend_schema_view(
    get=extend_schema(
        summary="List a project's boosting rounds with their metrics",
        description="Every round attempt, oldest first: live rounds (`review`, `complete`) form "
        "the ensemble; `failed` and `cancelled` attempts changed nothing.",
    )
)
class RoundListView(ProjectScopedMixin, generics.ListAPIView):
    serializer_class = RoundSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.rounds_of(project=self.project)


class TrainingSummaryView(ProjectScopedMixin, APIView):
    @extend_schema(
        summary="PRBoost state of a project",
        description="The current round, rule counts, the label set the export serves, the "
        "running training job (if any) and the PRBoost settings.",
        responses=TrainingSummarySerializer,
    )
    def get(self, request, project_id: int):
        project = self.project
        current = services.latest_live_round(project=project)
        label_set = services.latest_label_set(project=project)
        active = services.active_training_job(project=project)
        return Response(
            {
                "current_round": RoundSerializer(current).data if current else None,
                "rules": services.rule_counts(project=project),
                "label_set": LabelSetSerializer(label_set).data if label_set else None,
                "active_job": active.pk if active else None,
                "settings": prboost_settings(project),
            }
        )


class TrainingSettingsView(ProjectScopedMixin, APIView):
    admin_for_writes = True

    @extend_schema(summary="PRBoost settings of a project", responses=dict)
    def get(self, request, project_id: int):
        return Response(prboost_settings(self.project))

    @extend_schema(
        summary="Change PRBoost settings (project admins)",
        description="Partial: only the given settings change; the result is validated as a "
        "whole (400 with one message per bad setting, nothing changed).",
        request=dict,
        responses=dict,
    )
    def patch(self, request, project_id: int):
        data = request.data if isinstance(request.data, dict) else {}
        return Response(
            services.update_prboost_settings(project=self.project, user=request.user, data=data)
        )


class TrainingJobsView(ProjectScopedMixin, APIView):
    admin_for_writes = True

    @extend_schema(summary="A project's recent training jobs", responses=JobSerializer(many=True))
    def get(self, request, project_id: int):
        return Response(
            JobSerializer(selectors.training_jobs(project=self.project), many=True).data
        )

    @extend_schema(
        summary="Launch a training job (project admins)",
        description="One training job per project at a time (400 otherwise). Watch and cancel "
        "it through `/api/v1/jobs/<id>/`.",
        request=TrainingLaunchSerializer,
        responses={201: JobSerializer},
    )
    def post(self, request, project_id: int):
        launch = TrainingLaunchSerializer(data=request.data)
        launch.is_valid(raise_exception=True)
        job = services.launch_training_job(
            project=self.project,
            user=request.user,
            kind=ACTIONS[launch.validated_data["action"]],
            params=launch.validated_data["params"],
        )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
