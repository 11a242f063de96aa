"""Warming the cache and running one boosting round (all or nothing)."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from apps.jobs.artifacts import artifact_storage
from apps.jobs.models import Job
from apps.projects.models import Project
from apps.training.data import (
    compute_features,
    load_project_data,
    prepare,
    project_answer_index,
)
from apps.training.models import Round, RoundStatus
from apps.training.prboost_settings import (
    prboost_settings,
)
from apps.training.services.common import (
    STATE_ARTIFACT,
    Log,
    TrainingError,
    _json_safe,
    _null_log,
    _scores,
    latest_live_round,
    live_rounds,
    reconcile_rounds,
    rule_counts,
)
from apps.training.services.state import _current_loop, _sync_decisions, save_loop_state
from models.progress import Progress, ensure_progress, scaled


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
