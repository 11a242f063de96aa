"""Weight runs store per-pair results only at the end (a killed run leaves the previous weights);
re-judgements move pairs into the next run's validation set or out of training; pairwise
judgements are stored in the pair's terms whatever side they were shown on."""

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from apps.alignment import selectors, services
from apps.alignment.models import Choice, PairJudgement, PreferencePair, WeightRun
from tests.alignment.conftest import make_pairs

pytestmark = pytest.mark.django_db

FAST = {
    "weights": "features",
    "method": "penalty",
    "stage2": True,
    "reward_model": "head",
    "members": 3,
}


@pytest.fixture(autouse=True)
def fast_dorm(monkeypatch):
    """Few epochs and iterations: the app's behaviour, not the learning, is under test here."""
    real = services.dorm_config

    def quick(**kwargs):
        config = real(**kwargs)
        config.reward.epochs = 5
        config.refine.iterations = 8
        config.refine.eval_every = 2
        return config

    monkeypatch.setattr(services, "dorm_config", quick)


def weights_of(project) -> dict:
    return dict(PreferencePair.objects.filter(project=project).values_list("external_id", "weight"))


def test_compute_weights_stores_finite_weights_for_the_pool(pref_project, fake_encoder):
    make_pairs(pref_project, flip_every=5)
    out = services.compute_weights(project=pref_project, params=FAST)
    assert out["n_train"] == 40 and out["n_val"] == 12 and out["stage2"]
    pool = PreferencePair.objects.filter(project=pref_project, split="pool")
    for p in pool:
        for value in (p.weight, p.stage1_weight, p.margin, p.uncertainty, p.disagreement):
            assert value is not None and np.isfinite(value)
        assert 0 < p.weight <= 1 and 0 < p.stage1_weight <= 1
    assert not PreferencePair.objects.filter(
        project=pref_project, split="dev", weight__isnull=False
    ).exists()
    run = WeightRun.objects.get(project=pref_project)
    assert run.metrics["curve"][0]["iteration"] == 0
    # the flipped (mislabeled) pairs get lower weights on average
    flipped = [
        p.weight
        for p in pool
        if p.chosen.startswith(("Sure, here is how", "Steal", "Just lie", "Insult"))
    ]
    clean = [
        p.weight
        for p in pool
        if p.weight is not None
        and p.chosen.startswith(("I can't", "Here is", "Please", "Sure, here are"))
    ]
    assert flipped and np.mean(flipped) < np.mean(clean)


def test_a_run_killed_midway_leaves_the_previous_weights(pref_project, fake_encoder):
    make_pairs(pref_project, flip_every=5)
    services.compute_weights(project=pref_project, params=FAST)
    before = weights_of(pref_project)
    runs = WeightRun.objects.count()

    class Killed(Exception):
        pass

    calls = {"n": 0}

    def dies_in_stage_2(fraction, message):
        calls["n"] += 1
        if fraction > 0.7:  # well into the refinement
            raise Killed

    with pytest.raises(Killed):
        services.compute_weights(
            project=pref_project, params={**FAST, "weights": "free"}, progress=dies_in_stage_2
        )
    assert calls["n"] > 1
    assert weights_of(pref_project) == before
    assert WeightRun.objects.count() == runs


def test_too_few_pairs_is_a_clear_error(pref_project, fake_encoder):
    make_pairs(pref_project, pool=5, dev=0, test=0)
    with pytest.raises(ValidationError, match="at least 20 active pool pairs"):
        services.compute_weights(project=pref_project, params=FAST)


def test_without_dev_pairs_stage_1_only(pref_project, fake_encoder):
    make_pairs(pref_project, pool=30, dev=2, test=0)
    logs = []
    out = services.compute_weights(project=pref_project, params=FAST, log=logs.append)
    assert out["stage2"] is False
    assert any("stage 1 only" in line for line in logs)
    p = PreferencePair.objects.filter(project=pref_project, split="pool").first()
    assert p.weight == pytest.approx(p.stage1_weight)


def test_rejudged_pairs_join_the_next_runs_validation_or_leave_training(
    pref_project, fake_encoder, pref_admin
):
    make_pairs(pref_project, flip_every=5)
    services.compute_weights(project=pref_project, params=FAST)
    first = selectors.next_rejudge_pair(project=pref_project)
    low = list(selectors.weighted_pairs(project=pref_project)[:3])
    assert low[0] == first
    chosen, rejected = first.chosen, first.rejected
    services.rejudge(project=pref_project, pair_id=low[0].pk, user=pref_admin, decision="flip")
    services.rejudge(project=pref_project, pair_id=low[1].pk, user=pref_admin, decision="confirm")
    services.rejudge(project=pref_project, pair_id=low[2].pk, user=pref_admin, decision="discard")
    flipped = PreferencePair.objects.get(pk=low[0].pk)
    assert (flipped.chosen, flipped.rejected, flipped.split) == (rejected, chosen, "dev")
    assert PreferencePair.objects.get(pk=low[1].pk).split == "dev"
    assert PreferencePair.objects.get(pk=low[2].pk).status == "discarded"
    assert selectors.rejudge_counts(project=pref_project)["flip"] == 1
    with pytest.raises(ValidationError, match="no longer waiting"):
        services.rejudge(project=pref_project, pair_id=low[0].pk, user=pref_admin, decision="flip")

    seen = {}
    import models.dorm.pipeline as pipeline

    real = pipeline.compute_weights

    def spy(data, train_rows, val_rows, config, **kw):
        seen["n_train"], seen["n_val"] = len(train_rows), len(val_rows)
        return real(data, train_rows, val_rows, config, **kw)

    import pytest as _pytest

    mp = _pytest.MonkeyPatch()
    mp.setattr(pipeline, "compute_weights", spy)
    try:
        out = services.compute_weights(project=pref_project, params=FAST)
    finally:
        mp.undo()
    assert out["n_val"] == 14 and seen["n_val"] == 14  # 12 dev + the flipped + the confirmed
    assert out["n_train"] == 37 and seen["n_train"] == 37  # 40 − 2 moved − 1 discarded


