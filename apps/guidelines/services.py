"""Labeling guidelines: saved by project admins, rendered from Markdown to safe HTML.

Rendering: markdown-it-py with raw HTML off (``<script>`` in the text stays text) and its
link check (no ``javascript:``/``data:`` links), then nh3 (the Ammonia sanitizer) as a second
wall: only formatting tags survive, links get ``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

import nh3
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from apps.guidelines.models import Guidelines
from apps.projects.models import Role
from apps.projects.selectors import role_in_project

MAX_CHARS = 50_000
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = {
    "a", "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del",
}  # fmt: skip


def render_markdown(text: str) -> SafeString:
    """``text`` (Markdown) as sanitized HTML."""
    html = _markdown.render(text or "")
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitized by nh3 just above


def save_guidelines(*, project, user, text: str) -> Guidelines:
    """Replace the project's guidelines (admins only); an empty text removes them."""
    if role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can edit the guidelines.")
    if not isinstance(text, str):
        raise ValidationError("Guidelines are text.")
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_CHARS:
        raise ValidationError(
            f"Guidelines are limited to {MAX_CHARS:,} characters; these have {len(text):,}."
        )
    guidelines, _ = Guidelines.objects.update_or_create(
        project=project, defaults={"text": text, "updated_by": user}
    )
    return guidelines


def guidelines_for(*, project) -> Guidelines | None:
    return Guidelines.objects.filter(project=project).exclude(text="").first()
