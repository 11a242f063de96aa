"""The distillation service in-process: teacher → ε → students → the serving student."""

import tarfile

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.distill import kinds, services
from apps.distill.models import DistillRun, Prediction, Student
from workers.base import JobCancelled

pytestmark = pytest.mark.django_db


def test_a_run_trains_one_student_per_loss_and_serves_the_best_on_dev(spam_project, fast_params):
    lines = []
    run = services.run_distillation(project=spam_project, params=fast_params, log=lines.append)
    students = list(run.students.all())
    assert [s.loss for s in students] == ["ce", "kd", "ls", "ptloss"]
    serving = services.serving_student(project=spam_project)
    assert serving.loss == run.summary["chosen"]
    best_dev = max(s.metrics["dev_accuracy"] for s in students)
    assert serving.metrics["dev_accuracy"] == best_dev
    for s in students:
        assert {"dev_accuracy", "test_accuracy", "params", "size_bytes", "examples_per_s"} <= set(
            s.metrics
        )
        assert s.metrics["examples_per_s"] > 0
    assert run.summary["teacher"]["out_of_sample"] is True
    assert run.summary["selection"]["n_candidates"] == 4
    # every example of the project carries the serving student's prediction
    assert Prediction.objects.filter(project=spam_project).count() == spam_project.examples.count()
    assert not Prediction.objects.exclude(student=serving).exists()
    assert any("cross-fitted" in line for line in lines)
    # trained on the worker's device (a GPU when it has one), measured and stored from the CPU
    import torch

    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"Models train on {where}." in lines


def test_the_student_folder_reloads_with_transformers_alone_and_predicts_the_same(
    spam_project, fast_params, tmp_path, settings
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    services.run_distillation(project=spam_project, params={**fast_params, "losses": ["kd"]})
    student = services.serving_student(project=spam_project)
    folder = tmp_path / "download"
    with (
        services.artifact_storage().open(student.artifact.path, "rb") as f,
        tarfile.open(fileobj=f) as tar,
    ):
        tar.extractall(folder, filter="data")
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["free money click here", "nice guitar solo", "win a prize"]
    import torch

    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=24, return_tensors="pt")
        probs = torch.softmax(model(**enc).logits, -1).numpy()
    settings.FRUGAL_DISTILL_QUANTIZE = False
    served = services.predict(project=spam_project, texts=texts)
    got = np.array([p["probabilities"] for p in served["predictions"]])
    np.testing.assert_allclose(got, probs, atol=1e-5)
    settings.FRUGAL_DISTILL_QUANTIZE = True  # the default on CPU: int8 Linear layers
    quantized = services.predict(project=spam_project, texts=texts)
    got = np.array([p["probabilities"] for p in quantized["predictions"]])
    np.testing.assert_allclose(got, probs, atol=2e-2)
    assert model.config.id2label == {0: "HAM", 1: "SPAM"}
    assert served["labels"] == ["HAM", "SPAM"]


def test_a_second_run_replaces_the_serving_student_and_its_predictions(spam_project, fast_params):
    first = services.run_distillation(
        project=spam_project, params={**fast_params, "losses": ["kd"]}
    )
    second = services.run_distillation(
        project=spam_project, params={**fast_params, "losses": ["ce"]}
    )
    serving = Student.objects.get(project=spam_project, is_serving=True)
    assert serving.run == second
    assert not first.students.filter(is_serving=True).exists()
    assert set(Prediction.objects.values_list("student", flat=True)) == {serving.pk}


def test_a_cancelled_run_leaves_the_previous_serving_student(spam_project, fast_params):
    services.run_distillation(project=spam_project, params={**fast_params, "losses": ["kd"]})
    before = services.serving_student(project=spam_project)
    predictions = list(Prediction.objects.values_list("example", "label", "student"))
    calls = {"n": 0}

    def cancel_late():
        calls["n"] += 1
        if calls["n"] > 12:  # well into the students' training
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        services.run_distillation(
            project=spam_project, params=fast_params, check_cancelled=cancel_late
        )
    assert DistillRun.objects.count() == 1
    assert services.serving_student(project=spam_project) == before
    assert list(Prediction.objects.values_list("example", "label", "student")) == predictions
    assert Student.objects.count() == 1


def test_the_encoder_teacher_needs_labeled_pool_rows(spam_project, fast_params):
    spam_project.examples.filter(split="pool").update(label=None, label_source="")
    with pytest.raises(services.DistillError, match="labeled pool rows"):
        services.run_distillation(project=spam_project, params=fast_params)
    assert not DistillRun.objects.exists()


def test_the_prboost_teacher_needs_a_finalized_model(spam_project, fast_params):
    with pytest.raises(services.DistillError, match="finalize"):
        services.run_distillation(
            project=spam_project, params={**fast_params, "teacher": "prboost"}
        )


def test_params_are_validated_with_a_message_per_field():
    with pytest.raises(ValidationError) as exc:
        kinds.clean_params({"layers": 0, "losses": ["kd", "mse"], "teacher": "gpt"})
    errors = exc.value.message_dict
    assert set(errors) == {"layers", "losses", "teacher"}
    with pytest.raises(ValidationError, match="Unknown parameter"):
        kinds.clean_params({"lr": 1})
    with pytest.raises(ValidationError):
        kinds.clean_params({"student": "hub"})  # a hub student needs a model name
    assert kinds.clean_params({"losses": "kd,ptloss"})["losses"] == ["kd", "ptloss"]


def test_only_admins_launch_and_a_dev_set_is_needed(spam_project, admin_user, annotator):
    with pytest.raises(PermissionDenied):
        services.launch_distillation(project=spam_project, user=annotator)
    spam_project.examples.filter(split="dev").update(gold_label=None)
    with pytest.raises(ValidationError, match="dev"):
        services.launch_distillation(project=spam_project, user=admin_user)
