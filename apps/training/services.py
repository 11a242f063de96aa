"""PRBoost on a project: launch the training jobs and do their work.

Job kinds (apps/training/kinds.py), each a thin task in workers/prboost_tasks.py over one
function here:

- :func:`warm_cache` — embeddings and the LM answer index for the project's texts (the one-time
  pass; resumable through the models' disk cache in ``settings.FRUGAL_MODEL_CACHE_DIR``);
- :func:`run_round` — one boosting round from the previous round's saved loop state; the new
  Round, its suggested rules and its state are written in one transaction at the very end, so a
  round that fails or is cancelled leaves the previous round's state and labels untouched;
- :func:`refresh_labels` — accepted rules + label model → pool labels (``label_source="rules"``);
- :func:`finalize` — self-training → pool labels and confidences the export serves
  (``label_source="model"``, ``label_version="prboost round N"``).

Every function takes a ``progress(fraction, message)`` callback (the job's; it raises when the
job is cancelled) and a ``log(line)`` callback.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.datasets.models import Example, LabelSource, Split
from apps.jobs.artifacts import artifact_storage, save_artifact
from apps.jobs.models import FINISHED_STATUSES, Job, JobStatus
from apps.jobs.services import launch_job
from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project
from apps.training import kinds
from apps.training.data import (
    TrainingDataError,
    compute_features,
    load_project_data,
    prepare,
    project_answer_index,
)
from apps.training.models import LIVE_ROUND_STATUSES, LabelSet, Round, RoundStatus
from apps.training.prboost_settings import (
    clean_prboost_settings,
    encoder_name,
    prboost_settings,
)
from models.progress import Progress, ensure_progress, scaled

logger = logging.getLogger("frugal.training")

Log = Callable[[str], None]
STATE_ARTIFACT = "prboost_state"
FINAL_ARTIFACT = "prboost_final"
LEARNER_C = 10.0  # the end model's inverse L2 strength (bench/prboost.py's choice)
UPDATE_BATCH = 2000
STALE_JOBLESS_ROUND_HOURS = 6  # a round run without a job is taken for dead after this
MASK_PREVIEW = "[MASK]"  # how a masked LM's answer slot shows in template previews


class TrainingError(ValueError):
    """A training step that cannot be done as asked; the message is for users."""


def _null_log(line: str) -> None:
    logger.info(line)


# --------------------------------------------------------------------------- reads
def live_rounds(*, project: Project):
    return Round.objects.filter(project=project, status__in=LIVE_ROUND_STATUSES)


def latest_live_round(*, project: Project) -> Round | None:
    """The round whose saved state is the project's current PRBoost state (None before any)."""
    return live_rounds(project=project).exclude(state_path="").order_by("-number", "-id").first()


def active_training_job(*, project: Project) -> Job | None:
    return (
        Job.objects.filter(project=project, kind__in=kinds.TRAINING_KINDS)
        .exclude(status__in=FINISHED_STATUSES)
        .order_by("created_at", "id")
        .first()
    )


