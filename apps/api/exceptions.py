"""API errors as data: every error response is ``{"error": {"code", "message", "details"}}``.

Services raise Django's ``ValidationError``; it becomes a 400 here like DRF's own, so API views
can call services without translating their errors.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler


def _as_drf(exc):
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(detail=exc.message_dict)
        return exceptions.ValidationError(detail={"non_field_errors": exc.messages})
    return exc


def api_exception_handler(exc, context):
    exc = _as_drf(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    message = detail.get("detail") if isinstance(detail, dict) and "detail" in detail else None
    code = getattr(exc, "default_code", "error")
    response.data = {
        "error": {
            "code": str(getattr(message, "code", code)),
            "message": str(message) if message is not None else "The request is not valid.",
            "details": None if message is not None else detail,
        }
    }
    return response
