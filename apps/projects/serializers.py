from rest_framework import serializers

from apps.projects.models import Membership, Project, Role, TaskType


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in the project.")

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "task_type",
            "labels",
            "created_at",
            "archived_at",
            "role",
        ]
        read_only_fields = fields

    def get_role(self, obj) -> str | None:
        # Annotated by projects_with_stats_for_user, set by get_project_for_user.
        return getattr(obj, "role", None) or getattr(obj, "user_role", None)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=Project._meta.get_field("name").max_length)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.ChoiceField(
        choices=TaskType.choices, default=TaskType.TEXT_CLASSIFICATION
    )
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        help_text="Label names in order (at least two; none for preference projects).",
    )


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=Project._meta.get_field("name").max_length, required=False
    )
    description = serializers.CharField(required=False, allow_blank=True)
    task_type = serializers.ChoiceField(
        choices=TaskType.choices,
        required=False,
        help_text="Fixed once the project has examples.",
    )
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text="Labels in use keep their names and positions; add new ones at the end.",
    )


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "role", "created_at"]
        read_only_fields = fields