def rule_counts(*, project: Project) -> dict[str, int]:
    """Rules accepted / rejected / pending (suggested) in the project."""
    from apps.rules.models import Rule, RuleStatus

    counts = dict(
        Rule.objects.filter(project=project)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {
        "accepted": counts.get(RuleStatus.ACCEPTED, 0),
        "rejected": counts.get(RuleStatus.REJECTED, 0),
        "pending": counts.get(RuleStatus.SUGGESTED, 0),
    }


def reconcile_rounds(*, project: Project) -> int:
    """Rounds left ``running`` by a job that is over (its worker died, or it was failed or
    cancelled before the handler could say so) are marked failed/cancelled. Returns how many."""
    fixed = 0
    stale = timezone.now() - datetime.timedelta(hours=STALE_JOBLESS_ROUND_HOURS)
    for rnd in Round.objects.filter(project=project, status=RoundStatus.RUNNING).select_related(
        "job"
    ):
        job = rnd.job
        if job is not None and job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            continue
        if job is None and (rnd.job_id is None and rnd.created_at > stale):
            continue  # run in process (a script or benchmark), maybe still going
        cancelled = job is not None and job.status == JobStatus.CANCELLED
        fixed += Round.objects.filter(pk=rnd.pk, status=RoundStatus.RUNNING).update(
            status=RoundStatus.CANCELLED if cancelled else RoundStatus.FAILED,
            error=(job.error if job is not None else "") or "The round's job stopped unfinished.",
            finished_at=timezone.now(),
        )
    return fixed


# --------------------------------------------------------------------------- settings
def update_prboost_settings(*, project: Project, user, data: dict) -> dict:
    """Validate and store ``project.settings["prboost"]`` (admins). Returns the stored dict."""
    if user is not None and role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can change the PRBoost settings.")
    cleaned = clean_prboost_settings(project=project, data=data)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        stored = dict(locked.settings or {})
        stored["prboost"] = cleaned
        locked.settings = stored
        locked.save(update_fields=["settings"])
    project.settings = stored
    return cleaned


def template_preview(*, project: Project, template: dict) -> dict:
    """A template rendered on a real example of the project (first dev, else pool example).

    Returns ``{"prompt": str, "example_id": int | None, "error": str | None}``.
    """
    from models.prboost.templates import Template, TemplateError

    try:
        parsed = Template.from_dict(template)
    except TemplateError as exc:
        return {"prompt": "", "example_id": None, "error": str(exc)}
    example = (
        Example.objects.filter(project=project, split=Split.DEV).order_by("id").first()
        or Example.objects.filter(project=project).order_by("id").first()
    )
    if example is None:
        return {"prompt": "", "example_id": None, "error": "The project has no examples yet."}
    entities = None
    if parsed.task_type == "relation_extraction":
        raw = example.entities or []
        if len(raw) != 2:
            return {"prompt": "", "example_id": example.pk, "error": "No entity mentions."}
        entities = tuple(e.get("text", "") for e in raw)
    try:
        prompt = parsed.render(example.text, entities, mask_token=MASK_PREVIEW)
    except TemplateError as exc:
        return {"prompt": "", "example_id": example.pk, "error": str(exc)}
    return {"prompt": prompt, "example_id": example.pk, "error": None}


# --------------------------------------------------------------------------- launching
def launch_training_job(*, project: Project, user, kind: str, params: dict | None = None) -> Job:
    """Launch one of the training kinds (project admins; ``user`` None = the system, e.g. the
    automatic next round). One training job per project at a time."""
    if kind not in kinds.LAUNCHABLE:
        raise ValidationError(f"{kind!r} is not a training job kind.")
    if user is not None and role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can launch training jobs.")
    params = kinds.LAUNCHABLE[kind][2](params or {})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = active_training_job(project=project)
        if busy is not None:
            raise ValidationError(
                f"Job #{busy.pk} ({kinds.LAUNCHABLE.get(busy.kind, (busy.kind,))[0].lower()}) "
                f"is still {busy.status}: wait for it to finish or cancel it first."
            )
        if kind == kinds.FINALIZE and latest_live_round(project=project) is None:
            raise ValidationError("Run a boosting round before finalizing.")
        if kind == kinds.RUN_ROUND:
            gold_dev = Example.objects.filter(
                project=project, split=Split.DEV, gold_label__isnull=False
            ).count()
            if gold_dev < 2:
                raise ValidationError(
                    "A round needs gold labels on the dev set: label at least two dev examples."
                )
        return launch_job(kind=kind, project=project, user=user, params=params)


def maybe_start_next_round(*, project: Project) -> Job | None:
    """With ``auto_next_round`` on: when the latest round's suggestions are all decided and no
    training job runs, launch the next round (as the system). Returns the job, if launched."""
    from apps.rules.models import Rule, RuleStatus

    if not prboost_settings(project)["auto_next_round"]:
        return None
    current = latest_live_round(project=project)
    if current is None or current.status != RoundStatus.REVIEW:
        return None
    waiting = Rule.objects.filter(
        project=project, round_number=current.number, status=RuleStatus.SUGGESTED
    ).exists()
    if waiting or active_training_job(project=project) is not None:
        return None
    try:
        job = launch_training_job(project=project, user=None, kind=kinds.RUN_ROUND)
    except ValidationError as exc:
        logger.info("project %s: no automatic next round: %s", project.pk, exc)
        return None
    Round.objects.filter(pk=current.pk, status=RoundStatus.REVIEW).update(
        status=RoundStatus.COMPLETE
    )
    return job


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


# --------------------------------------------------------------------------- metrics
def _scores(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import f1_score

    if y.size == 0:
        return {"accuracy": None, "f1": None}
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float(np.mean(pred == y)),
        "f1": float(
            f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0)
        ),
    }


