"""Boosting rounds through the services, in process, on a small real data set (wrench-youtube)."""

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.datasets.models import Example
from apps.jobs.models import Artifact, Job, JobStatus
from apps.rules.models import Rule, RuleStatus
from apps.rules.services import decide
from apps.training import kinds, services
from apps.training.models import LabelSet, Round, RoundStatus

pytestmark = [pytest.mark.django_db, pytest.mark.needs_data]


def _no_seed_votes(project):
    project.settings["prboost"]["use_imported_votes"] = False
    project.save(update_fields=["settings"])


def _labels(project):
    return sorted(
        Example.objects.filter(project=project).values_list(
            "id", "label", "confidence", "label_source", "label_version"
        )
    )


def test_first_round_trains_on_dev_and_stores_ranked_suggestions(youtube_project):
    _no_seed_votes(youtube_project)
    rnd = services.run_round(project=youtube_project)
    assert rnd.number == 1
    assert rnd.status == RoundStatus.REVIEW
    assert rnd.alpha is not None and rnd.alpha > 0
    assert services.latest_live_round(project=youtube_project) == rnd
    m = rnd.metrics
    for key in ("dev_accuracy", "test_accuracy", "test_f1", "coverage", "candidates_proposed"):
        assert m[key] is not None, key
    assert 0.5 < m["test_accuracy"] <= 1.0
    assert m["rules_pending"] == m["suggestions_stored"] > 0
    assert set(m["seconds"]) >= {"rules_and_label_model", "learner", "propose", "save"}
    stored = Rule.objects.filter(project=youtube_project, round_number=1)
    assert stored.count() == m["suggestions_stored"]
    first = stored.order_by("-score").first()
    assert first.status == RuleStatus.SUGGESTED
    assert first.evidence["source_example_id"] in set(
        Example.objects.filter(project=youtube_project, split="dev").values_list("id", flat=True)
    )
    assert first.evidence["sample_example_ids"]
    assert Artifact.objects.filter(project=youtube_project, path=rnd.state_path).exists()


def test_accepted_suggestions_join_the_rules_of_the_next_round(youtube_project, admin_user):
    _no_seed_votes(youtube_project)
    services.run_round(project=youtube_project)
    best = Rule.objects.filter(project=youtube_project, round_number=1).order_by("-score")[0]
    decide(rule=best, user=admin_user, action="accept", expected_version=best.version)
    second = services.run_round(project=youtube_project)
    assert second.number == 2
    assert second.metrics["n_rules"] == 1
    assert second.metrics["coverage"] > 0
    assert Round.objects.get(project=youtube_project, number=1).status == RoundStatus.COMPLETE
    loop = services.load_loop_state(second.state_path)
    assert loop.round == 2
    assert [r.to_dict() for r in loop.accepted] == [best.definition]


