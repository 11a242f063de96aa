"""LoRC for a project: calibrate a compressed causal LM from its texts; let the proposer use it.

``calibrate`` is the job's work (workers/lorc_tasks.py): the project's pool and dev texts are
shuffled once (seed 0) and split — calibration text (input covariances, and one held-out window
for choosing the budget) and evaluation text (the perplexity shown). Ranks are greedy, the
budget is the smallest whose calibration perplexity stays within ``ceiling`` × the full model's
(``models.lorc.fit_to_perplexity``). Nothing is written until everything is measured: the factors
file goes to artifact storage and one ``CompressedLM`` row records it with its metrics.

``use_for_proposer`` points the project's PRBoost language model at the compressed file
(``lorc:<path>``, which ``models.lm.load_causal_lm`` understands), remembering the previous value;
``stop_using_for_proposer`` restores it. The PRBoost settings stay the one owner of which model the
warm-up loads, and the answer-index cache keys follow them.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.datasets.models import Example, Split
from apps.jobs.artifacts import artifact_storage, save_artifact
from apps.jobs.models import Job
from apps.jobs.services import launch_job
from apps.lorc import kinds
from apps.lorc.models import CompressedLM, ProposerSwitch
from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project
from apps.training.prboost_settings import effective_templates, prboost_settings
from apps.training.services import update_prboost_settings
from models.lm import LORC_PREFIX

Progress = Callable[[float, str], None]
Log = Callable[[str], None]

WINDOW = 256  # tokens per perplexity / calibration window (project texts are often short)
CALIB_TOKENS = 2048
EVAL_TOKENS = 2048
AGREEMENT_TEXTS = 48
MIN_TOKENS = 4 * WINDOW  # two calibration windows, one held-out, one for evaluation


# Scale groups of the latent codes: what `bench lorc` chose on calibration text (8-bit in groups
# of 64 beat groups of 32 on bytes at the same perplexity ceiling; 4-bit needs groups of 16).
LATENT_GROUP = {8: 64, 4: 16}


def _null(*_args) -> None:
    return None


def _require_admin(*, project: Project, user) -> None:
    if user is not None and role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can do this.")


def launch_calibration(*, project: Project, user, params: dict | None = None) -> Job:
    """Queue a "calibrate LoRC" job (project admins), one at a time per project."""
    _require_admin(project=project, user=user)
    cleaned = kinds.clean_params(params or {})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = (
            Job.objects.filter(project=project, kind=kinds.CALIBRATE)
            .exclude(status__in=["succeeded", "failed", "cancelled"])
            .first()
        )
        if busy is not None:
            raise ValidationError(f"LoRC job #{busy.pk} is still {busy.status}: wait for it.")
        return launch_job(kind=kinds.CALIBRATE, project=project, user=user, params=cleaned)


def base_model_name(project: Project) -> str:
    """The causal LM to compress: the PRBoost language model (the one before LoRC replaced it),
    else ``FRUGAL_CAUSAL_LM``; "" = the library default (SmolLM2)."""
    prb = prboost_settings(project)
    name = (prb.get("language_model") or "").strip()
    if name.startswith(LORC_PREFIX):
        switch = ProposerSwitch.objects.filter(project=project).first()
        name = switch.previous_language_model if switch else ""
    if prb.get("proposer") != "causal":
        name = ""  # a masked LM cannot be compressed here: the deployment's causal LM
    return name or (django_settings.FRUGAL_CAUSAL_LM or "")


def _project_texts(project: Project) -> tuple[list[str], list[str]]:
    """(calibration texts, evaluation texts): pool + dev shuffled with seed 0, 60 / 40."""
    texts = list(
        Example.objects.filter(project=project, split__in=[Split.POOL, Split.DEV])
        .order_by("id")
        .values_list("text", flat=True)
    )
    texts = [t for t in texts if t and t.strip()]
    random.Random(0).shuffle(texts)
    cut = int(len(texts) * 0.6)
    return texts[:cut], texts[cut:]


def _agreement_texts(project: Project) -> list[str]:
    rows = Example.objects.filter(project=project, split=Split.DEV).order_by("id")
    texts = list(rows.values_list("text", flat=True)[:AGREEMENT_TEXTS])
    if len(texts) < AGREEMENT_TEXTS:
        pool = Example.objects.filter(project=project, split=Split.POOL).order_by("id")
        texts += list(pool.values_list("text", flat=True)[: AGREEMENT_TEXTS - len(texts)])
    return texts


def _templates(project: Project) -> list:
    """The proposer's causal templates that need no entities (top-k agreement)."""
    from models.prboost.templates import DEFAULT_TEMPLATES

    prb = prboost_settings(project)
    ts = effective_templates(project, prb) if prb.get("proposer") == "causal" else []
    ts = [t for t in ts if t.style != "mask" and t.task_type == "text_classification"]
    return ts or list(DEFAULT_TEMPLATES["text_classification"])