def test_pairwise_judgements_are_stored_in_the_pairs_terms(
    pref_project, pairs, pref_admin, pref_annotator
):
    pair = pairs[0]
    for user in (pref_admin, pref_annotator):
        swapped = services.shown_swapped(user_id=user.pk, pair_id=pair.pk)
        assert swapped == services.shown_swapped(user_id=user.pk, pair_id=pair.pk)  # stable
        j = services.record_judgement(project=pref_project, pair_id=pair.pk, user=user, side="left")
        assert j.choice == (Choice.REJECTED if swapped else Choice.CHOSEN)
    # sides are spread: over many pairs each annotator sees chosen on both sides
    sides = {services.shown_swapped(user_id=pref_admin.pk, pair_id=p.pk) for p in pairs}
    assert sides == {True, False}
    assert services.undo_last_judgement(project=pref_project, user=pref_annotator) == pair
    assert PairJudgement.objects.filter(user=pref_annotator).count() == 0
    with pytest.raises(ValidationError):
        services.record_judgement(project=pref_project, pair_id=pair.pk, user=pref_admin, side="up")


def test_agreement_per_pair_and_annotator(pref_project, pairs, pref_admin, pref_annotator):
    for i, p in enumerate(pairs[:6]):
        PairJudgement.objects.create(pair=p, user=pref_admin, choice="chosen")
        PairJudgement.objects.create(
            pair=p, user=pref_annotator, choice="chosen" if i < 4 else "rejected"
        )
    data = selectors.agreement(project=pref_project)
    assert data["n_multi"] == 6
    assert [p["agreement"] for p in data["pairs"]] == [1, 1, 1, 1, 0.5, 0.5]
    by_user = {a["user"]: a for a in data["annotators"]}
    assert by_user["prefowner"]["agrees_with_label"] == 1.0
    assert by_user["annotator1"]["agrees_with_label"] == pytest.approx(4 / 6)
    assert data["mean_pairwise_kappa"] == pytest.approx(0.0)  # one annotator is constant


def test_reward_model_artifact_scores_texts(pref_project, fake_encoder):
    make_pairs(pref_project)
    out = services.train_reward_model(
        project=pref_project, params={"fraction": 0.5, "weighted": True, "reward_model": "head"}
    )
    assert out["n_train"] == 20 and out["dev_accuracy"] is not None
    artifact = selectors.latest_reward_model(project=pref_project)
    rewards = services.score(
        artifact=artifact,
        prompts=["Human: help?\n\nAssistant:"] * 2,
        responses=[
            "I can't help with that, it could hurt someone.",
            "Sure, here is how to hurt them.",
        ],
    )
    assert len(rewards) == 2 and rewards[0] > rewards[1]
    with pytest.raises(ValidationError, match="same length"):
        services.score(artifact=artifact, prompts=["a"], responses=[])
    with pytest.raises(ValidationError, match="At most"):
        services.score(artifact=artifact, prompts=["a"] * 300, responses=["b"] * 300)
    with pytest.raises(ValidationError, match="must be a string"):
        services.score(artifact=artifact, prompts=["a"], responses=[3])


def test_weight_runs_cache_features_in_the_shared_artifact_storage(
    pref_project, fake_encoder, settings, monkeypatch
):
    """With artifacts in object storage, the DORM feature pass is told to cache there (where a
    worker on another host finds it), not in a folder of this host."""
    import models.dorm.pipeline as pipeline
    from apps.jobs.artifacts import StorageCacheStore

    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    seen = []

    def recording(texts, **kwargs):
        seen.append(kwargs.get("cache_dir"))
        return fake_encoder(texts, **kwargs)

    monkeypatch.setattr(pipeline, "encode_texts", recording)
    make_pairs(pref_project)
    services.compute_weights(project=pref_project, params=FAST)
    assert seen and all(isinstance(where, StorageCacheStore) for where in seen)


def test_the_reward_model_trains_on_the_workers_gpu_when_it_has_one(
    pref_project, fake_encoder, monkeypatch
):
    """The train kind declares the gpu resource: the service asks for the worker's device (None =
    CUDA when visible), and the job's log says where it trained."""
    import torch

    import models.dorm.pipeline as pipeline

    asked = []
    real = pipeline.train_reward_model

    def recording(*args, **kwargs):
        asked.append(kwargs.get("device", "cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_reward_model", recording)
    make_pairs(pref_project)
    lines = []
    services.train_reward_model(
        project=pref_project, params={"reward_model": "head"}, log=lines.append
    )
    assert asked == [None]
    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert any(line.startswith(f"Trained on {where}") for line in lines), lines
