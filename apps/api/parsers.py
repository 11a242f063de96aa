"""The API's JSON parser: DRF's, plus a nesting limit and no NUL characters (400, never 500)."""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from apps.frugal import safe_json


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            raw = stream.read().decode(encoding) if stream is not None else ""
            return safe_json.loads(raw)
        except UnicodeDecodeError:
            raise ParseError(f"The JSON body is not valid {encoding}.") from None
        except json.JSONDecodeError as exc:
            raise ParseError(
                f"The JSON body is not valid: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
