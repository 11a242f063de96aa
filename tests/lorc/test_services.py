"""Calibrating LoRC for a project and switching the proposer to the compressed model."""

from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.lorc import kinds, services
from apps.lorc.models import CompressedLM
from apps.training.prboost_settings import prboost_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def compressed(lm_project):
    return services.calibrate(project=lm_project, job=None, bits=8, ceiling=1.5)


def test_calibrate_stores_the_factors_and_what_they_cost_and_keep(compressed, artifact_dir):
    m = compressed.metrics
    assert (artifact_dir / compressed.artifact.path).is_file()
    assert 0 < m["bytes_lorc"] < m["bytes_full"] and m["saved"] == pytest.approx(
        1 - m["bytes_lorc"] / m["bytes_full"]
    )
    assert m["calibration_ppl_lorc"] <= 1.5 * m["calibration_ppl_full"]
    assert m["ppl_full"] > 0 and m["ppl_lorc"] > 0
    assert 0 <= m["top1"] <= 1 and 0 <= m["overlap"] <= 1
    assert compressed.base_model.endswith("tiny-causal-lm0")


def test_calibrate_with_too_little_text_changes_nothing(project, settings, tiny_lm_dir):
    from apps.datasets.models import Example

    settings.FRUGAL_CAUSAL_LM = tiny_lm_dir
    Example.objects.create(project=project, external_id="a", split="pool", text="the song")
    with pytest.raises(ValidationError, match="tokens of project text"):
        services.calibrate(project=project, job=None)
    assert not CompressedLM.objects.exists()


def test_the_proposer_loads_the_compressed_model_and_switches_back(
    compressed, lm_project, admin_user
):
    from models.lm import load_causal_lm
    from models.lorc import LatentCache, is_compressed

    services.use_for_proposer(project=lm_project, user=admin_user, compressed=compressed)
    name = prboost_settings(lm_project)["language_model"]
    assert name.startswith("lorc:")
    lm = load_causal_lm(name, device="cpu")
    assert is_compressed(lm.model) and isinstance(lm.new_cache(), LatentCache)
    assert "lorc:" in lm.model_id  # answer caches never mix the two models
    services.stop_using_for_proposer(project=lm_project, user=admin_user)
    assert prboost_settings(lm_project)["language_model"] == ""


def test_only_admins_switch_the_proposer_or_launch(compressed, lm_project, annotator):
    with pytest.raises(PermissionDenied):
        services.use_for_proposer(project=lm_project, user=annotator, compressed=compressed)
    with pytest.raises(PermissionDenied):
        services.launch_calibration(project=lm_project, user=annotator)
    assert prboost_settings(lm_project)["language_model"] == ""


@pytest.mark.parametrize(
    ("params", "field"),
    [({"bits": 3}, "bits"), ({"ceiling": 0.9}, "ceiling"), ({"ceiling": "x"}, "ceiling")],
)
def test_bad_parameters_get_clear_messages(params, field):
    with pytest.raises(ValidationError) as err:
        kinds.clean_params(params)
    assert field in err.value.message_dict
    with pytest.raises(ValidationError, match="Unknown"):
        kinds.clean_params({"rank": 3})
    assert kinds.clean_params({"bits": "4"}) == {"bits": 4, "ceiling": 1.04}


def test_the_job_runs_the_calibration_and_a_rerun_stores_nothing_twice(lm_project, admin_user):
    from apps.jobs.models import JobStatus
    from workers.base import run_job
    from workers.lorc_tasks import calibrate

    job = services.launch_calibration(project=lm_project, user=admin_user, params={"ceiling": 1.5})
    run_job(job.pk, calibrate)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    stored = CompressedLM.objects.get(job=job)
    assert stored.metrics["saved"] > 0
    ctx = SimpleNamespace(project_id=lm_project.pk, job_id=job.pk, params=job.params)
    assert calibrate(ctx)["compressed_lm"] == stored.pk  # a redelivery reuses the result
    assert CompressedLM.objects.count() == 1


def test_a_job_on_too_little_text_fails_with_a_message(project, admin_user, settings, tiny_lm_dir):
    from apps.jobs.models import JobStatus
    from workers.base import run_job
    from workers.lorc_tasks import calibrate

    settings.FRUGAL_CAUSAL_LM = tiny_lm_dir
    job = services.launch_calibration(project=project, user=admin_user)
    run_job(job.pk, calibrate)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "tokens of project text" in job.error
    assert not CompressedLM.objects.exists()


def test_the_kind_is_launchable_on_the_gpu_queue_and_has_its_task():
    from apps.jobs.kinds import resource_for_kind
    from workers.celery_app import TASK_MODULES, app

    assert resource_for_kind(kinds.CALIBRATE) == "gpu"
    assert "workers.lorc_tasks" in TASK_MODULES
    app.loader.import_default_modules()
    assert f"frugal.{kinds.CALIBRATE}" in app.tasks
