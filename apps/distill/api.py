"""Predict API: the serving student labels a batch of texts or relation examples (members)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.distill import services
from apps.projects.permissions import ProjectScopedMixin

MAX_ITEMS = 256
MAX_TEXT_CHARS = 5000


class SpanSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_TEXT_CHARS)
    start = serializers.IntegerField(min_value=0)
    end = serializers.IntegerField(min_value=0)


class RelationExampleSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_TEXT_CHARS)
    entities = SpanSerializer(many=True)

    def validate_entities(self, value):
        if len(value) != 2:
            raise serializers.ValidationError("give exactly two entity mentions (head, tail).")
        return value


class PredictSerializer(serializers.Serializer):
    texts = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TEXT_CHARS), required=False
    )
    examples = RelationExampleSerializer(many=True, required=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - {"texts", "examples"}
        if unknown:
            raise serializers.ValidationError(
                f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}; send "
                "'texts' (a list of strings) or 'examples' (text + two entities)."
            )
        given = [key for key in ("texts", "examples") if key in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("Send exactly one of 'texts' or 'examples'.")
        items = attrs[given[0]]
        if not items:
            raise serializers.ValidationError("The batch is empty: send at least one item.")
        if len(items) > MAX_ITEMS:
            raise serializers.ValidationError(
                f"The batch has {len(items)} items; at most {MAX_ITEMS} per request."
            )
        return attrs


class PredictView(ProjectScopedMixin, APIView):
    @extend_schema(
        summary="Predict labels with the project's serving student",
        description=f"A batch of at most {MAX_ITEMS} `texts`, or of relation `examples` "
        "(`text` + two `entities` with `text`, `start`, `end`), labeled by the student the last "
        "distillation chose. 409 when the project has no serving student yet.",
        request=PredictSerializer,
        responses=dict,
    )
    def post(self, request, project_id: int):
        serializer = PredictSerializer(data=request.data if isinstance(request.data, dict) else {})
        if not isinstance(request.data, dict):
            return Response(
                {"detail": "Send a JSON object with 'texts' or 'examples'."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "texts" in data:
            texts = list(data["texts"])
        else:
            texts = [services.model_text(e["text"], e["entities"]) for e in data["examples"]]
        try:
            result = services.predict(project=self.project, texts=texts)
        except services.DistillError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(result)
