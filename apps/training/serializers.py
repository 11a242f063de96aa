from rest_framework import serializers

from apps.training.models import LabelSet, Round
from apps.training.views import ACTIONS


class RoundSerializer(serializers.ModelSerializer):
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    status = serializers.CharField(
        read_only=True,
        help_text="running, review (suggestions wait for decisions), complete, failed or "
        "cancelled; only review and complete rounds are members of the ensemble.",
    )

    class Meta:
        model = Round
        fields = [
            "id",
            "number",
            "status",
            "job",
            "alpha",
            "weighted_error",
            "metrics",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class LabelSetSerializer(serializers.ModelSerializer):
    round = serializers.SlugRelatedField(slug_field="number", read_only=True)

    class Meta:
        model = LabelSet
        fields = ["id", "version", "round", "job", "n_labeled", "metrics", "created_at"]
        read_only_fields = fields


class TrainingLaunchSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=sorted(ACTIONS),
        help_text="warm (cache), round (run a boosting round), refresh (labels from rules), "
        "finalize (self-training → the exported labels).",
    )
    params = serializers.DictField(required=False, default=dict)


class TrainingSummarySerializer(serializers.Serializer):
    current_round = RoundSerializer(allow_null=True)
    rules = serializers.DictField(child=serializers.IntegerField())
    label_set = LabelSetSerializer(allow_null=True)
    active_job = serializers.IntegerField(allow_null=True)
    settings = serializers.DictField()
