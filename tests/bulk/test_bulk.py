"""Bulk actions from a search: count, confirmation, bounded size, undo."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.bulk import services
from apps.bulk.models import BulkAction
from apps.datasets.models import Example


@pytest.fixture
def examples(project, admin_user):
    rows = []
    for i in range(6):
        rows.append(
            Example.objects.create(
                project=project,
                external_id=f"e{i}",
                text=("free prize " if i < 4 else "hello ") + str(i),
                split="pool",
            )
        )
    rows[0].gold_label, rows[0].gold_labeled_by = 0, admin_user
    rows[0].save()
    return rows


def test_label_plan_skips_gold_unless_replacing(project, examples):
    plan = services.plan_bulk(project=project, filters={"search": "prize"}, kind="label", value=1)
    assert plan.count == 3 and not plan.too_many
    plan = services.plan_bulk(
        project=project, filters={"search": "prize"}, kind="label", value=1, replace_gold=True
    )
    assert plan.count == 4


def test_apply_and_undo_label(project, admin_user, examples):
    action = services.apply_bulk(
        project=project,
        user=admin_user,
        filters={"search": "prize"},
        kind="label",
        value="1",
        replace_gold=True,
        expected=4,
    )
    assert action.count == 4
    assert set(Example.objects.filter(gold_label=1).values_list("external_id", flat=True)) == {
        "e0",
        "e1",
        "e2",
        "e3",
    }
    # someone relabels one afterwards: undo leaves it
    Example.objects.filter(external_id="e3").update(gold_label=0)
    assert services.undo_bulk(action=action, user=admin_user) == 3
    e0 = Example.objects.get(external_id="e0")
    assert (e0.gold_label, e0.gold_labeled_by) == (0, admin_user)  # the previous gold is back
    assert Example.objects.get(external_id="e1").gold_label is None
    assert Example.objects.get(external_id="e3").gold_label == 0
    with pytest.raises(ValidationError):
        services.undo_bulk(action=action, user=admin_user)


def test_apply_and_undo_split(project, admin_user, examples):
    action = services.apply_bulk(
        project=project, user=admin_user, filters={}, kind="split", value="dev", expected=6
    )
    assert Example.objects.filter(split="dev").count() == 6
    services.undo_bulk(action=action, user=admin_user)
    assert Example.objects.filter(split="pool").count() == 6


def test_refusals_change_nothing(project, admin_user, annotator, examples, settings):
    with pytest.raises(PermissionDenied):
        services.apply_bulk(
            project=project, user=annotator, filters={}, kind="split", value="dev", expected=6
        )
    with pytest.raises(ValidationError, match="changed since"):
        services.apply_bulk(
            project=project, user=admin_user, filters={}, kind="split", value="dev", expected=5
        )
    settings.FRUGAL_BULK_LIMIT = 2
    settings.FRUGAL_BULK_JOB_LIMIT = 3
    with pytest.raises(ValidationError, match="More than 3"):
        services.apply_bulk(
            project=project, user=admin_user, filters={}, kind="split", value="dev", expected=3
        )
    for kind, value in (("label", 9), ("split", "train"), ("drop", "x")):
        with pytest.raises(ValidationError):
            services.plan_bulk(project=project, filters={}, kind=kind, value=value)
    assert not Example.objects.filter(split="dev").exists()
    assert not BulkAction.objects.exists()


def test_pages_choose_confirm_run_undo(client, project, admin_user, examples):
    client.force_login(admin_user)
    examples_page = client.get(reverse("datasets:examples", args=[project.pk]) + "?search=prize")
    assert b'id="bulk-link"' in examples_page.content
    url = reverse("bulk:bulk", args=[project.pk])
    assert b"Set the gold label" in client.get(url + "?search=prize").content
    confirm = client.post(
        url, {"search": "prize", "bulk_kind": "label", "bulk_label": "1", "step": "confirm"}
    )
    assert b'id="bulk-count">3 examples' in confirm.content
    assert not Example.objects.filter(gold_label=1).exists()  # nothing before confirming
    done = client.post(
        url,
        {
            "search": "prize",
            "bulk_kind": "label",
            "bulk_label": "1",
            "step": "run",
            "expected": "3",
        },
        follow=True,
    )
    assert b"on 3 examples" in done.content
    assert Example.objects.filter(gold_label=1).count() == 3
    action = BulkAction.objects.get()
    client.post(reverse("bulk:undo", args=[project.pk, action.pk]))
    assert not Example.objects.filter(gold_label=1).exists()
    stale = client.post(
        url,
        {
            "search": "prize",
            "bulk_kind": "label",
            "bulk_label": "1",
            "step": "run",
            "expected": "9",
        },
    )
    assert stale.status_code == 400 and b"changed since" in stale.content


def test_annotators_get_no_bulk(client, project, annotator, examples):
    client.force_login(annotator)
    page = client.get(reverse("datasets:examples", args=[project.pk]))
    assert b'id="bulk-link"' not in page.content
    url = reverse("bulk:bulk", args=[project.pk])
    response = client.post(
        url, {"bulk_kind": "split", "bulk_split": "dev", "step": "run", "expected": "6"}
    )
    assert response.status_code == 403
    assert not Example.objects.filter(split="dev").exists()


def test_filter_label_and_split_are_not_the_action(client, project, admin_user, examples):
    """The selection's ``label``/``split`` filters and the action's label/split are apart."""
    Example.objects.filter(external_id__in=["e4", "e5"]).update(label=1)
    client.force_login(admin_user)
    url = reverse("bulk:bulk", args=[project.pk])
    data = {"label": "1", "split": "pool", "bulk_kind": "split", "bulk_split": "test"}
    confirm = client.post(url, {**data, "step": "confirm"})
    assert b'id="bulk-count">2 examples' in confirm.content
    client.post(url, {**data, "step": "run", "expected": "2"})
    assert set(Example.objects.filter(split="test").values_list("external_id", flat=True)) == {
        "e4",
        "e5",
    }


# --- above the request's limit: a job -------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """Task messages captured instead of sent to the broker."""
    from workers.celery_app import app

    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: messages.append(name))
    return messages


def _run(job):
    from apps.jobs.runner import run_job
    from workers.bulk_tasks import handle_bulk_apply, handle_bulk_undo

    handler = handle_bulk_apply if job.kind == services.APPLY_JOB_KIND else handle_bulk_undo
    run_job(job.pk, handler)
    job.refresh_from_db()
    return job


def test_a_big_selection_runs_as_an_interactive_job_and_undo_too(
    project, admin_user, examples, settings, sent, django_capture_on_commit_callbacks
):
    from apps.jobs.models import Job

    settings.FRUGAL_BULK_LIMIT = 3
    with django_capture_on_commit_callbacks(execute=True):
        job = services.apply_bulk(
            project=project, user=admin_user, filters={}, kind="split", value="dev", expected=6
        )
    assert isinstance(job, Job) and job.kind == "bulk_apply" and job.queue == "interactive"
    assert job.params["expected"] == 6 and sent == ["frugal.bulk_apply"]
    assert not Example.objects.filter(split="dev").exists()  # nothing before the job runs
    job = _run(job)
    assert job.status == "succeeded", job.error
    assert job.message.startswith("Done: moved to dev on 6 examples")
    assert job.progress == 1.0
    action = BulkAction.objects.get(pk=job.result["bulk_action"])
    assert action.job_id == job.pk and action.count == 6
    assert Example.objects.filter(split="dev").count() == 6

    undo = services.request_undo(action=action, user=admin_user)
    assert isinstance(undo, Job) and undo.kind == "bulk_undo" and undo.queue == "interactive"
    undo = _run(undo)
    assert undo.status == "succeeded", undo.error
    assert undo.result["restored"] == 6 and Example.objects.filter(split="pool").count() == 6
    action.refresh_from_db()
    with pytest.raises(ValidationError, match="undone already"):
        services.request_undo(action=action, user=admin_user)


def test_a_bulk_job_is_all_or_nothing(project, admin_user, examples, settings, sent, monkeypatch):
    settings.FRUGAL_BULK_LIMIT = 3
    monkeypatch.setattr(services, "CHUNK", 2)
    job = services.apply_bulk(
        project=project, user=admin_user, filters={}, kind="split", value="test", expected=6
    )
    real = services.BulkItem.objects.bulk_create
    calls = []

    def failing(items):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(items)

    monkeypatch.setattr(services.BulkItem.objects, "bulk_create", failing)
    job = _run(job)
    assert job.status == "failed" and "disk full" in job.error and len(calls) == 2
    assert not Example.objects.filter(split="test").exists()  # the first chunk rolled back
    assert not BulkAction.objects.exists()


def test_a_bulk_job_checks_again_when_it_runs(
    project, admin_user, examples, settings, sent, make_user
):
    from apps.projects import lifecycle
    from apps.projects.models import Membership

    settings.FRUGAL_BULK_LIMIT = 3
    launch = {"filters": {}, "kind": "label", "value": "1", "replace_gold": True, "expected": 6}
    # the selection changed between the confirmation and the run
    job = services.apply_bulk(project=project, user=admin_user, **launch)
    Example.objects.filter(external_id="e5").update(gold_label=1)
    job = _run(job)
    assert job.status == "failed" and "selection changed" in job.error
    assert "Nothing changed" in job.error
    assert Example.objects.filter(gold_label=1).count() == 1
    # the launcher is no admin any more
    Example.objects.filter(external_id="e5").update(gold_label=None)
    other = make_user("second-admin")
    Membership.objects.create(project=project, user=other, role="admin")
    job = services.apply_bulk(project=project, user=other, **launch)
    Membership.objects.filter(project=project, user=other).update(role="annotator")
    job = _run(job)
    assert job.status == "failed" and "Only project admins" in job.error
    # the project was archived meanwhile
    job = services.apply_bulk(project=project, user=admin_user, **launch)
    lifecycle.archive_project(project=project, user=admin_user)
    job = _run(job)
    assert job.status == "failed" and "archived" in job.error
    assert not BulkAction.objects.exists()
    assert Example.objects.filter(gold_label=1).count() == 0


def test_pages_send_a_big_action_to_its_job_page(
    client, project, admin_user, examples, settings, sent
):
    settings.FRUGAL_BULK_LIMIT = 3
    client.force_login(admin_user)
    url = reverse("bulk:bulk", args=[project.pk])
    confirm = client.post(url, {"bulk_kind": "split", "bulk_split": "dev", "step": "confirm"})
    assert b'id="bulk-as-job"' in confirm.content
    done = client.post(
        url, {"bulk_kind": "split", "bulk_split": "dev", "step": "run", "expected": "6"}
    )
    from apps.jobs.models import Job

    job = Job.objects.get(kind="bulk_apply")
    assert done.status_code == 302 and done.url == reverse("jobs:detail", args=[job.pk])


def test_annotators_cannot_launch_a_bulk_job(project, annotator, examples, settings, sent):
    settings.FRUGAL_BULK_LIMIT = 3
    with pytest.raises(PermissionDenied):
        services.apply_bulk(
            project=project, user=annotator, filters={}, kind="split", value="dev", expected=6
        )
    assert sent == []
