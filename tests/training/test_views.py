"""The training dashboard, its actions and the settings page: who sees and does what."""

import re

import pytest

from apps.jobs.models import Job, JobStatus
from apps.training import kinds, services
from apps.training.models import Round, RoundStatus

pytestmark = pytest.mark.django_db


def _points(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-points="(\d+)"', html)]


def _fake_round(project, number, **metrics):
    return Round.objects.create(
        project=project,
        number=number,
        status=RoundStatus.REVIEW,
        alpha=1.5,
        weighted_error=0.2,
        state_path=f"projects/{project.pk}/prboost_state/x-{number}.tar",
        metrics={
            "test_accuracy": 0.8,
            "test_f1": 0.78,
            "dev_accuracy": 0.75,
            "coverage": 0.5,
            "n_rules": number,
            "rules_accepted": number - 1,
            **metrics,
        },
    )


def test_annotators_see_the_dashboard_read_only(client, project, annotator):
    _fake_round(project, 1)
    client.force_login(annotator)
    response = client.get(f"/projects/{project.pk}/training/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Current round" in html and "<svg" in html
    assert "Run round" not in html
    for url in ("launch/", "cancel/", "settings/preview/"):
        assert (
            client.post(f"/projects/{project.pk}/training/{url}", {"action": "round"}).status_code
            == 403
        )
    assert client.get(f"/projects/{project.pk}/training/settings/").status_code == 403
    assert not Job.objects.exists()


def test_outsiders_get_404(client, project, outsider):
    client.force_login(outsider)
    assert client.get(f"/projects/{project.pk}/training/").status_code == 404
    assert (
        client.post(f"/projects/{project.pk}/training/launch/", {"action": "round"}).status_code
        == 404
    )


def test_admin_launches_a_round_and_sees_it_running(client, project, admin_user):
    from apps.datasets.models import Example

    Example.objects.bulk_create(
        Example(project=project, external_id=f"d{i}", split="dev", text="x", gold_label=i % 2)
        for i in range(4)
    )
    client.force_login(admin_user)
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    assert "Run round" in html and "Warm cache" in html and "Finalize" in html
    response = client.post(
        f"/projects/{project.pk}/training/launch/", {"action": "round"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    job = Job.objects.get(project=project)
    assert job.kind == kinds.RUN_ROUND and job.status == JobStatus.QUEUED
    html = response.content.decode()
    assert 'hx-trigger="every 2s"' in html  # polls while the job runs
    assert f"#{job.pk} Run a boosting round" in html  # the readable label, not the kind
    again = client.post(
        f"/projects/{project.pk}/training/launch/", {"action": "warm"}, HTTP_HX_REQUEST="true"
    )
    assert "still queued" in again.content.decode()
    assert Job.objects.filter(project=project).count() == 1
    cancelled = client.post(f"/projects/{project.pk}/training/cancel/", HTTP_HX_REQUEST="true")
    assert cancelled.status_code == 200
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_finalize_asks_first_and_refresh_can_overwrite_model_labels(client, project, admin_user):
    import re

    client.force_login(admin_user)
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    forms = re.findall(r"<form[^>]*>.*?</form>", html, flags=re.S)
    finalize = [f for f in forms if 'value="finalize"' in f]
    assert len(finalize) == 1 and 'data-confirm="Finalize?' in finalize[0]
    assert "onsubmit" not in html and "hx-confirm" not in html
    client.post(
        f"/projects/{project.pk}/training/launch/",
        {"action": "refresh", "overwrite_model_labels": "1"},
        HTTP_HX_REQUEST="true",
    )
    job = Job.objects.get(project=project)
    assert job.kind == kinds.REFRESH_LABELS and job.params == {"overwrite_model_labels": True}


def test_unknown_actions_are_refused_with_a_message(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(
        f"/projects/{project.pk}/training/launch/", {"action": "nuke"}, HTTP_HX_REQUEST="true"
    )
    assert "Unknown action" in response.content.decode()
    assert not Job.objects.exists()


def test_the_plots_gain_a_point_after_a_round(client, project, admin_user):
    client.force_login(admin_user)
    _fake_round(project, 1)
    before = _points(client.get(f"/projects/{project.pk}/training/").content.decode())
    _fake_round(project, 2)
    after = _points(client.get(f"/projects/{project.pk}/training/").content.decode())
    assert len(before) == len(after) == 3
    assert all(a > b for a, b in zip(after, before))


def test_failed_rounds_are_listed_but_not_plotted(client, project, admin_user):
    client.force_login(admin_user)
    _fake_round(project, 1)
    Round.objects.create(project=project, number=2, status=RoundStatus.FAILED, error="boom")
    html = client.get(f"/projects/{project.pk}/training/").content.decode()
    assert "boom" in html
    assert _points(html)[2] == 2  # the rules chart: 2 series x 1 live round


def test_settings_page_saves_valid_settings_and_shows_errors(client, project, admin_user):
    client.force_login(admin_user)
    url = f"/projects/{project.pk}/training/settings/"
    page = client.get(url)
    assert page.status_code == 200 and "tc-about" in page.content.decode()
    form = {
        "proposer": "ngram",
        "language_model": "",
        "templates": "",
        "large_error_instances": 7,
        "top_k": 10,
        "candidates_per_round": 12,
        "decisions_per_suggestion": 2,
        "auto_next_round": "on",
    }
    assert client.post(url, form).status_code == 302
    project.refresh_from_db()
    stored = project.settings["prboost"]
    assert stored["proposer"] == "ngram" and stored["auto_next_round"] is True
    assert stored["use_imported_votes"] is False and stored["decisions_per_suggestion"] == 2
    bad = client.post(url, {**form, "proposer": "masked", "templates": "[oops"})
    assert bad.status_code == 200
    assert "Not valid JSON" in bad.content.decode()
    project.refresh_from_db()
    assert project.settings["prboost"]["proposer"] == "ngram"


def test_template_preview_fragment_renders_templates_on_an_example(client, project, admin_user):
    from apps.datasets.models import Example

    Example.objects.create(
        project=project, external_id="e", split="dev", text="free iphone", gold_label=1
    )
    client.force_login(admin_user)
    response = client.post(
        f"/projects/{project.pk}/training/settings/preview/",
        {"templates": '[{"id": "q", "text": "{text}\\nIt is about"}]'},
    )
    assert "free iphone\nIt is about" in response.content.decode()


def test_rounds_of_dead_jobs_are_closed_by_the_maintenance_pass_not_the_dashboard(
    client, project, admin_user
):
    from workers.maintenance_tasks import run_maintenance

    job = Job.objects.create(
        project=project, kind=kinds.RUN_ROUND, status=JobStatus.FAILED, error="worker died"
    )
    rnd = Round.objects.create(project=project, number=1, job=job)
    client.force_login(admin_user)
    client.get(f"/projects/{project.pk}/training/")
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.RUNNING  # a page only reads
    assert run_maintenance()["rounds"] == 1
    rnd.refresh_from_db()
    assert rnd.status == RoundStatus.FAILED and rnd.error == "worker died"
    assert services.latest_live_round(project=project) is None


def test_line_chart_scales_points_into_the_plot_and_labels_them():
    from apps.training.charts import line_chart

    chart = line_chart("Accuracy", [1, 2, 3], [("test", [0.5, None, 1.0])], percent=True)
    (series,) = chart.series
    assert [p.round for p in series.points] == [1, 3]  # no point where the value is missing
    low, high = series.points
    assert low.x == chart.left and high.x == chart.right
    assert high.y == chart.top and chart.y_ticks[-1].text == "100%"
    # Ticks run 40%..100% in round steps; 50% sits a sixth of the way up from the bottom.
    assert chart.y_ticks[0].text == "40%" and chart.y_ticks[0].pos == chart.bottom
    assert low.y == pytest.approx(chart.bottom - chart.plot_height / 6, abs=0.1)
    assert high.label == "test, round 3: 100.0%"
    counts = line_chart("Rules", [1, 2], [("rules", [0, 0])], y_min=0.0)
    assert [t.text for t in counts.y_ticks] == ["0", "1", "2"]


def test_line_chart_ticks_are_round_values_covering_the_data():
    from apps.training.charts import line_chart

    chart = line_chart("Accuracy", [1, 2, 3], [("test", [0.903, 0.93, 0.952])], percent=True)
    assert [t.text for t in chart.y_ticks] == ["90%", "92%", "94%", "96%"]
    # The axis spans exactly the ticks, so the lowest and highest ticks sit on the plot's edges.
    assert chart.y_ticks[0].pos == chart.bottom and chart.y_ticks[-1].pos == chart.top
    rules = line_chart("Rules", [1, 2, 3], [("rules", [3, 17, 41])], y_min=0.0)
    assert [t.text for t in rules.y_ticks] == ["0", "20", "40", "60"]


def test_coinciding_series_stay_distinguishable():
    from apps.training.charts import line_chart

    same = [0.8, 0.85, 0.9]
    chart = line_chart("Q", [1, 2, 3], [("accuracy", same), ("macro F1", same)], percent=True)
    first, second = chart.series
    assert first.path == second.path  # drawn on top of each other...
    assert (first.dash, first.marker) != (second.dash, second.marker)  # ...yet told apart
