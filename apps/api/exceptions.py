"""API errors as data: every error response is ``{"error": {"code", "message", "details"}}``."""

from rest_framework.views import exception_handler


def api_exception_handler(exc, context):
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
