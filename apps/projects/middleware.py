"""Archived projects are read-only: writes to their pages and API are refused with 403."""

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse

from apps.projects.models import Project
from apps.projects.selectors import role_in_project

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
# What an archived project still allows: coming back, or going for good.
ALLOWED_VIEWS = {"projects:unarchive", "projects:delete"}
NOTICE_HEADER = "X-Frugal-Notice"  # a refusal's message for htmx requests (frugal.js shows it)
MESSAGE = "This project is archived and read-only. An admin can unarchive it in its settings."


class ArchivedReadOnlyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method in SAFE_METHODS or "project_id" not in view_kwargs:
            return None
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name in ALLOWED_VIEWS:
            return None
        project = Project.objects.filter(
            pk=view_kwargs["project_id"], archived_at__isnull=False
        ).first()
        if project is None:
            return None
        user = _api_token_user(request) or getattr(request, "user", None)
        if user is None or role_in_project(user=user, project=project) is None:
            return None  # the view answers outsiders as it always does (404, login)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": MESSAGE}, status=403)
        if request.headers.get("HX-Request"):
            # htmx swaps no error response: frugal.js shows this header's text instead
            response = HttpResponse(MESSAGE, status=403, content_type="text/plain")
            response[NOTICE_HEADER] = MESSAGE
            return response
        raise PermissionDenied(MESSAGE)


def _api_token_user(request):
    """The owner of a valid API token on the request (DRF authenticates only in the view, after
    this middleware). Read-only lookup: failures are counted by the real authentication."""
    from apps.accounts.authentication import token_digest
    from apps.accounts.models import ApiToken

    header = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(header) != 2 or header[0].lower() not in ("bearer", "token"):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(header[1]), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    return token.user if token else None