def test_a_failure_mid_round_leaves_previous_state_and_labels_intact_and_a_rerun_succeeds(
    youtube_project, monkeypatch
):
    _no_seed_votes(youtube_project)
    first = services.run_round(project=youtube_project)
    services.refresh_labels(project=youtube_project)
    labels = _labels(youtube_project)
    rules = sorted(Rule.objects.filter(project=youtube_project).values_list("id", "status"))
    artifacts = list(Artifact.objects.order_by("id").values_list("id", "path"))

    def broken(**kwargs):
        raise RuntimeError("disk full while storing suggestions")

    monkeypatch.setattr("apps.rules.services.store_suggestions", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        services.run_round(project=youtube_project)
    failed = Round.objects.get(project=youtube_project, status=RoundStatus.FAILED)
    assert failed.number == 2 and "disk full" in failed.error
    assert services.latest_live_round(project=youtube_project) == first
    assert _labels(youtube_project) == labels
    assert sorted(Rule.objects.filter(project=youtube_project).values_list("id", "status")) == rules
    assert list(Artifact.objects.order_by("id").values_list("id", "path")) == artifacts
    storage = services.artifact_storage()
    state_dir = f"projects/{youtube_project.pk}/{services.STATE_ARTIFACT}"
    assert len(storage.listdir(state_dir)[1]) == 1  # the failed round's file was removed

    monkeypatch.undo()
    again = services.run_round(project=youtube_project)
    assert again.number == 2 and again.status == RoundStatus.REVIEW
    assert services.latest_live_round(project=youtube_project) == again


def test_cancel_mid_round_leaves_the_previous_state_intact(
    youtube_project, admin_user, monkeypatch
):
    from apps.jobs import runner
    from apps.jobs.services import request_cancel
    from workers import prboost_tasks

    _no_seed_votes(youtube_project)
    first = services.run_round(project=youtube_project)
    rules_before = Rule.objects.filter(project=youtube_project).count()
    monkeypatch.setattr(runner, "WRITE_MIN_INTERVAL_S", 0.0)  # see the cancel at the next step
    job = Job.objects.create(
        project=youtube_project, kind=kinds.RUN_ROUND, launched_by=admin_user, params={}
    )
    from apps.training.services import rounds

    real_sync = rounds._sync_decisions

    def sync_then_cancel(loop, **kwargs):  # the admin presses cancel while the round runs
        request_cancel(job=Job.objects.get(pk=job.pk), user=admin_user)
        return real_sync(loop, **kwargs)

    monkeypatch.setattr(rounds, "_sync_decisions", sync_then_cancel)
    runner.run_job(job.pk, prboost_tasks.run_round)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    cancelled = Round.objects.get(project=youtube_project, job=job)
    assert cancelled.status == RoundStatus.CANCELLED
    assert services.latest_live_round(project=youtube_project) == first
    assert Rule.objects.filter(project=youtube_project).count() == rules_before
    assert not Rule.objects.filter(project=youtube_project, round_number=2).exists()


def test_finalize_writes_model_labels_with_the_round_that_made_them(youtube_project):
    _no_seed_votes(youtube_project)
    services.run_round(project=youtube_project)
    label_set = services.finalize(project=youtube_project)
    assert label_set.version == "prboost round 1"
    pool = Example.objects.filter(project=youtube_project, split="pool")
    assert label_set.n_labeled == pool.count()
    assert set(pool.values_list("label_source", "label_version").distinct()) == {
        ("model", "prboost round 1")
    }
    confidences = np.array(pool.values_list("confidence", flat=True), dtype=float)
    assert np.all((confidences >= 0.5) & (confidences <= 1.0))
    assert LabelSet.objects.filter(project=youtube_project).count() == 1
    # The rounds' state is unchanged: another round can follow.
    assert services.run_round(project=youtube_project).number == 2


def test_finalize_predicts_dev_cross_fitted_and_test_with_margins(youtube_project, monkeypatch):
    """Dev rows get the cross-fitted predictions (never the final model's own, which trained on
    every dev label), test rows the final model's; every written label has its margin."""
    from models.prboost.loop import PRBoostLoop

    _no_seed_votes(youtube_project)
    unlabeled = [
        Example.objects.create(
            project=youtube_project, external_id=f"no-gold-{split}", text=text, split=split
        )
        for split, text in (("dev", "check out my channel please"), ("test", "nice song"))
    ]
    services.run_round(project=youtube_project)
    seen = {}
    real = PRBoostLoop.crossfit_dev_proba

    def crossfit(loop, data, progress=None):
        seen["proba"] = real(loop, data, progress=progress)
        seen["final_on_dev"] = loop.final.predict_proba(data.dev_X, data.dev)
        return seen["proba"]

    monkeypatch.setattr(PRBoostLoop, "crossfit_dev_proba", crossfit)
    label_set = services.finalize(project=youtube_project)
    dev = list(
        Example.objects.filter(
            project=youtube_project, split="dev", gold_label__isnull=False
        ).order_by("id")
    )
    assert {(e.label_source, e.label_version) for e in dev} == {
        ("model", "prboost round 1 (cross-fitted)")
    }
    proba = seen["proba"]
    assert [e.label for e in dev] == proba.argmax(axis=1).tolist()
    np.testing.assert_allclose([e.confidence for e in dev], proba.max(axis=1))
    np.testing.assert_allclose(
        [e.margin for e in dev], np.abs(proba[:, 1] - proba[:, 0]), atol=1e-9
    )
    # the written dev predictions are not the final model's in-sample ones
    assert not np.allclose(proba, seen["final_on_dev"])
    honest = float(np.mean(proba.argmax(axis=1) == [e.gold_label for e in dev]))
    assert label_set.metrics["dev_accuracy"] == pytest.approx(honest)
    assert label_set.metrics["dev_predicted"] == 60 and label_set.metrics["test_predicted"] == 60
    test = Example.objects.filter(project=youtube_project, split="test")
    assert set(test.values_list("label_source", flat=True)) == {"model"}
    assert test.filter(gold_label__isnull=False).count() == 60
    assert not test.filter(margin__isnull=True).exists()
    pool_margins = np.array(
        Example.objects.filter(project=youtube_project, split="pool").values_list(
            "margin", flat=True
        ),
        dtype=float,
    )
    assert np.all((pool_margins >= 0) & (pool_margins <= 1))
    # dev/test rows without gold are predicted too (no model saw a label of theirs)
    assert label_set.metrics["unlabeled_predicted"] == 2
    for example in unlabeled:
        example.refresh_from_db()
        assert example.label_source == "model" and example.margin is not None
        assert example.label in (0, 1) and example.gold_label is None
    # "where it disagrees" now has dev/test rows whose prediction differs from gold
    from apps.datasets.selectors import disagreements_for_project

    wrong = [e for e in dev if e.label != e.gold_label]
    listed = set(disagreements_for_project(project=youtube_project).values_list("id", flat=True))
    assert {e.pk for e in wrong} <= listed


def test_margins_measure_the_gap_between_the_two_likeliest_labels():
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]])
    np.testing.assert_allclose(services.label_margins(proba), [0.2, 0.7, 0.01])
    assert services.label_margins(np.zeros((0, 3))).shape == (0,)


