"""``GET /api/v1/projects/<project_id>/export/?format=jsonl|json|csv|parquet|wrench`` (members).

Filters: ``split``, ``label`` and ``gold_label`` (name or index), ``min_confidence``,
``source`` (gold, rules, model, none). CSV cells beginning with ``= + - @``, a tab or a carriage
return get a leading ``'`` so that spreadsheets do not run them as formulas; programs that want
the exact values pass ``csv_raw=true``. The body is streamed (memory flat in the dataset's size);
see :mod:`apps.datasets.export` for the row shape.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from apps.datasets import export
from apps.projects.permissions import ProjectScopedMixin


class ExportApi(ProjectScopedMixin, APIView):
    """Stream the project's examples in one of the export formats."""

    # ``format`` is this endpoint's own parameter, not DRF's renderer override: errors are JSON.
    def perform_content_negotiation(self, request, force=False):
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="projects_export",
        summary="Export the dataset (streamed)",
        parameters=[
            OpenApiParameter(
                "format", str, enum=list(export.EXPORT_FORMATS), description="default jsonl"
            ),
            OpenApiParameter("split", str, enum=["pool", "dev", "test"]),
            OpenApiParameter("label", str, description="current label, by name or index"),
            OpenApiParameter("gold_label", str, description="gold label, by name or index"),
            OpenApiParameter("min_confidence", float, description="0 to 1"),
            OpenApiParameter("source", str, enum=["gold", "rules", "model", "none"]),
            OpenApiParameter(
                "csv_raw",
                bool,
                description="CSV only: keep cells as they are (by default a cell beginning "
                "with = + - @, a tab or a carriage return gets a leading ' so that "
                "spreadsheets do not run it as a formula)",
            ),
        ],
        responses={
            (200, content_type.split(";")[0]): OpenApiResponse(
                OpenApiTypes.BINARY, description=f"{fmt} export"
            )
            for fmt, content_type in export.CONTENT_TYPES.items()
        }
        | {400: OpenApiResponse(description="bad filter or format"), 404: None},
    )
    def get(self, request, project_id: int):
        fmt = (request.query_params.get("format") or "jsonl").strip().lower()
        try:
            filters = export.parse_filters(project=self.project, params=request.query_params)
            chunks = export.stream_export(
                project=self.project,
                fmt=fmt,
                filters=filters,
                csv_raw=export.parse_csv_raw(request.query_params),
            )
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise ValidationError(detail) from None
        response = StreamingHttpResponse(chunks, content_type=export.CONTENT_TYPES[fmt])
        name = export.export_filename(project=self.project, fmt=fmt, filters=filters)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
