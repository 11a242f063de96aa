from rest_framework import serializers

from apps.alignment.models import PreferencePair


class PairSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id")
    pk = serializers.IntegerField(read_only=True)
    # plain text, not an enum: "status" is the jobs' enum name in the schema
    status = serializers.CharField(read_only=True, help_text="active or discarded")

    class Meta:
        model = PreferencePair
        fields = [
            "pk",
            "id",
            "prompt",
            "chosen",
            "rejected",
            "source",
            "split",
            "status",
            "stage1_weight",
            "weight",
            "margin",
            "uncertainty",
            "disagreement",
        ]


class ScoreRequestSerializer(serializers.Serializer):
    prompts = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False)
    )
    responses = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False)
    )


class ScoreResponseSerializer(serializers.Serializer):
    rewards = serializers.ListField(child=serializers.FloatField())
    model = serializers.IntegerField()
