"""Project-wide middleware."""

import time
from urllib.parse import unquote_to_bytes, urlparse

from django.conf import settings
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


class HtmxLoginRedirectMiddleware:
    """Send htmx requests whose session expired to the login page as a whole page
    (django-htmx's client redirect; ``request.htmx`` comes from its HtmxMiddleware, above).

    Without this, htmx follows the login redirect and swaps the login form into whatever
    fragment was being refreshed (a progress bar, a table row).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.htmx and response.status_code == 302:
            login_path = urlparse(resolve_url(settings.LOGIN_URL)).path
            if urlparse(response.get("Location", "")).path == login_path:
                return HttpResponseClientRedirect(response["Location"])
        return response


NUL_MESSAGE = "The request contains a NUL character (%00), which Frugal never accepts."


def bad_request(request, message: str):
    """A 400 that says why: JSON in the API's error shape under /api/, plain text elsewhere."""
    from django.http import HttpResponseBadRequest, JsonResponse

    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "invalid", "message": message, "details": None}}, status=400
        )
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class RejectNulMiddleware:
    """Answer 400 to a request whose path, query string or form fields hold a NUL character.

    No page or endpoint has a use for one, and PostgreSQL refuses it in text (a search for
    ``?q=%00`` or a form field with a NUL would otherwise end in a 500). Uploaded files are not
    looked at (binary formats hold NULs); JSON bodies are checked by the API's parser.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = unquote_to_bytes(request.META.get("QUERY_STRING", ""))
        if "\x00" in request.path or b"\x00" in query:
            return bad_request(request, NUL_MESSAGE)
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            from django.http.multipartparser import MultiPartParserError

            try:
                fields = request.POST
            except MultiPartParserError:
                return bad_request(request, "The form data could not be read.")
            if any("\x00" in value for values in fields.lists() for value in values[1]):
                return bad_request(request, NUL_MESSAGE)
        return self.get_response(request)


class ServerTimingMiddleware:
    """``Server-Timing: app;dur=<ms>, cpu;dur=<ms>`` on every response: the request's wall time
    in this process and its thread's CPU time (gunicorn's gthread workers serve requests on
    threads, so process CPU time would count the neighbours' too). Time spent waiting for a
    free worker thread before this runs is not in it: the client's latency minus ``app`` is
    that queueing plus the network. Enabled by ``FRUGAL_SERVER_TIMING`` (settings)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started, cpu_started = time.perf_counter(), time.thread_time()
        response = self.get_response(request)
        wall_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.thread_time() - cpu_started) * 1000
        response["Server-Timing"] = f"app;dur={wall_ms:.2f}, cpu;dur={cpu_ms:.2f}"
        return response
