"""Job pages: who sees and does what, and the htmx regions that poll only while a job runs."""

import pytest
from django.urls import reverse

from apps.jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(monkeypatch):
    from workers.celery_app import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: sent.append(name))
    return sent


def _pages(job, project):
    return [
        reverse("jobs:list"),
        reverse("jobs:detail", args=[job.pk]),
        reverse("jobs:status", args=[job.pk]),
        reverse("jobs:project_jobs", args=[project.pk]),
    ]


def test_anonymous_visitors_are_sent_to_log_in(client, make_job, project):
    job = make_job()
    for url in _pages(job, project):
        response = client.get(url)
        assert response.status_code == 302, url
        assert reverse("accounts:login") in response["Location"]
    response = client.post(reverse("jobs:cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_outsiders_get_404_for_jobs_of_projects_they_are_not_in(
    client, make_job, project, outsider
):
    job = make_job()
    client.force_login(outsider)
    for url in _pages(job, project)[1:]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 404
    assert client.post(reverse("jobs:project_selftest", args=[project.pk])).status_code == 404
    listing = client.get(reverse("jobs:list"))
    assert listing.status_code == 200
    assert f"#{job.pk}" not in listing.content.decode()


def test_members_see_their_projects_jobs(client, make_job, project, annotator):
    job = make_job(message="Scoring rules")
    client.force_login(annotator)
    for url in _pages(job, project):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "Worker self-test" in body or reverse("jobs:status", args=[job.pk]) in body, url
    assert "Scoring rules" in client.get(reverse("jobs:detail", args=[job.pk])).content.decode()


def test_annotators_cannot_cancel_or_launch(client, make_job, project, annotator, no_broker):
    job = make_job()
    client.force_login(annotator)
    detail = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert reverse("jobs:cancel", args=[job.pk]) not in detail
    assert client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 403
    assert client.post(reverse("jobs:project_selftest", args=[project.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert Job.objects.count() == 1


def test_admin_cancels_a_queued_job_from_its_page(client, make_job, admin_user):
    job = make_job()
    client.force_login(admin_user)
    detail = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert reverse("jobs:cancel", args=[job.pk]) in detail
    response = client.post(reverse("jobs:cancel", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("jobs:detail", args=[job.pk])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_htmx_cancel_returns_the_status_region_and_signals_the_change(client, make_job, admin_user):
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    client.force_login(admin_user)
    response = client.post(reverse("jobs:cancel", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Trigger"] == "jobs-changed"
    body = response.content.decode()
    assert 'id="job-status"' in body
    assert "cancelling" in body


def test_cancel_needs_post_and_csrf(make_job, admin_user):
    from django.test import Client

    job = make_job()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(reverse("jobs:cancel", args=[job.pk])).status_code == 405
    assert client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_status_region_polls_while_the_job_runs_and_stops_when_finished(
    client, make_job, admin_user
):
    job = make_job(status=JobStatus.RUNNING, progress=0.42, message="Step 3 of 7")
    client.force_login(admin_user)
    url = reverse("jobs:status", args=[job.pk])
    running = client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in running
    assert "42%" in running
    assert "Step 3 of 7" in running
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, progress=1.0, result={"accuracy": 0.93}
    )
    finished = client.get(url).content.decode()
    assert "hx-trigger" not in finished
    assert "accuracy" in finished


def test_failed_job_page_shows_the_error_not_a_traceback(client, make_job, admin_user):
    job = make_job(
        status=JobStatus.FAILED,
        error="Unknown label 'maybe' on line 3.",
        log="Traceback (most recent call last):\n  File x\nValueError: boom\n",
    )
    client.force_login(admin_user)
    body = client.get(reverse("jobs:status", args=[job.pk])).content.decode()
    assert "Unknown label &#x27;maybe&#x27; on line 3." in body


def test_project_fragment_shows_live_jobs_and_polls_only_while_any_runs(
    client, make_job, project, admin_user
):
    client.force_login(admin_user)
    url = reverse("jobs:project_jobs", args=[project.pk])
    make_job(status=JobStatus.SUCCEEDED, progress=1.0)
    idle = client.get(url).content.decode()
    assert "every 1s" not in idle
    assert "jobs-changed from:body" in idle
    running = make_job(status=JobStatus.RUNNING, progress=0.5)
    live = client.get(url).content.decode()
    assert "every 1s" in live
    assert reverse("jobs:cancel", args=[running.pk]) in live
    assert reverse("jobs:project_selftest", args=[project.pk]) in live


def test_admin_launches_the_selftest_from_the_project_fragment(
    client, project, admin_user, no_broker, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("jobs:project_selftest", args=[project.pk]), HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    job = Job.objects.get()
    assert job.kind == "selftest"
    assert job.project == project
    assert no_broker == ["frugal.selftest"]
    assert f"#{job.pk} Worker self-test" in response.content.decode()


def test_job_list_filters_by_project_and_status(client, make_job, project, admin_user, make_user):
    from apps.projects.models import Membership, Project, Role

    other = Project.objects.create(name="Relations", labels=["A", "B"])
    Membership.objects.create(project=other, user=admin_user, role=Role.ANNOTATOR)
    failed = make_job(status=JobStatus.FAILED, kind="import_dataset")
    elsewhere = make_job(project=other, kind="train_student")
    client.force_login(admin_user)

    def kinds(query):
        body = client.get(reverse("jobs:list"), query).content.decode()
        return {k for k in ("Import a dataset", "Train student") if k in body}

    assert kinds({}) == {"Import a dataset", "Train student"}
    assert kinds({"project": other.pk}) == {"Train student"}
    assert kinds({"status": "failed"}) == {"Import a dataset"}
    assert failed.pk and elsewhere.pk


def test_job_list_htmx_request_returns_only_the_table(client, make_job, admin_user):
    make_job(status=JobStatus.RUNNING)
    client.force_login(admin_user)
    body = client.get(reverse("jobs:list"), HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<div id="job-table"')
    assert 'hx-trigger="every 2s"' in body


def test_reading_jobs_writes_nothing_and_the_maintenance_pass_fails_stale_ones(
    client, make_job, admin_user, settings
):
    import datetime

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from workers.maintenance_tasks import run_maintenance

    settings.FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = 30
    job = make_job(
        status=JobStatus.RUNNING,
        heartbeat_at=timezone.now() - datetime.timedelta(minutes=5),
    )
    client.force_login(admin_user)
    pages = [
        reverse("jobs:list"),
        reverse("jobs:detail", args=[job.pk]),
        reverse("api-jobs"),
        reverse("api-job-detail", args=[job.pk]),
        reverse("training:dashboard", args=[job.project_id]),
        reverse("api-training-rounds", args=[job.project_id]),
    ]
    with CaptureQueriesContext(connection) as queries:
        for url in pages:
            assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200, url
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
        and "django_session" not in q["sql"]
    ]
    assert writes == []
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # the pages leave repair to the workers
    assert run_maintenance() == {"stale_jobs": 1, "rounds": 0}
    body = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "The worker stopped responding" in body


def test_job_page_lists_import_problems_with_where_they_are(client, make_job, admin_user):
    job = make_job(
        kind="import_dataset",
        status="failed",
        error="Import failed",
        result={
            "problems": [{"file": "data.jsonl", "line": 3, "reason": "malformed JSON"}],
            "truncated": False,
        },
    )
    client.force_login(admin_user)
    response = client.get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    assert b"<strong>data.jsonl</strong>, line 3: malformed JSON" in response.content


def test_internal_job_kinds_never_appear_raw_on_job_pages(client, make_job, project, admin_user):
    jobs = [
        make_job(kind=kind, status=JobStatus.SUCCEEDED)
        for kind in ("train_prboost_finalize", "prboost_warm_cache", "index_search")
    ]
    client.force_login(admin_user)
    pages = [
        client.get(reverse("jobs:list")),
        client.get(reverse("training:dashboard", args=[project.pk])),
        *(client.get(reverse("jobs:detail", args=[job.pk])) for job in jobs),
    ]
    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        for raw in ("train_prboost_finalize", "prboost_warm_cache", "index_search"):
            assert raw not in body.replace("index_search/", ""), raw
    body = pages[0].content.decode()
    assert "Finalize labels" in body and "Warm the PRBoost cache" in body
    assert "Build the search index" in body


def test_a_queued_job_says_what_it_waits_for(client, make_job, project, admin_user):
    import datetime

    from django.utils import timezone

    now = timezone.now()
    warm = make_job(
        kind="prboost_warm_cache",
        status=JobStatus.RUNNING,
        progress=0.4,
        queue="cpu",
        started_at=now,
    )
    queued = make_job(kind="train_prboost_round", queue="cpu")
    alone = make_job(kind="import_dataset", queue="interactive")
    Job.objects.filter(pk=queued.pk).update(created_at=now + datetime.timedelta(seconds=1))
    client.force_login(admin_user)
    body = client.get(reverse("jobs:status", args=[queued.pk])).content.decode()
    assert f"Behind job #{warm.pk}, Warm the PRBoost cache, 40% on the cpu queue." in body
    body = client.get(reverse("jobs:status", args=[alone.pk])).content.decode()
    assert "Waiting for a worker on the interactive queue." in body
    body = client.get(reverse("jobs:status", args=[warm.pk])).content.decode()
    assert "job-waiting" not in body
