"""The OpenAPI schema and its docs pages, behind login unless ``FRUGAL_API_DOCS_PUBLIC``.

Programs fetch the schema with a token (401 without one); people opening the docs pages are
sent to the login page. Swagger UI is served in two requests (page, then its script) so that
it runs under the Content-Security-Policy without inline script; Redoc's page carries the
request's nonce (``frontend/templates/drf_spectacular/redoc.html``).
"""

from csp.decorators import csp_replace
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.utils.decorators import method_decorator
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.permissions import AllowAny, IsAuthenticated


class _DocsAccess:
    def get_permissions(self):
        public = getattr(settings, "FRUGAL_API_DOCS_PUBLIC", False)
        return [AllowAny() if public else IsAuthenticated()]


class SchemaView(_DocsAccess, SpectacularAPIView):
    pass


class _LoginFirst(_DocsAccess):
    """Pages for people: an anonymous visitor is sent to the login page, not given a 401."""

    def dispatch(self, request, *args, **kwargs):
        public = getattr(settings, "FRUGAL_API_DOCS_PUBLIC", False)
        if not public and not request.user.is_authenticated:
            # Session users only: the docs page is not for tokens.
            return redirect_to_login(request.get_full_path())
        return super().dispatch(request, *args, **kwargs)


# Swagger UI and Redoc style themselves with <style> elements they create at run time (a
# nonce would be ignored beside 'unsafe-inline', so style-src is replaced, not extended).
# Scripts stay 'self' + nonce. Redoc's "powered by" logo from its CDN stays blocked.
_DOCS_STYLES = csp_replace({"style-src": ["'self'", "'unsafe-inline'"]})


@method_decorator(_DOCS_STYLES, name="dispatch")
class SwaggerView(_LoginFirst, SpectacularSwaggerSplitView):
    pass


@method_decorator(_DOCS_STYLES, name="dispatch")
class RedocView(_LoginFirst, SpectacularRedocView):
    pass
