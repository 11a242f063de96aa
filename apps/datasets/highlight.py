"""HTML for example texts with search terms or entity spans marked, escaped piece by piece.

User text is never trusted: every piece of it goes through :func:`django.utils.html.escape`
before the ``<mark>`` tags around it are added, and only that assembled string is marked safe.
"""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_SUFFIXES = ("ing", "es", "ed", "s")


def _stem(word: str) -> str:
    """A crude English stem so that ``videos`` also marks ``video`` (PostgreSQL stems too)."""
    lower = word.lower()
    for suffix in _SUFFIXES:
        if len(lower) > len(suffix) + 3 and lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def terms_pattern(terms: list[str]) -> re.Pattern | None:
    """One case-insensitive pattern matching any term (phrases with any spacing)."""
    parts = []
    for term in terms:
        words = [w for w in re.split(r"\s+", term.strip()) if w]
        if not words:
            continue
        if len(words) == 1:
            stem = _stem(words[0])
            # Word-like terms match at a word start and take the rest of the word.
            prefix = r"\b" if re.match(r"\w", stem) else ""
            parts.append(prefix + re.escape(stem) + r"\w*")
        else:
            parts.append(r"\s+".join(re.escape(w) for w in words))
    if not parts:
        return None
    # Longer alternatives first so a phrase wins over one of its words.
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts), re.IGNORECASE)


def highlight_terms(text: str, terms: list[str], *, max_chars: int | None = None) -> SafeString:
    """``text`` escaped, with matches of ``terms`` in ``<mark>``; cut to ``max_chars`` around
    the first match (with an ellipsis) when it is longer."""
    text = text or ""
    pattern = terms_pattern(terms)
    matches = list(pattern.finditer(text)) if pattern else []
    prefix = suffix = ""
    start, end = 0, len(text)
    if max_chars and len(text) > max_chars:
        first = matches[0].start() if matches else 0
        start = max(0, min(first - max_chars // 3, len(text) - max_chars))
        end = start + max_chars
        prefix = "…" if start > 0 else ""
        suffix = "…" if end < len(text) else ""
    pieces = [prefix]
    position = start
    for match in matches:
        m_start, m_end = max(match.start(), start), min(match.end(), end)
        if m_end <= m_start or m_start < position:
            continue
        pieces.append(escape(text[position:m_start]))
        pieces.append(f"<mark>{escape(text[m_start:m_end])}</mark>")
        position = m_end
    pieces.append(escape(text[position:end]))
    pieces.append(suffix)
    return mark_safe("".join(pieces))  # noqa: S308 - every piece of user text is escaped above


def highlight_entities(text: str, entities) -> SafeString:
    """``text`` escaped, with each entity's ``[start, end)`` span in a numbered ``<mark>``.

    Spans that are malformed, outside the text or overlapping an earlier one are left unmarked.
    """
    text = text or ""
    spans = []
    for number, entity in enumerate(entities or [], start=1):
        if not isinstance(entity, dict):
            continue
        start, end = entity.get("start"), entity.get("end")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
            spans.append((start, end, number))
    spans.sort()
    pieces = []
    position = 0
    for start, end, number in spans:
        if start < position:
            continue
        pieces.append(escape(text[position:start]))
        pieces.append(
            f'<mark class="entity entity-{number}" title="entity {number}">'
            f"{escape(text[start:end])}</mark>"
        )
        position = end
    pieces.append(escape(text[position:]))
    return mark_safe("".join(pieces))  # noqa: S308 - every piece of user text is escaped above