class _PhaseTimer:
    """Wraps the loop's progress callback and times its phases from its messages."""

    PHASES = (
        ("applying", "rules_and_label_model"),
        ("training", "learner"),
        ("proposing", "propose"),
    )

    def __init__(self, progress: Progress):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._phase: str | None = None
        self._since = time.perf_counter()

    def __call__(self, fraction: float, message: str) -> None:
        for word, phase in self.PHASES:
            if word in message and phase != self._phase:
                self._switch(phase)
        self.progress(fraction, message)

    def _switch(self, phase: str | None) -> None:
        now = time.perf_counter()
        if self._phase is not None:
            self.timings[self._phase] = self.timings.get(self._phase, 0.0) + now - self._since
        self._phase, self._since = phase, now

    def stop(self) -> dict[str, float]:
        self._switch(None)
        return self.timings


# --------------------------------------------------------------------------- warm cache
def warm_cache(*, project: Project, progress: Progress | None = None, log: Log = _null_log) -> dict:
    """Embed every text and compute the LM answer index (cached on disk; resumable)."""
    progress = ensure_progress(progress)
    prb = prboost_settings(project)
    started = time.perf_counter()
    data = load_project_data(project)
    log(f"{len(data.pool)} pool, {len(data.dev)} dev, {len(data.test)} test examples.")
    features = compute_features(data, scaled(progress, 0.0, 0.3))
    log(f"Embeddings ready in {features.seconds:.1f} s.")
    t0 = time.perf_counter()
    index, ids = project_answer_index(
        project, prb, compute=True, progress=scaled(progress, 0.3, 1.0)
    )
    answers_s = time.perf_counter() - t0
    if index is None:
        log("The n-gram proposer needs no language model: no answer index.")
    else:
        log(f"LM answers for {ids.size} examples ready in {answers_s:.1f} s.")
    progress(1.0, "Cache warm")
    return {
        "examples": int(len(data.pool) + len(data.dev) + len(data.test)),
        "embedding_seconds": round(features.seconds, 2),
        "answer_index_seconds": round(answers_s, 2) if index is not None else None,
        "answer_index_examples": int(ids.size) if index is not None else 0,
        "seconds": round(time.perf_counter() - started, 2),
    }


# --------------------------------------------------------------------------- a round
def run_round(
    *,
    project: Project,
    job: Job | None = None,
    progress: Progress | None = None,
    log: Log = _null_log,
) -> Round:
    """One boosting round, all or nothing (see the module doc). Returns the new live Round."""
    from workers.base import JobCancelled

    progress = ensure_progress(progress)
    reconcile_rounds(project=project)
    if job is not None:  # an earlier attempt of this same job died mid-round
        Round.objects.filter(job=job, status=RoundStatus.RUNNING).update(
            status=RoundStatus.FAILED,
            error="An earlier attempt stopped unfinished.",
            finished_at=timezone.now(),
        )
    previous = latest_live_round(project=project)
    rnd = Round.objects.create(
        project=project,
        number=(previous.number + 1) if previous else 1,
        status=RoundStatus.RUNNING,
        job=job,
    )
    try:
        result = _run_round(project=project, rnd=rnd, job=job, progress=progress, log=log)
    except JobCancelled:
        Round.objects.filter(pk=rnd.pk).update(
            status=RoundStatus.CANCELLED, error="Cancelled.", finished_at=timezone.now()
        )
        raise
    except Exception as exc:
        Round.objects.filter(pk=rnd.pk).update(
            status=RoundStatus.FAILED,
            error=str(exc)[:4000] or type(exc).__name__,
            finished_at=timezone.now(),
        )
        raise
    return result


