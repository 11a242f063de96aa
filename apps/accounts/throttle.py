"""Login throttling with django-axes: by account and by address, API tokens by address.

- The login form (and Django's admin login) counts failed attempts per username and per client
  address; past ``AXES_FAILURE_LIMIT`` failures within ``AXES_COOLOFF_TIME`` either one is
  locked out until the cool-off has passed, right password or not.
- A wrong API token is a failed attempt of its address (a token names no account), and a locked
  address gets 429 for every token until the cool-off has passed.
- The answer says so: "Too many failed attempts; try again in N minutes." (HTML on pages, the
  API's JSON error shape under ``/api/``, with ``Retry-After``).
"""

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone

API_TOKEN_CREDENTIALS = {"api_token": "********"}  # a token failure: no username, address only


class ThrottledModelBackend(AxesStandaloneBackend):
    """Refuses logins of locked-out accounts or addresses (listed before ModelBackend).

    ``authenticate()`` without a request comes from code running on the server (management
    commands, scripts), where there is no remote client to throttle: it is let through.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str | None:
    """The client's address: ``FRUGAL_CLIENT_IP_HEADER``'s last entry behind a proxy, else
    the connection's."""
    header = getattr(settings, "FRUGAL_CLIENT_IP_HEADER", "")
    if header:
        forwarded = [part.strip() for part in request.META.get(header, "").split(",")]
        forwarded = [part for part in forwarded if part]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")


def lockout_parameters(request_or_attempt, credentials=None) -> list[str]:
    """Login-form failures count per username and per address; token failures per address."""
    username = getattr(request_or_attempt, "username", None)
    if not isinstance(username, str):  # a request (its ``username`` is not a field)
        username = credentials.get("username") if credentials else None
    return ["username", "ip_address"] if username else ["ip_address"]


def retry_after_seconds(request, credentials=None) -> int:
    """Seconds until the lockout that concerns this request has passed (at least 60)."""
    from axes.models import AccessAttempt

    cool_off = settings.AXES_COOLOFF_TIME
    address = getattr(request, "axes_ip_address", None) or client_ip(request)
    who = Q(ip_address=address)
    username = get_client_username(request, credentials) if credentials else None
    if username:
        who |= Q(username=username)
    latest = (
        AccessAttempt.objects.filter(who)
        .order_by("-attempt_time")
        .values_list("attempt_time", flat=True)
        .first()
    )
    remaining = cool_off - (timezone.now() - latest) if latest is not None else cool_off
    return max(60, math.ceil(remaining.total_seconds()))


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many failed attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}."


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' AXES_LOCKOUT_CALLABLE: 429 with the message, as JSON or as the login page."""
    seconds = retry_after_seconds(request, credentials)
    message = lockout_message(seconds)
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"error": {"code": "throttled", "message": message, "details": None}}, status=429
        )
    else:
        form = AuthenticationForm(request)
        username = get_client_username(request, credentials) if credentials else None
        if username:
            form = AuthenticationForm(request, initial={"username": username})
        response = render(
            request,
            "accounts/login.html",
            {"form": form, "lockout": message, "next": request.POST.get("next", "")},
            status=429,
        )
    response["Retry-After"] = str(seconds)
    return response
