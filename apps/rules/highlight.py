"""A rule's matches marked in an example's text, as safe HTML for the pages."""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe

from models.prboost.matching import highlight_html, match_spans


def highlight_rule(rule, text: str, *, max_chars: int | None = None) -> SafeString:
    """``text`` HTML-escaped with ``rule``'s matches in ``<mark>``, cut around the first match."""
    text = text or ""
    # highlight_html escapes every piece of the text itself.
    return mark_safe(highlight_html(text, match_spans(rule, text), max_chars=max_chars))  # noqa: S308
