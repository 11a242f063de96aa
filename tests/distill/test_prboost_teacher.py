"""The finalized PRBoost model as the teacher (its in-sample probabilities), end to end."""

import pytest

from apps.distill import services
from apps.distill.models import Prediction
from apps.training import services as training
from tests.training.conftest import load_youtube_subset

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.needs_data]


def test_the_finalized_prboost_model_teaches_the_students(project, data_dir, fast_params):
    load_youtube_subset(project, data_dir, pool=120, dev=40, test=40)
    project.settings = {"prboost": {"proposer": "ngram", "candidates_per_round": 4}}
    project.save(update_fields=["settings"])
    training.run_round(project=project)
    training.finalize(project=project)
    lines = []
    run = services.run_distillation(
        project=project,
        params={**fast_params, "teacher": "prboost", "losses": ["kd", "ptloss"]},
        log=lines.append,
    )
    teacher = run.summary["teacher"]
    assert teacher["kind"] == "prboost" and teacher["out_of_sample"] is False
    assert teacher["dev_accuracy"] > 0.7  # the PRBoost model fits its own dev set
    assert any("in-sample" in line for line in lines)
    assert Prediction.objects.filter(project=project).count() == 200
