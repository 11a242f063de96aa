"""Hardening of requests: NUL characters and deep JSON get clear 400s, the CSP header, the
secret key's mode, the API docs behind login, and one-line logs for refused requests."""

import json
import logging
import os
import stat
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


# --- NUL characters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/projects/{pk}/data/examples/?q=%00",
        "/projects/{pk}/data/examples/?q=a%00b&split=pool",
        "/projects/{pk}/rules/?q=%00",
        "/jobs/?status=%00",
        "/projects/?q=%00",
    ],
)
def test_nul_in_a_query_string_is_a_400_on_pages(admin_client, project, path):
    response = admin_client.get(path.format(pk=project.pk))
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/{pk}/examples/?q=%00",
        "/api/v1/projects/?search=%00",
        "/api/v1/jobs/?kind=%00",
    ],
)
def test_nul_in_a_query_string_is_a_400_in_the_api(admin_client, project, path):
    response = admin_client.get(path.format(pk=project.pk))
    assert response.status_code == 400
    assert "NUL character" in response.json()["error"]["message"]


def test_an_escaped_percent_sign_is_not_a_nul(admin_client, project):
    response = admin_client.get(f"/projects/{project.pk}/data/examples/?q=%2500")
    assert response.status_code == 200


def test_nul_in_a_form_field_is_a_400_and_changes_nothing(admin_client, project):
    before = project.name
    response = admin_client.post(
        f"/projects/{project.pk}/settings/", {"name": "bad\x00name", "labels": "HAM\nSPAM"}
    )
    assert response.status_code == 400
    project.refresh_from_db()
    assert project.name == before


def test_nul_in_training_settings_json_is_a_400_in_the_api(admin_client, project):
    url = f"/api/v1/projects/{project.pk}/training/settings/"
    before = admin_client.get(url).json()
    body = '{"templates": [{"id": "t\\u0000", "text": "{text}", "style": "causal"}]}'
    response = admin_client.patch(url, body, content_type="application/json")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "NUL character" in message and "templates[0].id" in message
    assert admin_client.get(url).json() == before


def test_nul_in_training_settings_form_is_a_message(admin_client, project):
    url = f"/projects/{project.pk}/training/settings/"
    response = admin_client.post(
        url,
        {
            "proposer": "causal_lm",
            "templates": '[{"id": "t\\u0000", "text": "{text}", "style": "causal"}]',
        },
    )
    assert response.status_code < 500
    assert "NUL character" in response.content.decode()


# --- deep nesting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("patch", "/api/v1/projects/{pk}/training/settings/"),
        ("patch", "/api/v1/projects/{pk}/"),
        ("post", "/api/v1/projects/{pk}/rules/preview/"),
        ("post", "/api/v1/projects/{pk}/jobs/"),
    ],
)
def test_json_nested_100000_deep_is_a_400(admin_client, project, method, path):
    response = getattr(admin_client, method)(
        path.format(pk=project.pk), DEEP, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested deeper than" in response.json()["error"]["message"]


def test_deep_json_in_the_training_settings_form_is_a_message(admin_client, project):
    response = admin_client.post(
        f"/projects/{project.pk}/training/settings/", {"proposer": "causal_lm", "templates": DEEP}
    )
    assert response.status_code < 500
    assert "nested deeper than" in response.content.decode()


def test_ordinary_json_still_parses(admin_client, project):
    url = f"/api/v1/projects/{project.pk}/training/settings/"
    response = admin_client.patch(url, json.dumps({"rounds": 3}), content_type="application/json")
    assert response.status_code in (200, 400)
    assert "nested" not in response.content.decode() and "NUL" not in response.content.decode()


def test_safe_json_reports_position_and_limits():
    from apps.frugal import safe_json

    assert safe_json.loads('{"a": [[["x"]]], "b": "\\\\u0000 is text"}')["a"] == [[["x"]]]
    with pytest.raises(json.JSONDecodeError) as deep:
        safe_json.loads('{"a":\n' + "[" * 65 + "]" * 65 + "}")
    assert deep.value.lineno == 2 and "nested deeper than 64" in deep.value.msg
    with pytest.raises(json.JSONDecodeError) as nul:
        safe_json.loads('{"k\\u0000": 1}')
    assert "k\x00" in nul.value.msg or "NUL" in nul.value.msg
    assert safe_json.nesting_overflow('"[[[[[[[[[["', max_depth=2) is None  # inside a string


# --- headers, secrets, docs, logs ----------------------------------------------------------


def test_pages_send_a_content_security_policy_with_a_nonce(admin_client, project):
    response = admin_client.get(f"/projects/{project.pk}/data/label/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    nonce = policy.split("'nonce-")[1].split("'")[0]
    body = response.content.decode()
    assert f'<script nonce="{nonce}">' in body
    assert "<script>" not in body and " onsubmit=" not in body and " onclick=" not in body


def test_every_template_is_free_of_inline_script_without_a_nonce():
    from pathlib import Path

    root = Path(django_settings.BASE_DIR) / "frontend" / "templates"
    for template in root.rglob("*.html"):
        text = template.read_text()
        assert "<script>" not in text, template
        for handler in (" onclick=", " onsubmit=", " onchange=", " onload=", "javascript:"):
            assert handler not in text, (template, handler)


def test_the_secret_key_file_is_written_0600(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(FRUGAL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="apps.frugal.settings")
    subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=django_settings.BASE_DIR,
        env=env,
        check=True,
        timeout=120,
    )
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600, oct(mode)


@pytest.mark.django_db
def test_schema_and_docs_need_login_by_default(client, make_user):
    assert client.get("/api/schema/").status_code in (401, 403)
    for url in ("/api/docs/", "/api/redoc/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(make_user("reader"))
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_a_setting_opens_the_schema_and_docs(client, settings):
    settings.FRUGAL_API_DOCS_PUBLIC = True
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_refused_requests_are_logged_in_one_line():
    from apps.frugal.logs import OneLineClientErrors

    try:
        raise PermissionError("no")
    except PermissionError:
        record = logging.LogRecord(
            "django.request", logging.WARNING, __file__, 1, "Forbidden: %s", ("/x",), sys.exc_info()
        )
    record.status_code = 403
    assert OneLineClientErrors().filter(record)
    assert record.exc_info is None
    formatted = logging.Formatter().format(record)
    assert formatted == "Forbidden: /x" and "Traceback" not in formatted
    handler = django_settings.LOGGING["handlers"]["console"]
    assert "one_line_client_errors" in handler["filters"]


def test_server_errors_keep_their_traceback():
    from apps.frugal.logs import OneLineClientErrors

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "Error", (), sys.exc_info()
        )
    record.status_code = 500
    OneLineClientErrors().filter(record)
    assert record.exc_info is not None
