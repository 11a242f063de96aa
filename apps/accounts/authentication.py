"""DRF authentication by personal API token: ``Authorization: Bearer <token>``.

A wrong token is a failed login attempt of the caller's address (django-axes, see
:mod:`apps.accounts.throttle`): past the limit, every token from that address gets 429 until
the cool-off has passed.
"""

import hashlib

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.accounts.models import ApiToken
from apps.accounts.throttle import API_TOKEN_CREDENTIALS, lockout_message, retry_after_seconds


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class LockedOut(exceptions.Throttled):
    """429 with the lockout message (DRF adds ``Retry-After`` from ``wait``)."""

    def __init__(self, wait: int):
        exceptions.APIException.__init__(self, lockout_message(wait), "throttled")
        self.wait = wait


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        secret = header[1].decode(errors="replace")
        http_request = getattr(request, "_request", request)
        throttled = settings.AXES_ENABLED
        if throttled and not AxesProxyHandler.is_allowed(http_request, API_TOKEN_CREDENTIALS):
            wait = retry_after_seconds(http_request, API_TOKEN_CREDENTIALS)
            raise LockedOut(wait)
        token = (
            ApiToken.objects.select_related("user")
            .filter(digest=token_digest(secret), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            if throttled:
                user_login_failed.send(
                    sender=__name__, credentials=dict(API_TOKEN_CREDENTIALS), request=http_request
                )
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        # Writing on every request would make reads write; once a minute is enough to show use.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return "Bearer"
