"""Labeling guidelines: admins edit Markdown, everyone sees it rendered safely."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.guidelines.services import MAX_CHARS, render_markdown, save_guidelines


def test_markdown_is_rendered_and_sanitized():
    html = render_markdown(
        "# Spam\n\n**Ads** are spam.\n\n<script>alert(1)</script>\n\n"
        "[x](javascript:alert(1)) [ok](https://example.org) <img src=x onerror=alert(1)>"
    )
    assert "<h1>Spam</h1>" in html and "<strong>Ads</strong>" in html
    assert "<script" not in html and "<img" not in html
    assert 'href="javascript' not in html
    assert 'href="https://example.org"' in html
    assert "noopener" in html


def test_only_admins_save_and_size_is_capped(project, admin_user, annotator):
    with pytest.raises(PermissionDenied):
        save_guidelines(project=project, user=annotator, text="x")
    with pytest.raises(ValidationError):
        save_guidelines(project=project, user=admin_user, text="x" * (MAX_CHARS + 1))
    saved = save_guidelines(project=project, user=admin_user, text="  Be *kind*\r\n")
    assert saved.text == "Be *kind*"


def test_guidelines_show_beside_labeling_review_and_dashboard(
    client, project, admin_user, annotator
):
    save_guidelines(project=project, user=admin_user, text="Label **promotions** as SPAM.")
    client.force_login(annotator)
    for name in ("datasets:label", "rules:review", "projects:dashboard"):
        response = client.get(reverse(name, args=[project.pk]))
        assert b'id="guidelines-panel"' in response.content, name
        assert b"<strong>promotions</strong>" in response.content, name
        assert b"edit</a>" not in response.content  # annotators get no edit link


def test_edit_page(client, project, admin_user, annotator):
    url = reverse("guidelines:edit", args=[project.pk])
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    assert client.post(url, {"text": "hacked"}).status_code == 403
    client.force_login(admin_user)
    response = client.post(url, {"text": "## Rules\n\n- one"}, follow=True)
    assert b"Guidelines saved" in response.content and b"<h2>Rules</h2>" in response.content
    too_long = client.post(url, {"text": "x" * (MAX_CHARS + 1)})
    assert too_long.status_code == 400 and b"limited to" in too_long.content
