"""The PRBoost loop's state: saved to and loaded from artifact storage (with its dev rows' Example
ids), brought up to date with the people's decisions and a changed dev set.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from apps.jobs.artifacts import artifact_storage, save_artifact
from apps.jobs.models import Job
from apps.projects.models import Project
from apps.training.data import (
    compute_features,
)
from apps.training.services.common import LEARNER_C, TrainingError, latest_live_round

# --------------------------------------------------------------------------- loop state I/O
DEV_IDS_FILE = "frugal-dev-ids.npy"  # beside the loop's files: which Example each dev weight is


def save_loop_state(
    loop, *, project: Project, job: Job | None, name: str, kind: str, dev_ids: np.ndarray
):
    """Save the loop into artifact storage (a tar of its folder, plus the Example ids of its dev
    rows); returns the Artifact."""
    with tempfile.TemporaryDirectory(prefix="frugal-prboost-") as tmp:
        folder = Path(tmp) / "state"
        loop.save(folder)
        np.save(folder / DEV_IDS_FILE, np.asarray(dev_ids, dtype=np.int64))
        tar_path = Path(tmp) / "state.tar"
        with tarfile.open(tar_path, "w") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
        with open(tar_path, "rb") as handle:
            return save_artifact(
                project=project,
                job=job,
                kind=kind,
                name=name,
                fileobj_or_bytes=handle,
                metadata={"rounds": loop.round, "format": "tar of PRBoostLoop.save"},
            )


def load_state(path: str):
    """(the PRBoostLoop saved at ``path`` in artifact storage, its dev rows' Example ids)."""
    from models.prboost.loop import PRBoostLoop

    with tempfile.TemporaryDirectory(prefix="frugal-prboost-") as tmp:
        tar_path = Path(tmp) / "state.tar"
        with artifact_storage().open(path, "rb") as src, open(tar_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        folder = Path(tmp) / "state"
        folder.mkdir()
        with tarfile.open(tar_path, "r") as tar:
            tar.extractall(folder, filter="data")
        ids_file = folder / DEV_IDS_FILE
        dev_ids = np.load(ids_file, allow_pickle=False) if ids_file.is_file() else None
        return PRBoostLoop.load(folder), dev_ids


def load_loop_state(path: str):
    """The PRBoostLoop saved at ``path`` in artifact storage."""
    return load_state(path)[0]


def _carry_weights(loop, *, old_ids: np.ndarray, new_ids: np.ndarray) -> str:
    """The dev set changed between rounds (gold labeling moves examples into it): examples that
    stay keep their boosting weight, new ones start at the mean weight, then all renormalize."""
    old = {int(pk): w for pk, w in zip(old_ids.tolist(), loop.weights.tolist())}
    mean = float(np.mean(loop.weights)) if loop.weights.size else 1.0
    weights = np.asarray([old.get(int(pk), mean) for pk in new_ids.tolist()], dtype=np.float64)
    loop.weights = weights / weights.sum()
    loop.large_error = np.zeros(0, dtype=np.int64)
    added = len(set(new_ids.tolist()) - set(old))
    removed = len(set(old) - set(new_ids.tolist()))
    return f"The dev set changed: {added} gold examples added, {removed} removed."


def _sync_decisions(loop, *, project: Project, n_classes: int) -> dict:
    """Bring the people's decisions (apps.rules) into the loop: its pending candidates are
    accepted when their rule is accepted, else rejected (a suggestion left undecided when the
    next round starts is not proposed again); the accepted rules become exactly the project's
    accepted rules (hand-written ones included, in the order they were accepted)."""
    from apps.rules.services import accepted_rules
    from models.prboost.loop import rule_key

    accepted = []
    seen = {rule_key(r) for r in loop.seed_rules}
    for rule in accepted_rules(project=project):
        key = rule_key(rule)
        if key in seen or not 0 <= rule.label < n_classes:
            continue
        seen.add(key)
        accepted.append(rule)
    accepted_keys = {rule_key(r) for r in accepted}
    n_accepted = n_rejected = 0
    for review in loop.pending:
        if rule_key(review.candidate.rule) in accepted_keys:
            review.decision = "accepted"
            review.final_rule = review.candidate.rule
            n_accepted += 1
        else:
            review.decision = "rejected"
            n_rejected += 1
    loop.accepted = accepted
    return {"rules": len(accepted), "accepted_now": n_accepted, "rejected_now": n_rejected}


def _new_loop(prepared, prb: dict):
    from models.prboost.loop import LoopConfig, PRBoostLoop

    config = LoopConfig(
        n_classes=prepared.data.n_classes,
        n_large_error=prb["large_error_instances"],
        candidates_per_round=prb["candidates_per_round"],
        C=LEARNER_C,
    )
    seed_votes = prb["use_imported_votes"] and prepared.data.pool_votes is not None
    n_seed = prepared.data.pool_votes.shape[1] if seed_votes else 0
    return PRBoostLoop(config, n_dev=len(prepared.data.dev), n_seed_votes=n_seed)


def _current_loop(prepared, prb: dict, project: Project):
    """(the loop to continue, the round it comes from or None, a note for the log or None).

    A run keeps the learner features of its first round (its members were fitted on them): when
    the end-model setting changed since, ``prepared.features`` is recomputed with the run's."""
    loop, previous, note = _stored_or_new_loop(prepared, prb, project)
    kind = loop.config.features or ("encoder" if loop.members else prepared.features.kind)
    loop.config.features = kind
    if kind != prepared.features.kind:
        prepared.features = compute_features(prepared.data, prb=prb, kind=kind)
        keep = f"This run keeps its {kind} features (the end model changed after its first round)."
        note = f"{note} {keep}" if note else keep
    return loop, previous, note


def _stored_or_new_loop(prepared, prb: dict, project: Project):
    previous = latest_live_round(project=project)
    if previous is None:
        return _new_loop(prepared, prb), None, None
    note = None
    loop, old_ids = load_state(previous.state_path)
    new_ids = prepared.data.dev_ids
    if old_ids is not None and not np.array_equal(old_ids, new_ids):
        note = _carry_weights(loop, old_ids=old_ids, new_ids=new_ids)
    elif loop.weights.size != new_ids.size:
        raise TrainingError(
            f"The dev set changed since round {previous.number} ({loop.weights.size} gold dev "
            f"examples then, {new_ids.size} now); the boosting weights no longer fit it."
        )
    if loop.config.n_classes != prepared.data.n_classes:
        raise TrainingError("The project's labels changed since the last round.")
    if loop.n_seed_votes and (
        prepared.data.pool_votes is None or prepared.data.pool_votes.shape[1] != loop.n_seed_votes
    ):
        raise TrainingError(
            f"The first round used {loop.n_seed_votes} imported rule votes per example; the "
            "pool's imported votes changed since."
        )
    loop.config.n_large_error = prb["large_error_instances"]
    loop.config.candidates_per_round = prb["candidates_per_round"]
    return loop, previous, note
