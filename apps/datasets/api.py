"""Examples API: list with filters and cursor pages, read one, set its gold label.

``GET /api/v1/projects/<project_id>/examples/`` (members), ``GET .../examples/<id>/``
(members) and ``PATCH .../examples/<id>/`` with ``{"gold_label": i}`` (members: annotators
set gold labels too). Replacing another person's gold label takes ``"overwrite": true`` and the
admin role; without it the answer is 409 and nothing changes.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.response import Response

from apps.api.pagination import cursor_pagination
from apps.datasets import selectors, services
from apps.datasets.example_filters import ExampleFilterForm
from apps.datasets.models import Example, Split
from apps.projects.permissions import ProjectScopedMixin


class ExampleSerializer(serializers.ModelSerializer):
    gold_label_name = serializers.SerializerMethodField()
    label_name = serializers.SerializerMethodField()
    gold_labeled_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Example
        fields = [
            "id",
            "external_id",
            "split",
            "text",
            "entities",
            "gold_label",
            "gold_label_name",
            "label",
            "label_name",
            "confidence",
            "label_source",
            "label_version",
            "votes",
            "gold_labeled_by",
            "gold_labeled_at",
        ]
        read_only_fields = fields

    def _name(self, index) -> str | None:
        if index is None:
            return None
        return services.label_name(self.context["project"], index)

    def get_gold_label_name(self, obj) -> str | None:
        return self._name(obj.gold_label)

    def get_label_name(self, obj) -> str | None:
        return self._name(obj.label)


class GoldLabelUpdateSerializer(serializers.Serializer):
    gold_label = serializers.IntegerField(
        allow_null=True, help_text="Index into the project's labels; null clears your label."
    )
    split = serializers.ChoiceField(
        choices=[Split.DEV, Split.TEST],
        required=False,
        help_text="Move a pool example into dev or test as it is labeled.",
    )
    overwrite = serializers.BooleanField(
        default=False, help_text="Replace another person's gold label (admins only)."
    )

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                f"Only gold_label, split and overwrite can be changed here, not: "
                f"{', '.join(sorted(unknown))}."
            )
        return attrs


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The example was changed by someone else."
    default_code = "conflict"


FILTER_PARAMETERS = [
    OpenApiParameter(
        "search", str, description="Full-text search (websearch syntax on PostgreSQL)."
    ),
    OpenApiParameter("split", str, enum=[choice.value for choice in Split]),
    OpenApiParameter("gold_label", str, description='A label index, or "none" for unlabeled.'),
    OpenApiParameter("label", str, description='A label index, or "none" for unlabeled.'),
    OpenApiParameter("min_confidence", OpenApiTypes.FLOAT),
    OpenApiParameter("max_confidence", OpenApiTypes.FLOAT),
    OpenApiParameter("label_source", str, enum=["gold", "rules", "model", "none"]),
]


class ExampleCursorPagination(cursor_pagination(ordering=("id",), page_size=50, max_page_size=500)):
    """Cursor pages by id; full-text searches on PostgreSQL fetch the page in id windows
    (``selectors.windowed_rows``) instead of walking the primary key."""

    def paginate_queryset(self, queryset, request, view=None):
        if view is None or not selectors.uses_text_search(queryset):
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = ("id",)
        self.cursor = self.decode_cursor(request)
        offset, reverse, position = self.cursor if self.cursor else (0, False, None)
        rows = selectors.windowed_rows(
            queryset,
            position=int(position) if position is not None else None,
            backwards=reverse,
            limit=offset + self.page_size + 1,
            id_bounds=selectors.id_bounds(project=view.project),
        )[offset:]
        self.page = rows[: self.page_size]
        following = rows[-1].id if len(rows) > len(self.page) else None
        if reverse:
            self.page.reverse()
            self.has_next = position is not None or offset > 0
            self.has_previous = following is not None
            self.next_position, self.previous_position = position, following
        else:
            self.has_next = following is not None
            self.has_previous = position is not None or offset > 0
            self.next_position, self.previous_position = following, position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page


class ExampleListApi(ProjectScopedMixin, generics.ListAPIView):
    """The project's examples in id order, filtered, one cursor page at a time."""

    serializer_class = ExampleSerializer
    pagination_class = ExampleCursorPagination

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "project": self.project}

    def get_queryset(self):
        form = ExampleFilterForm(self.request.query_params, project=self.project)
        if not form.is_valid():
            raise ValidationError(
                {field: [str(e) for e in errors] for field, errors in form.errors.items()}
            )
        return selectors.examples_for_project(
            project=self.project, **form.selector_kwargs()
        ).select_related("gold_labeled_by")

    @extend_schema(parameters=FILTER_PARAMETERS, responses=ExampleSerializer(many=True))
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExampleDetailApi(ProjectScopedMixin, generics.GenericAPIView):
    """One example; PATCH sets its gold label."""

    serializer_class = ExampleSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "project": self.project}

    def get_object(self):
        example = selectors.example_for_project(
            project=self.project, example_id=self.kwargs["example_id"]
        )
        if example is None:
            raise Http404("No such example in this project.")
        return example

    @extend_schema(responses=ExampleSerializer)
    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=GoldLabelUpdateSerializer,
        responses={
            200: ExampleSerializer,
            400: OpenApiResponse(description="Label out of range, bad split or unknown field."),
            403: OpenApiResponse(description="Overwriting someone else's label, not an admin."),
            409: OpenApiResponse(description="Someone else's gold label is already there."),
        },
    )
    def patch(self, request, *args, **kwargs):
        example = self.get_object()
        update = GoldLabelUpdateSerializer(data=request.data)
        update.is_valid(raise_exception=True)
        if self._is_overlap_answer():
            return self._record_answer(example, update.validated_data)
        try:
            services.set_gold_label(
                example=example,
                label=update.validated_data["gold_label"],
                user=request.user,
                split=update.validated_data.get("split"),
                overwrite=update.validated_data["overwrite"],
                project=self.project,
            )
        except services.GoldLabelConflict as conflict:
            raise Conflict(conflict.message) from conflict
        except DjangoValidationError as error:
            raise ValidationError({"gold_label": error.messages}) from error
        except DjangoPermissionDenied as error:
            raise PermissionDenied(str(error)) from error
        example = self.get_object()
        return Response(self.get_serializer(example).data)

    def _is_overlap_answer(self) -> bool:
        """With overlap k > 1 an annotator's label is one answer of k (admins set gold)."""
        from apps.agreement.services import overlap_for
        from apps.projects.selectors import role_in_project

        if overlap_for(project=self.project) <= 1:
            return False
        return role_in_project(user=self.request.user, project=self.project) != "admin"

    def _record_answer(self, example, data):
        from apps.agreement.services import record_label

        if data["gold_label"] is None:
            raise ValidationError(
                {"gold_label": ["With overlap labeling, take an answer back with u on the page."]}
            )
        try:
            record_label(
                project=self.project,
                example=example,
                user=self.request.user,
                label=data["gold_label"],
                split=data.get("split"),
            )
        except services.GoldLabelConflict as conflict:
            raise Conflict(conflict.message) from conflict
        except DjangoValidationError as error:
            raise ValidationError({"gold_label": error.messages}) from error
        except DjangoPermissionDenied as error:
            raise PermissionDenied(str(error)) from error
        return Response(self.get_serializer(self.get_object()).data)
