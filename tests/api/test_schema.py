"""The OpenAPI schema generates cleanly and the docs page works offline."""

import pytest
from django.core.management import call_command
from django.test import override_settings


def test_openapi_schema_generates_without_warnings(tmp_path):
    # Every endpoint any app adds is checked here: a warning fails the test.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/v1/projects/{project_id}/" in text


@pytest.fixture
def client(client, django_user_model):
    """The schema and docs are behind login by default (FRUGAL_API_DOCS_PUBLIC opens them)."""
    client.force_login(django_user_model.objects.create_user("reader"))
    return client


@pytest.mark.django_db
def test_schema_endpoint_serves_openapi(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/projects/" in schema["paths"]
    bearer = schema["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_use_local_assets_only(client, url):
    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in page
    assert "cdn." not in page and "unpkg" not in page and "jsdelivr" not in page


@pytest.mark.django_db
@override_settings(DEBUG=False)
def test_docs_assets_are_served(client):
    page = client.get("/api/docs/").content.decode()
    start = page.index("/static/drf_spectacular_sidecar/")
    asset = page[start : page.index('"', start)]
    response = client.get(asset)
    assert response.status_code == 200
