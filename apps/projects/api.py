"""Projects API: the caller's projects, one project, its members."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from apps.api.pagination import CursorPagination
from apps.projects.permissions import IsStaffOrReadOnly, ProjectScopedMixin
from apps.projects.selectors import project_members, projects_with_stats_for_user
from apps.projects.serializers import (
    MemberSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)
from apps.projects.services import create_project, update_project

ARCHIVED_CHOICES = {"false": False, "0": False, "true": True, "1": True}


@extend_schema_view(
    get=extend_schema(
        summary="List your projects, with your role in each",
        parameters=[
            OpenApiParameter(
                "archived",
                bool,
                description="false (the default): active projects only; true: archived "
                "projects only.",
            )
        ],
    )
)
class ProjectListApi(generics.ListAPIView):
    """The projects you are a member of (archived ones only when asked for with
    ``?archived=true``); staff members can create projects."""

    serializer_class = ProjectSerializer
    pagination_class = CursorPagination
    permission_classes = [IsAuthenticated, IsStaffOrReadOnly]

    def get_queryset(self):
        raw = self.request.query_params.get("archived", "false").strip().lower()
        if raw not in ARCHIVED_CHOICES:
            raise ValidationError({"archived": "Use true or false."})
        return projects_with_stats_for_user(user=self.request.user).filter(
            archived_at__isnull=not ARCHIVED_CHOICES[raw]
        )

    @extend_schema(
        summary="Create a project (staff); you become its admin",
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer},
    )
    def post(self, request):
        payload = ProjectCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        project = create_project(user=request.user, **payload.validated_data)
        project.user_role = "admin"
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(ProjectScopedMixin, generics.GenericAPIView):
    """One project. Members read it; admins change it (PATCH)."""

    admin_for_writes = True
    serializer_class = ProjectSerializer

    @extend_schema(summary="Retrieve a project")
    def get(self, request, project_id: int):
        return Response(ProjectSerializer(self.project).data)

    @extend_schema(
        summary="Change a project's name, description, task type or labels (admins)",
        request=ProjectUpdateSerializer,
        responses={200: ProjectSerializer},
    )
    def patch(self, request, project_id: int):
        payload = ProjectUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        project = update_project(project=self.project, **payload.validated_data)
        return Response(ProjectSerializer(project).data)


@extend_schema_view(get=extend_schema(summary="List a project's members and their roles"))
class ProjectMembersApi(ProjectScopedMixin, generics.ListAPIView):
    """The project's members and their roles."""

    serializer_class = MemberSerializer
    pagination_class = CursorPagination

    def get_queryset(self):
        # The cursor orders by id; project_members' admin-first order is for pages.
        return project_members(project=self.project).order_by("id")