def calibrate(
    *,
    project: Project,
    job: Job | None,
    bits: int = 8,
    ceiling: float = 1.04,
    progress: Progress = _null,
    log: Log = _null,
) -> CompressedLM:
    """Build, measure and store a LoRC compression of the project's causal LM."""
    import torch

    import models.lorc as lorc
    from models.lm import load_causal_lm
    from models.lorc import (
        QuantSpec,
        cache_nbytes,
        compress,
        factorize,
        fit_to_perplexity,
        greedy,
        kv_layout,
        new_cache,
        perplexity,
        save,
        token_windows,
        topk_agreement,
    )
    from models.lorc.serve import BASE_MODEL_KEY
    from models.prboost.answers import compute_answer_index

    calib_texts, eval_texts = _project_texts(project)
    base = base_model_name(project)
    progress(0.02, "Loading the language model")
    lm = load_causal_lm(base or None)
    model, tok = lm.model, lm.tokenizer
    try:
        cal = token_windows(tok, calib_texts, WINDOW, CALIB_TOKENS + WINDOW)
        ev = token_windows(tok, eval_texts, WINDOW, EVAL_TOKENS)
    except ValueError:
        cal = ev = None
    if cal is None or cal.shape[0] < 3 or ev is None:
        raise ValidationError(
            f"LoRC needs at least {MIN_TOKENS} tokens of project text (pool and dev) to "
            "calibrate and evaluate: import more examples first."
        )
    cal, cal_dev = cal[:-1], cal[-1:]
    log(f"{cal.numel()} calibration tokens, {cal_dev.numel()} held out, {ev.numel()} eval tokens")
    progress(0.1, "Measuring the attention inputs")
    batches = [(cal[i : i + 4], torch.ones_like(cal[i : i + 4])) for i in range(0, len(cal), 4)]
    factors = factorize(model, lorc.calibrate(model, batches))
    spec = QuantSpec(bits, group=LATENT_GROUP[bits])
    layout = kv_layout(model, spec)
    full_dev = perplexity(model, cal_dev)

    def dev_ppl(sched) -> float:
        small = compress(model, factors, sched, spec)
        return perplexity(small, cal_dev, 1, lambda: new_cache(small), prefill=WINDOW // 4)

    progress(0.3, "Fitting the ranks to the perplexity ceiling")
    try:
        sched, dev, tried = fit_to_perplexity(
            lambda b: greedy(layout, factors, b),
            dev_ppl,
            ceiling * full_dev,
            0.1 * layout.full_bytes,
            layout.bytes_per_token(greedy(layout, factors, layout.full_bytes)),
            steps=6,
        )
    except lorc.BudgetError as exc:
        raise ValidationError(
            f"No rank budget keeps perplexity within ×{ceiling:g} of the full model ({exc}): "
            "raise the ceiling or use 8-bit latents."
        ) from exc
    log(f"budget fit (bytes/token, calibration perplexity): {tried}")
    small = compress(model, factors, sched, spec)
    progress(0.6, "Measuring perplexity on held-out project text")
    ppl_full = perplexity(model, ev)
    ppl_small = perplexity(small, ev, 1, lambda: new_cache(small), prefill=WINDOW // 4)
    cache = new_cache(small)
    with torch.inference_mode():
        small(input_ids=ev[:1].to(lm.device), cache=cache, use_cache=True)
    measured = cache_nbytes(cache) / ev[:1].numel()
    progress(0.75, "Comparing the proposer's answers")
    from models.lm import CausalLM

    texts, templates = _agreement_texts(project), _templates(project)
    small_lm = CausalLM(small, tok, f"{lm.model_id}|lorc-candidate", lm.device,
                        cache_factory=new_cache)  # fmt: skip
    ref = compute_answer_index(lm, texts, templates, k=10, use_cache=False)
    got = compute_answer_index(small_lm, texts, templates, k=10, use_cache=False)
    agree = [topk_agreement(ref.topk_ids(t.id), got.topk_ids(t.id)) for t in templates]
    metrics = {
        "bytes_full": layout.full_bytes,
        "bytes_lorc": measured,
        "saved": 1 - measured / layout.full_bytes,
        "ppl_full": ppl_full,
        "ppl_lorc": ppl_small,
        "ppl_increase": ppl_small / ppl_full - 1,
        "calibration_ppl_full": full_dev,
        "calibration_ppl_lorc": dev,
        "ceiling": ceiling,
        "top1": sum(a["top1"] for a in agree) / len(agree),
        "overlap": sum(a["overlap"] for a in agree) / len(agree),
        "agreement_texts": len(texts),
        "templates": [t.id for t in templates],
        "calibration_tokens": int(cal.numel()),
        "eval_tokens": int(ev.numel()),
        "ranks_k": sched.ranks_k,
        "ranks_v": sched.ranks_v,
    }
    progress(0.9, "Storing the factors")
    with tempfile.TemporaryDirectory(prefix="frugal-lorc-") as tmp:
        path = save(Path(tmp) / "lorc.pt", factors, sched, spec,
                    meta={BASE_MODEL_KEY: base, "metrics": metrics})  # fmt: skip
        with transaction.atomic(), path.open("rb") as fh:
            artifact = save_artifact(
                project=project,
                job=job,
                kind="lorc",
                name=f"lorc-int{bits}.pt",
                fileobj_or_bytes=fh,
                metadata={"base_model": base, "saved": metrics["saved"]},
            )
            compressed = CompressedLM.objects.create(
                project=project, job=job, artifact=artifact, base_model=base, bits=bits,
                metrics=metrics,
            )  # fmt: skip
    progress(1.0, f"KV memory saved {100 * metrics['saved']:.0f}%")
    return compressed


def _local_path(compressed: CompressedLM) -> str:
    try:
        return artifact_storage().path(compressed.artifact.path)
    except NotImplementedError as exc:
        raise ValidationError(
            "The proposer can load a LoRC model only from artifacts on a file system all "
            "workers share (this deployment stores them remotely)."
        ) from exc


def use_for_proposer(*, project: Project, user, compressed: CompressedLM) -> dict:
    """Make the PRBoost warm-up load ``compressed`` (admins); returns the PRBoost settings."""
    _require_admin(project=project, user=user)
    if compressed.project_id != project.pk:
        raise ValidationError("That compressed model belongs to another project.")
    prb = prboost_settings(project)
    if prb.get("proposer") != "causal":
        raise ValidationError("The proposer is not a causal LM: switch it to causal first.")
    path = _local_path(compressed)
    with transaction.atomic():
        current = (prb.get("language_model") or "").strip()
        switch, _ = ProposerSwitch.objects.get_or_create(project=project)
        if not current.startswith(LORC_PREFIX):
            switch.previous_language_model = current
            switch.save()
        return update_prboost_settings(
            project=project, user=user, data={"language_model": f"{LORC_PREFIX}{path}"}
        )


def stop_using_for_proposer(*, project: Project, user) -> dict:
    """Give the proposer back the language model it had before (admins)."""
    _require_admin(project=project, user=user)
    prb = prboost_settings(project)
    if not (prb.get("language_model") or "").startswith(LORC_PREFIX):
        raise ValidationError("The proposer is not using a LoRC model.")
    switch = ProposerSwitch.objects.filter(project=project).first()
    previous = switch.previous_language_model if switch else ""
    return update_prboost_settings(project=project, user=user, data={"language_model": previous})
