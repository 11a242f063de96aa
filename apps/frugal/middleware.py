"""Project-wide middleware."""

from urllib.parse import urlparse

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
