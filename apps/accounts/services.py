"""Writes for accounts: personal API tokens.

A token's secret is ``frg_`` followed by a random URL-safe string. Only its SHA-256 digest and its
first characters (for display) are stored, so the secret is shown exactly once, when created.
"""

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.authentication import token_digest
from apps.accounts.models import ApiToken

TOKEN_PREFIX = "frg_"  # noqa: S105 - marks Frugal secrets (e.g. for secret scanners)
PREFIX_SHOWN = 12  # "frg_" plus 8 characters of the secret: enough to tell tokens apart


def create_api_token(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the token and its secret (never stored)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name, e.g. the script that will use it."})
    if not user.is_authenticated or not user.is_active:
        raise PermissionDenied("Only active users can create API tokens.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user, name=name, prefix=secret[:PREFIX_SHOWN], digest=token_digest(secret)
    )
    token.full_clean()
    token.save()
    return token, secret


def revoke_api_token(*, token: ApiToken, user) -> ApiToken:
    """Revoke one of the user's own tokens. Revoking a revoked token changes nothing."""
    if token.user_id != user.pk:
        raise PermissionDenied("You can only revoke your own tokens.")
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.full_clean()
            locked.save(update_fields=["revoked_at"])
    token.revoked_at = locked.revoked_at
    return token
