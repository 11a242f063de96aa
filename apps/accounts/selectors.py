"""Reads for accounts, always scoped to the user asking."""

from django.db.models import QuerySet

from apps.accounts.models import ApiToken


def tokens_for_user(*, user) -> QuerySet[ApiToken]:
    """The user's API tokens, newest first, revoked ones included (they show as revoked)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
