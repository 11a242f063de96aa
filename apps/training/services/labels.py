"""Labels from the rules (refresh) and from the self-trained final model (finalize): pool labels,
and predictions on dev (cross-fitted) and test, each with its margin.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from apps.datasets.models import Example, LabelSource, Split
from apps.jobs.artifacts import artifact_storage
from apps.jobs.models import Job
from apps.projects.models import Project
from apps.training.data import (
    prepare,
)
from apps.training.models import LabelSet
from apps.training.prboost_settings import (
    encoder_name,
    prboost_settings,
)
from apps.training.services.common import (
    FINAL_ARTIFACT,
    UPDATE_BATCH,
    Log,
    TrainingError,
    _json_safe,
    _null_log,
    _scores,
    latest_live_round,
)
from apps.training.services.state import (
    _current_loop,
    _new_loop,
    _sync_decisions,
    load_loop_state,
    save_loop_state,
)
from models.progress import Progress, ensure_progress, scaled

# --------------------------------------------------------------------------- labels
LABEL_FIELDS = ["label", "confidence", "margin", "label_source", "label_version"]


def label_margins(proba: np.ndarray) -> np.ndarray:
    """(n,) top-1 minus top-2 probability of each row of ``proba`` (n, K): 0 = a coin toss
    between the two likeliest labels, 1 = certain."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        return np.zeros(0)
    if proba.shape[1] < 2:
        return np.ones(proba.shape[0])
    top2 = np.sort(proba, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _write_labels(
    *,
    project: Project,
    ids: np.ndarray,
    proba: np.ndarray,
    source: str,
    version: str,
    clear_ids: np.ndarray | None = None,
    keep_sources: tuple[str, ...] = (LabelSource.GOLD,),
) -> int:
    """Set label/confidence/margin/source/version from ``proba`` (n, K) on the examples ``ids``
    (any split), except those whose current label_source is in ``keep_sources``; ``clear_ids``
    lose a label of this ``source``. Call inside a transaction. Returns how many rows were
    written."""
    written = 0
    keep = set(
        Example.objects.filter(project=project, label_source__in=keep_sources).values_list(
            "id", flat=True
        )
    )
    labels = proba.argmax(axis=1) if ids.size else np.zeros(0, dtype=np.int64)
    confidence = proba.max(axis=1) if ids.size else np.zeros(0)
    margins = label_margins(proba)
    batch = []
    for pk, label, conf, margin in zip(
        ids.tolist(), labels.tolist(), confidence.tolist(), margins.tolist()
    ):
        if pk in keep:
            continue
        batch.append(
            Example(
                pk=pk,
                label=int(label),
                confidence=float(conf),
                margin=float(margin),
                label_source=source,
                label_version=version,
            )
        )
        if len(batch) >= UPDATE_BATCH:
            Example.objects.bulk_update(batch, LABEL_FIELDS)
            written += len(batch)
            batch = []
    if batch:
        Example.objects.bulk_update(batch, LABEL_FIELDS)
        written += len(batch)
    if clear_ids is not None and clear_ids.size:
        for start in range(0, clear_ids.size, UPDATE_BATCH):
            chunk = clear_ids[start : start + UPDATE_BATCH].tolist()
            Example.objects.filter(project=project, pk__in=chunk, label_source=source).update(
                label=None,
                confidence=None,
                margin=None,
                label_source=LabelSource.NONE,
                label_version="",
            )
    return written


def refresh_labels(
    *,
    project: Project,
    overwrite_model_labels: bool = False,
    progress: Progress | None = None,
    log: Log = _null_log,
) -> dict:
    """Accepted rules (+ imported votes) → label model → pool labels with ``label_source``
    "rules" on the covered examples; uncovered examples lose their rule label. Finalized
    (model) labels are kept unless ``overwrite_model_labels``."""
    progress = ensure_progress(progress)
    prb = prboost_settings(project)
    prepared = prepare(project, prb, scaled(progress, 0.0, 0.5))
    previous = latest_live_round(project=project)
    loop = load_loop_state(previous.state_path) if previous else _new_loop(prepared, prb)
    if loop.config.n_classes != prepared.data.n_classes:
        raise TrainingError("The project's labels changed since the last round.")
    _sync_decisions(loop, project=project, n_classes=prepared.data.n_classes)
    if loop.n_seed_votes and prepared.data.pool_votes is None:
        loop.n_seed_votes = 0
    data = prepared.loop_data(seed_votes=bool(loop.n_seed_votes))
    progress(0.6, f"Applying {len(loop.rules)} rules")
    L = loop.label_matrix(data)
    progress(0.75, "Fitting the label model")
    covered, soft = loop.soft_labels(data, loop.round, L)
    pool_ids = prepared.data.pool_ids
    uncovered = np.setdiff1d(np.arange(pool_ids.size), covered)
    keep = (LabelSource.GOLD,) if overwrite_model_labels else (LabelSource.GOLD, LabelSource.MODEL)
    progress(0.85, "Writing labels")
    with transaction.atomic():
        written = _write_labels(
            project=project,
            ids=pool_ids[covered],
            proba=soft if covered.size else np.zeros((0, prepared.data.n_classes)),
            source=LabelSource.RULES,
            version="",
            clear_ids=pool_ids[uncovered],
            keep_sources=keep,
        )
    n_rules = len(loop.rules) + loop.n_seed_votes
    log(f"{covered.size} of {pool_ids.size} pool examples covered; {written} labels written.")
    summary = f"{written:,} labels written."
    if written == 0:
        reason = _nothing_written_reason(
            project=project, n_rules=n_rules, covered_ids=pool_ids[covered], keep=keep
        )
        summary = f"0 labels written: {reason}"
        log(summary)
    progress(1.0, "Labels refreshed")
    return {
        "rules": n_rules,
        "covered": int(covered.size),
        "pool": int(pool_ids.size),
        "written": written,
        "summary": summary,
    }


def _nothing_written_reason(
    *, project: Project, n_rules: int, covered_ids: np.ndarray, keep: tuple[str, ...]
) -> str:
    """Why a label refresh wrote no label, in words for the job page."""
    if n_rules == 0:
        return (
            "there are no accepted rules and no imported rule votes; accept rules in review first."
        )
    if covered_ids.size == 0:
        return "the accepted rules cover no pool example."
    covered = set(covered_ids.tolist())
    kept = dict.fromkeys(keep, 0)
    for pk, source in Example.objects.filter(
        project=project, split=Split.POOL, label_source__in=keep
    ).values_list("id", "label_source"):
        if pk in covered:
            kept[source] += 1
    n_model, n_gold = kept.get(LabelSource.MODEL, 0), kept.get(LabelSource.GOLD, 0)
    if n_model and n_gold:
        return (
            f"every covered pool example already has a gold label ({n_gold:,}) or a finalized "
            f"model label ({n_model:,}), which are kept; tick “overwrite model labels” to "
            "replace the model labels."
        )
    if n_model:
        return (
            "every covered pool example already has a finalized model label, which is kept; "
            "tick “overwrite model labels” to replace them."
        )
    return "every covered pool example already has a gold label, which is never overwritten."


def finalize(
    *,
    project: Project,
    job: Job | None = None,
    progress: Progress | None = None,
    log: Log = _null_log,
) -> LabelSet:
    """Self-train the final model from the latest round's ensemble and write its pool labels
    (``label_source="model"``, ``label_version="prboost round N"``). The rounds' state is not
    changed: more rounds can follow, and a later finalize replaces these labels."""
    from models.prboost.loop import LoopError

    progress = ensure_progress(progress)
    prb = prboost_settings(project)
    previous = latest_live_round(project=project)
    if previous is None:
        raise TrainingError("Run a boosting round before finalizing.")
    prepared = prepare(project, prb, scaled(progress, 0.0, 0.3))
    loop, previous, note = _current_loop(prepared, prb, project)
    if note:
        log(note)
    _sync_decisions(loop, project=project, n_classes=prepared.data.n_classes)
    data = prepared.loop_data(seed_votes=bool(loop.n_seed_votes))
    loop.config.final_model = "finetune" if prb["end_model"] == "finetune" else "head"
    loop.config.finetune_model = encoder_name(prb)
    try:
        final = loop.finalize(data, progress=scaled(progress, 0.3, 0.9))
    except LoopError as exc:
        raise TrainingError(str(exc)) from exc
    K = prepared.data.n_classes
    features, split = prepared.features, prepared.data
    # Predictions that reach dev and test rows never come from a model that trained on the
    # row's label: test labels are never trained on; dev is cross-fitted (one self-trained
    # model per dev fold, none of whose parts saw the fold: see PRBoostLoop.crossfit_dev_proba).
    test_proba = (
        final.predict_proba(features.test_X, split.test) if len(split.test) else np.zeros((0, K))
    )
    dev_proba = loop.crossfit_dev_proba(data, progress=scaled(progress, 0.9, 0.97))
    # dev/test rows without a gold label: no model saw a label of theirs, the final one predicts
    # them (the disagreements view's "unsure, no gold" half)
    unlabeled_proba = np.zeros((0, K))
    if split.unlabeled is not None and features.unlabeled_X is not None:
        unlabeled_proba = final.predict_proba(features.unlabeled_X, split.unlabeled)
    test = (
        _scores(split.test.labels, test_proba, K)
        if len(split.test)
        else {"accuracy": None, "f1": None}
    )
    dev = _scores(split.dev.labels, dev_proba, K)  # honest: cross-fitted
    version = f"prboost round {previous.number}"
    progress(0.97, "Writing labels")
    storage = artifact_storage()
    saved_path = None
    try:
        with transaction.atomic():
            artifact = save_loop_state(
                loop,
                project=project,
                job=job,
                name=f"final-round-{previous.number}.tar",
                kind=FINAL_ARTIFACT,
                dev_ids=prepared.data.dev_ids,
            )
            saved_path = artifact.path
            written = _write_labels(
                project=project,
                ids=prepared.data.pool_ids,
                proba=final.pool_proba,
                source=LabelSource.MODEL,
                version=version,
            )
            predicted = {
                Split.DEV: _write_labels(
                    project=project,
                    ids=prepared.data.dev_ids,
                    proba=dev_proba,
                    source=LabelSource.MODEL,
                    version=f"{version} (cross-fitted)",
                ),
                Split.TEST: _write_labels(
                    project=project,
                    ids=prepared.data.test_ids,
                    proba=test_proba,
                    source=LabelSource.MODEL,
                    version=version,
                ),
                "unlabeled": _write_labels(
                    project=project,
                    ids=prepared.data.unlabeled_ids[: unlabeled_proba.shape[0]],
                    proba=unlabeled_proba,
                    source=LabelSource.MODEL,
                    version=version,
                ),
            }
            label_set = LabelSet.objects.create(
                project=project,
                round=previous,
                job=job,
                version=version,
                n_labeled=written,
                state_path=artifact.path,
                metrics=_json_safe(
                    {
                        "test_accuracy": test["accuracy"],
                        "test_f1": test["f1"],
                        "dev_accuracy": dev["accuracy"],  # cross-fitted
                        "dev_f1": dev["f1"],
                        "dev_predicted": predicted[Split.DEV],
                        "test_predicted": predicted[Split.TEST],
                        "unlabeled_predicted": predicted["unlabeled"],
                        "self_training_kept": int(final.kept.size),
                        "mean_confidence": float(final.pool_confidence.mean())
                        if final.pool_confidence.size
                        else None,
                    }
                ),
            )
    except BaseException:
        if saved_path:
            storage.delete(saved_path)
        raise
    log(
        f"Finalized {written} pool labels as '{version}'; predictions on "
        f"{predicted[Split.DEV]} dev (cross-fitted), {predicted[Split.TEST]} test and "
        f"{predicted['unlabeled']} dev/test examples without a gold label."
    )
    progress(1.0, "Labels finalized")
    return label_set


def latest_label_set(*, project: Project) -> LabelSet | None:
    return LabelSet.objects.filter(project=project).order_by("-created_at", "-id").first()
