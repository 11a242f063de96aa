from django.urls import reverse


def test_htmx_request_with_expired_session_redirects_whole_page(client, project):
    url = reverse("jobs:project_jobs", args=[project.pk])
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Location" not in response
    assert response["HX-Redirect"].startswith(reverse("accounts:login"))


def test_plain_request_with_expired_session_keeps_the_redirect(client, project):
    response = client.get(reverse("projects:dashboard", args=[project.pk]))
    assert response.status_code == 302
    assert "HX-Redirect" not in response


def test_not_found_page_is_rendered_with_the_layout(client, outsider, settings):
    settings.DEBUG = False
    client.force_login(outsider)
    response = client.get("/projects/999999/")
    assert response.status_code == 404
    assert b"Not found" in response.content
