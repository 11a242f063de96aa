"""Writes of preference projects: weight runs and reward models (the jobs' logic), re-judgements,
pairwise judgements.

Jobs write their results at the end, in one transaction: a job that fails or is cancelled midway
leaves the previous weights (and models) exactly as they were.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.alignment.models import (
    Choice,
    Decision,
    PairJudgement,
    PairSplit,
    PairStatus,
    PreferencePair,
    Rejudgement,
    WeightRun,
)
from apps.jobs.artifacts import model_cache
from apps.projects.models import Role

REWARD_MODEL_KIND = "reward_model"
MIN_TRAIN_PAIRS = 20
MIN_VAL_PAIRS = 10
MAX_SCORE_ITEMS = 256
MAX_SCORE_CHARS = 20_000

Progress = Callable[[float, str], None]


def _noop(*_args) -> None:
    return None


def dorm_config(
    *,
    reward_model: str = "head",
    weights: str = "features",
    method: str = "penalty",
    stage2: bool = True,
    members: int = 5,
    seed: int = 0,
):
    """The DORM settings a job runs with (defaults: see bench/RESULTS-dorm.md)."""
    from models.dorm.bilevel import RefineConfig
    from models.dorm.pipeline import DormConfig, default_reward_config

    reward = default_reward_config(reward_model, seed=seed)
    return DormConfig(
        reward=reward,
        refine=RefineConfig(method=method, weights=weights, seed=seed),
        n_members=members,
        encoder=settings.FRUGAL_ENCODER or None,
        stage2=stage2,
        seed=seed,
    )


def _pair_set(pairs: list[PreferencePair]):
    from models.dorm.data import PairSet

    return PairSet(
        [p.prompt for p in pairs],
        [p.chosen for p in pairs],
        [p.rejected for p in pairs],
        [p.source for p in pairs],
        [p.external_id for p in pairs],
    )


def _training_pairs(project) -> tuple[list[PreferencePair], list[PreferencePair]]:
    base = PreferencePair.objects.filter(project=project, status=PairStatus.ACTIVE).order_by("id")
    return list(base.filter(split=PairSplit.POOL)), list(base.filter(split=PairSplit.DEV))


def compute_weights(
    *,
    project,
    job=None,
    params: dict,
    progress: Progress = _noop,
    log: Callable[[str], None] = _noop,
    check_cancelled: Callable[[], None] | None = None,
) -> dict:
    """Run DORM on the project's active pool pairs against its active dev pairs; store per-pair
    stage-1 weight, final weight, margin, uncertainty and disagreement, all at the end."""
    import torch

    from models.dorm.pipeline import compute_weights as run_dorm
    from models.dorm.pipeline import encode_pairs

    torch.set_num_threads(1)
    pool, dev = _training_pairs(project)
    if len(pool) < MIN_TRAIN_PAIRS:
        raise ValidationError(
            f"DORM needs at least {MIN_TRAIN_PAIRS} active pool pairs "
            f"(the project has {len(pool)})."
        )
    stage2 = bool(params.get("stage2", True))
    if stage2 and len(dev) < MIN_VAL_PAIRS:
        log(f"Only {len(dev)} dev pairs (need {MIN_VAL_PAIRS}): stage 1 only.")
        stage2 = False
    config = dorm_config(
        reward_model=params.get("reward_model", "head"),
        weights=params.get("weights", "features"),
        method=params.get("method", "penalty"),
        stage2=stage2,
        members=int(params.get("members", 5)),
    )
    log(f"{len(pool)} training pairs, {len(dev)} dev pairs; reward model {config.reward.kind}.")
    pairs = pool + dev
    data = encode_pairs(
        _pair_set(pairs),
        config,
        progress=lambda f, m: progress(0.2 * f, m),
        cache_dir=model_cache(),
    )
    train_rows = np.arange(len(pool))
    val_rows = np.arange(len(pool), len(pairs))
    lengths = (np.array([len(p.chosen) for p in pool]), np.array([len(p.rejected) for p in pool]))
    run = run_dorm(
        data,
        train_rows,
        val_rows,
        config,
        lengths=lengths,
        sources=[p.source for p in pool],
        progress=lambda f, m: progress(0.2 + 0.78 * f, m),
        check_cancelled=check_cancelled,
    )
    if check_cancelled:
        check_cancelled()
    for pair, s1, w, m, u, d in zip(
        pool, run.stage1_weight, run.weight, run.margin, run.uncertainty, run.disagreement
    ):
        pair.stage1_weight, pair.weight, pair.margin = float(s1), float(w), float(m)
        pair.uncertainty, pair.disagreement = float(u), float(d)
    metrics = {
        "n_train": len(pool),
        "n_val": len(dev),
        "stage2": stage2,
        "seconds": round(run.seconds, 2),
        "peak_mb": round(run.peak_mb, 1),
        "best_iteration": run.best_iteration,
        "degrees_of_freedom": run.degrees_of_freedom,
        "curve": run.curve,
        "mean_weight": float(np.mean(run.weight)),
    }
    with transaction.atomic():
        PreferencePair.objects.bulk_update(
            pool,
            ["stage1_weight", "weight", "margin", "uncertainty", "disagreement"],
            batch_size=1000,
        )
        WeightRun.objects.create(project=project, job=job, config=config.to_dict(), metrics=metrics)
    log(f"Stored weights of {len(pool)} pairs in {run.seconds:.1f} s.")
    progress(1.0, "weights stored")
    return {k: v for k, v in metrics.items() if k != "curve"}


def train_reward_model(
    *,
    project,
    job=None,
    params: dict,
    progress: Progress = _noop,
    log: Callable[[str], None] = _noop,
    check_cancelled: Callable[[], None] | None = None,
) -> dict:
    """Train the final reward model on the weighted pool (or its top-weighted fraction), measure
    it on dev and test, store it as an artifact."""
    import torch

    from apps.jobs.artifacts import save_artifact
    from models.dorm.pipeline import encode_pairs, save_reward_model, top_fraction
    from models.dorm.pipeline import train_reward_model as train
    from models.dorm.reward import accuracy

    torch.set_num_threads(1)
    base = PreferencePair.objects.filter(project=project, status=PairStatus.ACTIVE).order_by("id")
    pool = list(base.filter(split=PairSplit.POOL))
    evals = {s: list(base.filter(split=s)) for s in (PairSplit.DEV, PairSplit.TEST)}
    if len(pool) < MIN_TRAIN_PAIRS:
        raise ValidationError(
            f"Training needs at least {MIN_TRAIN_PAIRS} active pool pairs "
            f"(the project has {len(pool)})."
        )
    config = dorm_config(reward_model=params.get("reward_model", "head"))
    weights = np.array([p.weight if p.weight is not None else 1.0 for p in pool])
    fraction = float(params.get("fraction", 1.0))
    rows = np.arange(len(pool))
    if fraction < 1.0:
        rows = np.sort(top_fraction(weights, fraction))
    use_w = weights[rows] if params.get("weighted", True) else None
    everything = pool + evals[PairSplit.DEV] + evals[PairSplit.TEST]
    data = encode_pairs(
        _pair_set(everything),
        config,
        progress=lambda f, m: progress(0.3 * f, m),
        cache_dir=model_cache(),
    )
    log(
        f"Training on {len(rows)} of {len(pool)} pool pairs "
        f"({'weighted' if use_w is not None else 'uniform'})."
    )
    model = train(
        data,
        rows,
        config,
        weights=use_w,
        progress=lambda f, m: progress(0.3 + 0.65 * f, m),
        check_cancelled=check_cancelled,
        device=None,  # the worker's GPU when it has one: this kind declares the gpu resource
    )
    log(f"Trained on {model.device}.")
    n_dev = len(evals[PairSplit.DEV])
    dev_rows = np.arange(len(pool), len(pool) + n_dev)
    test_rows = np.arange(len(pool) + n_dev, len(everything))
    metrics = {
        "n_train": int(len(rows)),
        "fraction": fraction,
        "weighted": use_w is not None,
        "reward_model": config.reward.kind,
        "dev_accuracy": accuracy(model, data, dev_rows) if n_dev else None,
        "test_accuracy": accuracy(model, data, test_rows) if len(test_rows) else None,
    }
    if check_cancelled:
        check_cancelled()
    artifact = save_artifact(
        project=project,
        job=job,
        kind=REWARD_MODEL_KIND,
        name="reward-model.pt",
        fileobj_or_bytes=save_reward_model(model, config),
        metadata=metrics,
    )
    log(f"Stored the reward model (artifact {artifact.pk}).")
    progress(1.0, "reward model stored")
    return {**metrics, "artifact": artifact.pk}


def score(*, artifact, prompts: list, responses: list) -> list[float]:
    """Rewards for (prompt, response) pairs from a stored reward model; checks sizes."""
    from apps.jobs.artifacts import open_artifact
    from models.dorm.pipeline import load_reward_model, score_texts

    if not isinstance(prompts, list) or not isinstance(responses, list):
        raise ValidationError("'prompts' and 'responses' must be lists of strings.")
    if len(prompts) != len(responses):
        raise ValidationError(
            "'prompts' and 'responses' must have the same length "
            f"({len(prompts)} ≠ {len(responses)})."
        )
    if not prompts:
        raise ValidationError("Send at least one (prompt, response) pair.")
    if len(prompts) > MAX_SCORE_ITEMS:
        raise ValidationError(f"At most {MAX_SCORE_ITEMS} pairs per request (got {len(prompts)}).")
    for i, text in enumerate([*prompts, *responses]):
        if not isinstance(text, str):
            raise ValidationError(
                f"Item {i % len(prompts)}: every prompt and response must be a string."
            )
        if len(text) > MAX_SCORE_CHARS:
            raise ValidationError(
                f"Item {i % len(prompts)}: a text is over {MAX_SCORE_CHARS:,} characters."
            )
    with open_artifact(artifact) as f:
        model, config = load_reward_model(f.read())
    return [float(x) for x in score_texts(model, config, prompts, responses, cache_dir=None)]


# --------------------------------------------------------------------------- re-judgement
def rejudge(*, project, pair_id: int, user, decision: str) -> Rejudgement:
    """Confirm or flip (the pair joins the dev set: clean validation for the next run) or discard
    (it leaves training). Any member may re-judge; a pair is re-judged once."""
    if decision not in Decision.values:
        raise ValidationError(f"Unknown decision {decision!r} (confirm, flip or discard).")
    with transaction.atomic():
        pair = (
            PreferencePair.objects.select_for_update()
            .filter(project=project, pk=pair_id, status=PairStatus.ACTIVE, split=PairSplit.POOL)
            .first()
        )
        if pair is None:
            raise ValidationError("This pair is no longer waiting for a re-judgement.")
        rec = Rejudgement.objects.create(
            pair=pair, user=user, decision=decision, weight_at_decision=pair.weight
        )
        if decision == Decision.DISCARD:
            pair.status = PairStatus.DISCARDED
        else:
            if decision == Decision.FLIP:
                pair.chosen, pair.rejected = pair.rejected, pair.chosen
            pair.split = PairSplit.DEV
        pair.save(update_fields=["status", "split", "chosen", "rejected"])
    return rec


# --------------------------------------------------------------------------- pairwise annotation
def shown_swapped(*, user_id: int, pair_id: int) -> bool:
    """Whether ``chosen`` is shown on the right for this annotator: random per (user, pair) but
    stable across visits (position bias is spread evenly over annotators)."""
    digest = hashlib.blake2b(f"{user_id}:{pair_id}".encode(), digest_size=2).digest()
    return bool(digest[0] & 1)


SIDE_KEYS = ("left", "right", "tie", "skip")


def record_judgement(*, project, pair_id: int, user, side: str) -> PairJudgement:
    """Store an answer given on screen (left/right/tie/skip) in the pair's terms."""
    if side not in SIDE_KEYS:
        raise ValidationError(f"Unknown answer {side!r} (left, right, tie or skip).")
    pair = PreferencePair.objects.filter(project=project, pk=pair_id).first()
    if pair is None:
        raise ValidationError("No such pair in this project.")
    swapped = shown_swapped(user_id=user.pk, pair_id=pair.pk)
    if side in ("tie", "skip"):
        choice = side
    elif (side == "left") != swapped:
        choice = Choice.CHOSEN
    else:
        choice = Choice.REJECTED
    judgement, _ = PairJudgement.objects.update_or_create(
        pair=pair, user=user, defaults={"choice": choice, "swapped": swapped}
    )
    return judgement


def undo_last_judgement(*, project, user) -> PreferencePair | None:
    """Delete the user's latest judgement in the project; returns its pair (shown again)."""
    last = (
        PairJudgement.objects.filter(pair__project=project, user=user)
        .select_related("pair")
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        return None
    pair = last.pair
    last.delete()
    return pair


def require_admin(project) -> None:
    if getattr(project, "user_role", None) != Role.ADMIN:
        raise PermissionDenied("Only project admins can do this.")
