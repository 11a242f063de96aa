"""Outages: with the cache (Redis) down, pages that use it only for speed keep working; a job
launched while the broker does not answer says it could not be queued."""

import pytest

from apps.datasets.models import Example
from apps.jobs.models import Job, JobStatus

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
        }
    }


@pytest.fixture
def examples(project):
    for n in range(5):
        Example.objects.create(project=project, external_id=str(n), text=f"text {n}", split="dev")
    return project


def test_the_cache_is_really_down(redis_down):
    from django.core.cache import cache

    with pytest.raises(Exception):  # noqa: B017 - whatever the Redis client raises
        cache.get("x")


def test_examples_search_works_without_the_cache(client, admin_user, examples, redis_down):
    client.force_login(admin_user)
    response = client.get(f"/projects/{examples.pk}/data/examples/?q=text")
    assert response.status_code == 200
    assert b"text 3" in response.content


def test_labeling_works_without_the_cache(client, admin_user, examples, redis_down):
    client.force_login(admin_user)
    response = client.get(f"/projects/{examples.pk}/data/label/?split=dev")
    assert response.status_code == 200
    assert b"text " in response.content


def test_estimated_rows_falls_back_to_the_planner(monkeypatch, redis_down, db):
    from apps.datasets import selectors

    class Planned:
        _frugal_estimated_rows = None

        def order_by(self):
            return self

        @property
        def query(self):
            class Query:
                def sql_with_params(self):
                    return "SELECT 1", ()

            return Query()

        def explain(self, format):
            return '[{"Plan": {"Plan Rows": 42}}]'

    assert selectors.estimated_rows(Planned()) == 42


def test_fallible_cache_answers_the_default_and_warns_once(redis_down, caplog):
    from apps.frugal import cache as fallible_cache

    fallible_cache._last_warning = 0.0
    assert fallible_cache.get("k", "fallback") == "fallback"
    assert fallible_cache.set("k", 1) is False
    assert fallible_cache.add("k", 1) is None
    warnings = [r for r in caplog.records if r.name == "frugal.cache"]
    assert len(warnings) == 1 and "going on without it" in warnings[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_job_launched_during_a_broker_outage_says_it_could_not_be_queued(
    client, project, admin_user, monkeypatch
):
    from workers.celery_app import app

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("Connection refused")

    monkeypatch.setattr(app, "send_task", refuse)
    client.force_login(admin_user)
    response = client.post(
        f"/api/v1/projects/{project.pk}/jobs/",
        {"kind": "selftest"},
        content_type="application/json",
    )
    assert response.status_code in (200, 201, 202), response.content
    body = response.json()
    assert body["status"] == "failed"
    assert body["message"] == "Could not be queued."
    job = Job.objects.get(pk=body["id"])
    assert job.status == JobStatus.FAILED and "was not queued" in job.error
