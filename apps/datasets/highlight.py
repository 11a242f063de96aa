"""HTML for example texts with search terms or entity spans marked, escaped piece by piece.

The marking is :func:`models.prboost.matching.highlight_html` (the project's one highlighter):
every piece of user text is escaped before the ``<mark>`` tags around it are added, and only
that assembled string is marked safe here.
"""

from __future__ import annotations

import re

from django.utils.safestring import SafeString, mark_safe

from models.prboost.matching import highlight_html

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
    spans = [m.span() for m in pattern.finditer(text)] if pattern else []
    # highlight_html escapes every piece of the text itself.
    return mark_safe(highlight_html(text, spans, max_chars=max_chars))  # noqa: S308


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
    marked = highlight_html(
        text,
        [(start, end) for start, end, _ in spans],
        attributes=[f' class="entity entity-{n}" title="entity {n}"' for _, _, n in spans],
    )
    return mark_safe(marked)  # noqa: S308 - highlight_html escapes every piece of the text
