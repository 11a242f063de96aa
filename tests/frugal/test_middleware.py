from django.test import Client
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


def test_server_timing_header_only_when_enabled(client, annotator, project, settings):
    client.force_login(annotator)
    url = reverse("projects:dashboard", args=[project.pk])
    assert "Server-Timing" not in client.get(url)
    settings.MIDDLEWARE = ["apps.frugal.middleware.ServerTimingMiddleware", *settings.MIDDLEWARE]
    timed = Client()  # a new handler, built with the middleware
    timed.force_login(annotator)
    response = timed.get(url)
    assert response.status_code == 200
    timings = dict(part.strip().split(";dur=") for part in response["Server-Timing"].split(","))
    assert set(timings) == {"app", "cpu"}
    assert float(timings["app"]) > 0 and float(timings["cpu"]) >= 0


def test_server_timing_measures_the_request(rf):
    import time

    from apps.frugal.middleware import ServerTimingMiddleware

    def slow_view(request):
        from django.http import HttpResponse

        time.sleep(0.05)
        return HttpResponse("ok")

    response = ServerTimingMiddleware(slow_view)(rf.get("/"))
    app = float(response["Server-Timing"].split(",")[0].split("dur=")[1])
    cpu = float(response["Server-Timing"].split(",")[1].split("dur=")[1])
    assert app >= 50 and cpu < app  # sleeping is wall time, not CPU time
