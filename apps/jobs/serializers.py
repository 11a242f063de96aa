"""Job serializers: they translate, nothing more (validation of params is the kind's own)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.kinds import launchable_kinds
from apps.jobs.models import Job, JobStatus


@extend_schema_field(
    {"type": "string", "enum": JobStatus.values, "description": "The job's state."},
)
class JobStatusField(serializers.ChoiceField):
    """A job status; documented inline (other apps have ``status`` enums of their own)."""

    def __init__(self, **kwargs):
        super().__init__(choices=JobStatus.choices, **kwargs)


class JobSerializer(serializers.ModelSerializer):
    status = JobStatusField(read_only=True)
    launched_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    is_finished = serializers.BooleanField(read_only=True)
    kind_label = serializers.CharField(read_only=True, help_text="The kind as people read it.")

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "kind",
            "kind_label",
            "params",
            "status",
            "is_finished",
            "queue",
            "progress",
            "message",
            "error",
            "result",
            "cancel_requested",
            "attempts",
            "worker",
            "launched_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "log"]
        read_only_fields = fields


class JobLaunchSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="A launchable job kind, e.g. 'selftest'.")
    params = serializers.JSONField(required=False, default=dict)

    def validate_kind(self, value):
        if value not in launchable_kinds():
            known = ", ".join(sorted(launchable_kinds())) or "none"
            raise serializers.ValidationError(
                f"{value!r} cannot be launched here; launchable kinds: {known}."
            )
        return value

    def validate_params(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class JobFilterSerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1)
    status = JobStatusField(required=False)
    kind = serializers.CharField(required=False, max_length=64)


class LaunchableKindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
