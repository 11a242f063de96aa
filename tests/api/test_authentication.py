"""The API authenticates by Bearer token or by session; session writes need the CSRF token."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.services import create_api_token
from apps.projects.models import Project

API = "/api/v1/projects/"
NEW_PROJECT = {"name": "Reviews", "labels": ["NEG", "POS"]}


@pytest.fixture
def staff(make_user):
    return make_user("stafford", is_staff=True)


@pytest.mark.django_db
def test_anonymous_request_gets_401_in_the_error_format(client):
    response = client.get(API)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert "credentials" in error["message"]


@pytest.mark.django_db
def test_session_read_works_without_token(client, admin_user, project):
    client.force_login(admin_user)
    response = client.get(API)
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [project.pk]


@pytest.mark.django_db
def test_session_write_without_csrf_token_is_refused(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(API, NEW_PROJECT, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not Project.objects.filter(name="Reviews").exists()


@pytest.mark.django_db
def test_session_write_with_csrf_token_goes_through(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get(reverse("accounts:tokens"))  # a page with a form sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(API, NEW_PROJECT, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201, response.content
    assert Project.objects.filter(name="Reviews").exists()


@pytest.mark.django_db
def test_token_write_needs_no_csrf_token(staff):
    _, secret = create_api_token(user=staff, name="t")
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        API, NEW_PROJECT, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_token_keyword_is_also_accepted(client, admin_user):
    _, secret = create_api_token(user=admin_user, name="t")
    assert client.get(API, HTTP_AUTHORIZATION=f"Token {secret}").status_code == 200


@pytest.mark.django_db
def test_malformed_authorization_header_gets_401(client):
    response = client.get(API, HTTP_AUTHORIZATION="Bearer two parts")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Malformed Authorization header."