def test_refresh_labels_labels_the_covered_pool_and_keeps_finalized_labels(youtube_project):
    rnd = services.run_round(project=youtube_project)  # with the 10 imported rule votes as seeds
    assert rnd.metrics["seed_votes"] == 10
    from apps.rules import selectors as rule_selectors

    assert len(rule_selectors.seed_rules(project=youtube_project)) == 10
    assert rule_selectors.seed_rules_use(project=youtube_project) == (
        "Used as seed rules by the rounds up to round 1."
    )
    result = services.refresh_labels(project=youtube_project)
    pool = Example.objects.filter(project=youtube_project, split="pool")
    assert 0 < result["covered"] <= pool.count()
    assert pool.filter(label_source="rules").count() == result["covered"]
    assert result["summary"] == f"{result['written']:,} labels written."
    services.finalize(project=youtube_project)
    kept = services.refresh_labels(project=youtube_project)
    assert not pool.filter(label_source="rules").exists()
    # Nothing written, and the job says why and how to change it.
    assert kept["written"] == 0
    assert "already has a finalized model label" in kept["summary"]
    assert "overwrite model labels" in kept["summary"]
    services.refresh_labels(project=youtube_project, overwrite_model_labels=True)
    assert pool.filter(label_source="rules").count() == result["covered"]


def test_refresh_labels_reports_progress_while_loading_examples(youtube_project, monkeypatch):
    from apps.training import data as training_data

    monkeypatch.setattr(training_data, "LOAD_CHUNK", 100)
    messages = []
    services.refresh_labels(
        project=youtube_project, progress=lambda frac, msg="": messages.append((frac, msg))
    )
    loading = [(f, m) for f, m in messages if m.startswith("Loading examples (")]
    assert [m for _, m in loading] == [
        "Loading examples (100 of 360)",
        "Loading examples (200 of 360)",
        "Loading examples (300 of 360)",
    ]
    fracs = [f for f, _ in loading]
    assert fracs == sorted(fracs) and 0 < fracs[0] < fracs[-1] < 0.05


def test_refresh_labels_without_rules_says_so(youtube_project):
    _no_seed_votes(youtube_project)
    result = services.refresh_labels(project=youtube_project)
    assert result["written"] == 0
    assert "no accepted rules" in result["summary"]


