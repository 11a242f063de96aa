"""Jobs API: list, retrieve, launch (project admins), cancel (project admins)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs.kinds import launchable_kinds
from apps.jobs.models import JobStatus
from apps.jobs.selectors import can_manage_job, get_job_for_user, jobs_for_user
from apps.jobs.serializers import (
    JobDetailSerializer,
    JobFilterSerializer,
    JobLaunchSerializer,
    JobSerializer,
    LaunchableKindSerializer,
)
from apps.jobs.services import launch_job, request_cancel
from apps.projects.permissions import IsProjectAdmin, ProjectScopedMixin


class JobCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class IsJobAdmin(IsProjectAdmin):
    """Project admins manage a project's jobs; a project-less job belongs to its launcher."""

    def has_object_permission(self, request, view, obj):
        if obj.project_id is None:
            return can_manage_job(user=request.user, job=obj)
        return super().has_object_permission(request, view, obj)


def _filtered(queryset, query_params):
    filters = JobFilterSerializer(data=query_params)
    filters.is_valid(raise_exception=True)
    data = filters.validated_data
    if "project" in data:
        queryset = queryset.filter(project_id=data["project"])
    if "status" in data:
        queryset = queryset.filter(status=data["status"])
    if data.get("kind"):
        queryset = queryset.filter(kind=data["kind"])
    return queryset


FILTER_PARAMETERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=JobStatus.values),
    OpenApiParameter("kind", OpenApiTypes.STR, description="Only jobs of this kind."),
]


@extend_schema_view(
    get=extend_schema(
        summary="List jobs",
        description="Jobs of every project you are a member of, newest first.",
        parameters=[
            OpenApiParameter("project", OpenApiTypes.INT, description="Only this project's."),
            *FILTER_PARAMETERS,
        ],
    )
)
class JobListView(generics.ListAPIView):
    serializer_class = JobSerializer
    pagination_class = JobCursorPagination

    def get_queryset(self):
        return _filtered(jobs_for_user(user=self.request.user), self.request.query_params)


@extend_schema_view(get=extend_schema(summary="Retrieve a job, with its log"))
class JobDetailView(generics.RetrieveAPIView):
    serializer_class = JobDetailSerializer

    def get_object(self):
        return get_job_for_user(user=self.request.user, job_id=self.kwargs["pk"])


class JobCancelView(APIView):
    permission_classes = [*APIView.permission_classes, IsJobAdmin]

    @extend_schema(
        summary="Cancel a job (project admins)",
        description=(
            "A queued job is cancelled at once; a running job stops at its next progress "
            "report (its status becomes `cancelled` then). Cancelling a finished job is a 400."
        ),
        request=None,
        responses={200: JobDetailSerializer},
    )
    def post(self, request, pk: int):
        job = get_job_for_user(user=request.user, job_id=pk)
        self.check_object_permissions(request, job)
        try:
            job = request_cancel(job=job, user=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"job": exc.messages}) from exc
        return Response(JobDetailSerializer(job).data)


@extend_schema_view(
    get=extend_schema(
        summary="List a project's jobs", parameters=FILTER_PARAMETERS, responses=JobSerializer
    ),
    post=extend_schema(
        summary="Launch a job (project admins)",
        description="`kind` must be a launchable kind (see `GET /api/v1/jobs/kinds/`); "
        "`params` are validated by that kind.",
        request=JobLaunchSerializer,
        responses={201: JobSerializer},
    ),
)
class ProjectJobsView(ProjectScopedMixin, generics.ListCreateAPIView):
    admin_for_writes = True
    serializer_class = JobSerializer
    pagination_class = JobCursorPagination

    def get_queryset(self):
        jobs = jobs_for_user(user=self.request.user).filter(project=self.project)
        return _filtered(jobs, self.request.query_params)

    def create(self, request, *args, **kwargs):
        launch = JobLaunchSerializer(data=request.data)
        launch.is_valid(raise_exception=True)
        kind = launch.validated_data["kind"]
        try:
            params = launchable_kinds()[kind].clean_params(launch.validated_data["params"])
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise serializers.ValidationError({"params": detail}) from exc
        job = launch_job(kind=kind, project=self.project, user=request.user, params=params)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class LaunchableKindsView(APIView):
    @extend_schema(
        summary="Job kinds that can be launched by name",
        responses=LaunchableKindSerializer(many=True),
    )
    def get(self, request):
        kinds = sorted(launchable_kinds().values(), key=lambda k: k.kind)
        data = [{"kind": k.kind, "label": k.label, "description": k.description} for k in kinds]
        return Response(LaunchableKindSerializer(data, many=True).data)
