"""Rules API: list, write, preview and review a project's rules.

Members (admins and annotators) read rules, write keyword/regex rules, preview rules and review
suggestions; only admins delete rules. A decision carries the rule ``version`` the caller saw:
when someone else decided first the answer is 409 with a message naming who and when.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.pagination import cursor_pagination
from apps.projects.permissions import ProjectScopedMixin
from apps.rules import selectors, services
from apps.rules.serializers import (
    ConflictErrorSerializer,
    DecisionCreateSerializer,
    DecisionResultSerializer,
    DecisionSerializer,
    PreviewRequestSerializer,
    PreviewSerializer,
    RuleCreateSerializer,
    RuleDetailSerializer,
    RuleFilterSerializer,
    RuleSerializer,
)

CONFLICT = OpenApiResponse(
    ConflictErrorSerializer, description="Someone else decided first; nothing changed."
)


def conflict_response(exc: services.RuleConflict) -> Response:
    details = {"rule": RuleSerializer(exc.rule).data} if exc.rule is not None else None
    return Response(
        {"error": {"code": "conflict", "message": exc.message, "details": details}},
        status=status.HTTP_409_CONFLICT,
    )


def bad_request(exc: services.RuleInputError) -> serializers.ValidationError:
    return serializers.ValidationError({"non_field_errors": [exc.message]})


def preview_data(preview: services.Preview) -> dict:
    return {
        "description": preview.description,
        "error": preview.error,
        "pool_total": preview.pool_total,
        "pool_matches": preview.pool_matches,
        "coverage": preview.coverage,
        "dev_matches": preview.dev_matches,
        "dev_labeled": preview.dev_labeled,
        "dev_correct": preview.dev_correct,
        "dev_precision": preview.dev_precision,
        "test_matches": preview.test_matches,
        "samples": [{"example_id": s.example_id, "html": str(s.html)} for s in preview.samples],
        "elapsed_ms": preview.elapsed_ms,
        "estimated": preview.estimated,
        "stopped_after": preview.stopped_after,
        "notice": preview.stopped_text,
    }


class ProjectRulesApi(ProjectScopedMixin, generics.ListAPIView):
    """A project's rules, best-scored first; members write keyword and regex rules."""

    serializer_class = RuleSerializer
    pagination_class = cursor_pagination(ordering=("-id",))

    def get_queryset(self):
        filters = RuleFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.rules_for_project(project=self.project, **filters.validated_data)

    @extend_schema(
        summary="List a project's rules",
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=["suggested", "accepted", "rejected"]
            ),
            OpenApiParameter("origin", OpenApiTypes.STR, enum=["proposed", "manual", "seed"]),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, enum=["keyword", "regex", "prompt", "similarity"]
            ),
            OpenApiParameter("round", OpenApiTypes.INT, description="Rules of this round."),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Write a keyword or regex rule (accepted at once)",
        description="Bad regexes (RE2 syntax, backreferences, lookaround, over 500 characters) "
        "and duplicates of an existing rule are a 400 with the reason.",
        request=RuleCreateSerializer,
        responses={201: RuleSerializer},
    )
    def post(self, request, project_id: int):
        payload = RuleCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            rule = services.create_manual_rule(
                project=self.project, user=request.user, **payload.validated_data
            )
        except services.RuleInputError as exc:
            raise bad_request(exc) from exc
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailApi(ProjectScopedMixin, APIView):
    """One rule with its decision history; admins delete it."""

    admin_for_writes = True

    @extend_schema(summary="Retrieve a rule with its decisions", responses=RuleDetailSerializer)
    def get(self, request, project_id: int, rule_id: int):
        rule = selectors.get_rule(project=self.project, rule_id=rule_id, with_decisions=True)
        return Response(RuleDetailSerializer(rule).data)

    @extend_schema(summary="Delete a rule (admins)", responses={204: None})
    def delete(self, request, project_id: int, rule_id: int):
        rule = selectors.get_rule(project=self.project, rule_id=rule_id)
        services.delete_rule(rule=rule)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleDecisionsApi(ProjectScopedMixin, APIView):
    """Review a rule: accept, reject, skip or edit it."""

    @extend_schema(
        summary="Decide on a rule",
        description="`expected_version` is the rule version you saw. 409 when the rule moved "
        "on (someone else decided first): the message says who, what and when, and "
        "`details.rule` is the rule as it is now.",
        request=DecisionCreateSerializer,
        responses={200: DecisionResultSerializer, 409: CONFLICT},
    )
    def post(self, request, project_id: int, rule_id: int):
        payload = DecisionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        rule = selectors.get_rule(project=self.project, rule_id=rule_id)
        try:
            rule = services.decide(
                rule=rule,
                user=request.user,
                action=data["action"],
                expected_version=data["expected_version"],
                edits=data.get("edits") or None,
            )
        except services.RuleConflict as exc:
            return conflict_response(exc)
        except services.RuleInputError as exc:
            raise bad_request(exc) from exc
        return Response(
            {
                "rule": RuleSerializer(rule).data,
                "decision": DecisionSerializer(rule.last_decision).data,
            }
        )


class NextSuggestionApi(ProjectScopedMixin, APIView):
    """Take the next suggestion to review (leased to you for a couple of minutes)."""

    @extend_schema(
        summary="Claim the next suggestion to review",
        description="No two callers get the same suggestion at once. 204 when none is left.",
        request=None,
        parameters=[OpenApiParameter("round", OpenApiTypes.INT, description="Default: latest.")],
        responses={200: RuleSerializer, 204: None},
    )
    def post(self, request, project_id: int):
        raw = request.query_params.get("round", "")
        round_number = int(raw) if raw.isdigit() else None
        rule = services.next_suggestion_for(
            project=self.project, user=request.user, round_number=round_number
        )
        if rule is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(RuleSerializer(rule).data)


class UndoApi(ProjectScopedMixin, APIView):
    """Undo your latest decision in the project."""

    @extend_schema(
        summary="Undo your latest decision",
        request=None,
        responses={200: RuleSerializer, 204: None, 409: CONFLICT},
    )
    def post(self, request, project_id: int):
        try:
            rule = services.undo_last_decision(project=self.project, user=request.user)
        except services.RuleConflict as exc:
            return conflict_response(exc)
        except services.RuleInputError as exc:
            raise bad_request(exc) from exc
        if rule is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(RuleSerializer(rule).data)


class PreviewApi(ProjectScopedMixin, APIView):
    """Match counts, dev precision and sample matches of a rule definition (nothing stored)."""

    @extend_schema(
        summary="Preview a rule",
        request=PreviewRequestSerializer,
        responses={200: PreviewSerializer},
    )
    def post(self, request, project_id: int):
        payload = PreviewRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        preview = services.preview_rule(
            project=self.project, definition=payload.validated_data["definition"]
        )
        return Response(PreviewSerializer(preview_data(preview)).data)