def test_one_training_job_at_a_time_and_only_admins_launch(youtube_project, annotator, admin_user):
    with pytest.raises(PermissionDenied):
        services.launch_training_job(project=youtube_project, user=annotator, kind=kinds.RUN_ROUND)
    with pytest.raises(ValidationError, match="before finalizing"):
        services.launch_training_job(project=youtube_project, user=admin_user, kind=kinds.FINALIZE)
    job = services.launch_training_job(
        project=youtube_project, user=admin_user, kind=kinds.WARM_CACHE
    )
    assert job.status == JobStatus.QUEUED and job.queue == "cpu"
    with pytest.raises(ValidationError, match=f"Job #{job.pk}"):
        services.launch_training_job(project=youtube_project, user=admin_user, kind=kinds.RUN_ROUND)


def test_the_next_round_starts_by_itself_when_review_is_complete(youtube_project, admin_user):
    _no_seed_votes(youtube_project)
    services.update_prboost_settings(
        project=youtube_project, user=admin_user, data={"auto_next_round": True}
    )
    services.run_round(project=youtube_project)
    assert services.maybe_start_next_round(project=youtube_project) is None  # review not done
    for rule in Rule.objects.filter(project=youtube_project, round_number=1):
        decide(rule=rule, user=admin_user, action="reject", expected_version=rule.version)
    job = services.maybe_start_next_round(project=youtube_project)
    assert job is not None and job.kind == kinds.RUN_ROUND and job.launched_by is None
    assert Round.objects.get(project=youtube_project, number=1).status == RoundStatus.COMPLETE
    assert services.maybe_start_next_round(project=youtube_project) is None  # one at a time


def test_warm_cache_makes_the_round_read_embeddings_from_the_cache(youtube_project):
    result = services.warm_cache(project=youtube_project)
    assert result["examples"] == 360
    messages = []
    services.run_round(project=youtube_project, progress=lambda f, m: messages.append(m))
    assert any("embeddings from cache" in m for m in messages)


def test_gold_examples_added_to_dev_between_rounds_join_the_boosting_weights(youtube_project):
    _no_seed_votes(youtube_project)
    first = services.run_round(project=youtube_project)
    before = services.load_loop_state(first.state_path).weights
    moved = Example.objects.filter(project=youtube_project, split="pool").order_by("id")[:3]
    Example.objects.filter(pk__in=[e.pk for e in moved]).update(split="dev", gold_label=1)
    messages = []
    second = services.run_round(project=youtube_project, log=messages.append)
    assert "3 gold examples added, 0 removed" in " ".join(messages)
    weights = services.load_loop_state(second.state_path).weights
    assert weights.size == before.size + 3
    assert weights.sum() == pytest.approx(1.0)
    assert second.metrics["n_dev"] == 63


def test_end_model_setting_picks_the_features_and_a_run_keeps_its_own(youtube_project):
    import scipy.sparse as sp

    from apps.training.data import compute_features, load_project_data
    from apps.training.prboost_settings import prboost_settings

    _no_seed_votes(youtube_project)
    settings = youtube_project.settings
    settings["prboost"]["end_model"] = "tfidf"
    youtube_project.save(update_fields=["settings"])
    data = load_project_data(youtube_project)
    features = compute_features(data, prb=prboost_settings(youtube_project))
    assert features.kind == "tfidf" and sp.issparse(features.pool_X)
    auto = compute_features(data, prb={**prboost_settings(youtube_project), "end_model": "auto"})
    assert auto.kind in ("encoder", "tfidf")  # chosen by cross-validation inside dev

    first = services.run_round(project=youtube_project)
    assert services.load_loop_state(first.state_path).config.features == "tfidf"
    settings["prboost"]["end_model"] = "encoder"  # changed mid-run: the run keeps TF-IDF
    youtube_project.save(update_fields=["settings"])
    messages = []
    second = services.run_round(project=youtube_project, log=messages.append)
    assert "keeps its tfidf features" in " ".join(messages)
    assert services.load_loop_state(second.state_path).config.features == "tfidf"
    labels = services.finalize(project=youtube_project)
    assert labels is not None