def _run_round(*, project: Project, rnd: Round, job, progress: Progress, log: Log) -> Round:
    from apps.rules.services import accepted_rule_rows, store_suggestions
    from models.prboost.loop import LoopError
    from models.prboost.matching import match_rule

    prb = prboost_settings(project)
    t_start = time.perf_counter()
    prepared = prepare(project, prb, scaled(progress, 0.0, 0.3))
    data = prepared.data
    log(
        f"Round {rnd.number}: {len(data.pool)} pool, {len(data.dev)} dev, {len(data.test)} "
        f"test examples; proposer {prb['proposer']}."
    )
    loop, previous, note = _current_loop(prepared, prb, project)
    if note:
        log(note)
    if previous is not None and previous.number + 1 != rnd.number:
        raise TrainingError("Another round finished while this one started; run it again.")
    synced = _sync_decisions(loop, project=project, n_classes=data.n_classes)
    log(
        f"Rules in force: {synced['rules']} accepted"
        + (f" + {loop.n_seed_votes} imported rule votes" if loop.n_seed_votes else "")
        + "."
    )
    loop_data = prepared.loop_data(seed_votes=bool(loop.n_seed_votes))
    timer = _PhaseTimer(scaled(progress, 0.3, 0.9))
    try:
        record = loop.run_round(loop_data, progress=timer)
    except LoopError as exc:
        raise TrainingError(str(exc)) from exc
    timings = {**prepared.timings, **timer.stop()}
    progress(0.9, "Scoring the ensemble")
    K = data.n_classes
    dev = _scores(data.dev.labels, loop.predict_proba(prepared.features.dev_X), K)
    test = (
        _scores(data.test.labels, loop.predict_proba(prepared.features.test_X), K)
        if len(data.test)
        else {"accuracy": None, "f1": None}
    )
    new_reviews = [r for r in loop.pending if r.round == record["round"]]
    candidates = [r.candidate for r in new_reviews]
    accepted_rows = accepted_rule_rows(project=project)
    accepted_matches = {}
    from models.prboost.rules import rule_from_dict

    for row in accepted_rows:
        try:
            rule = rule_from_dict(row.definition)
            accepted_matches[row.pk] = match_rule(rule, prepared.pool_corpus)
        except Exception as exc:  # noqa: BLE001 - a rule that cannot match here shows no overlap
            log(f"Accepted rule #{row.pk} could not be matched for overlaps: {exc}")
    metrics = {
        # the round's weak learner on dev, cross-fitted (each dev fold predicted by a model
        # trained without it): honest, unlike the ensemble's, whose members saw the dev set
        "dev_accuracy": record.get("member_dev_accuracy"),
        "ensemble_dev_accuracy": dev["accuracy"],
        "ensemble_dev_f1": dev["f1"],
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        "coverage": record.get("coverage"),
        "covered": record.get("covered"),
        "n_rules": record.get("n_rules"),
        "seed_votes": int(loop.n_seed_votes),  # imported rule votes used as seed rules
        "candidates_proposed": len(candidates),
        "large_error": len(record.get("large_error", [])),
        "n_pool": len(data.pool),
        "n_dev": len(data.dev),
        "n_test": len(data.test),
        "proposer": prb["proposer"],
    }
    progress(0.95, "Saving the round")
    storage = artifact_storage()
    saved_path = None
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()
            latest = latest_live_round(project=project)
            if (latest.pk if latest else None) != (previous.pk if previous else None):
                raise TrainingError("Another round finished while this one ran; run it again.")
            t0 = time.perf_counter()
            artifact = save_loop_state(
                loop,
                project=project,
                job=job,
                name=f"round-{rnd.number}.tar",
                kind=STATE_ARTIFACT,
                dev_ids=data.dev_ids,
            )
            saved_path = artifact.path
            stored = store_suggestions(
                project=project,
                round_number=rnd.number,
                candidates=candidates,
                dev_ids=data.dev_ids,
                pool_ids=data.pool_ids,
                accepted_matches=accepted_matches,
            )
            timings["save"] = time.perf_counter() - t0
            live_rounds(project=project).filter(status=RoundStatus.REVIEW).update(
                status=RoundStatus.COMPLETE
            )
            metrics.update(
                {f"rules_{k}": v for k, v in rule_counts(project=project).items()},
                suggestions_stored=len(stored),
                seconds={k: round(v, 3) for k, v in timings.items()},
                total_seconds=round(time.perf_counter() - t_start, 3),
            )
            rnd.status = RoundStatus.REVIEW if stored else RoundStatus.COMPLETE
            rnd.alpha = float(record["alpha"])
            rnd.weighted_error = float(record["err"])
            rnd.metrics = _json_safe(metrics)
            rnd.state_path = artifact.path
            rnd.finished_at = timezone.now()
            rnd.save()
    except BaseException:
        if saved_path:
            storage.delete(saved_path)
        raise
    log(
        f"Round {rnd.number} done: α {rnd.alpha:.2f}, weighted dev error "
        f"{rnd.weighted_error:.3f}, {len(stored)} suggestions"
        + (f", test accuracy {test['accuracy']:.3f}" if test["accuracy"] is not None else "")
        + "."
    )
    progress(1.0, f"Round {rnd.number} done")
    return rnd


def _json_safe(value):
    from workers.base import to_json

    return to_json(value)


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
        f"{predicted[Split.DEV]} dev (cross-fitted) and {predicted[Split.TEST]} test examples."
    )
    progress(1.0, "Labels finalized")
    return label_set


def latest_label_set(*, project: Project) -> LabelSet | None:
    return LabelSet.objects.filter(project=project).order_by("-created_at", "-id").first()


__all__ = [
    "TrainingDataError",
    "TrainingError",
    "active_training_job",
    "finalize",
    "latest_live_round",
    "launch_training_job",
    "maybe_start_next_round",
    "refresh_labels",
    "run_round",
    "template_preview",
    "update_prboost_settings",
    "warm_cache",
]
