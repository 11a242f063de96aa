"""Distillation: launching the job, running it (teacher → ε selection → one student per loss →
the best on dev serves), and predicting with the serving student.

Teachers (say which labels are out-of-sample):
- ``encoder``: all-MiniLM-L6-v2 (or ``encoder``) fine-tuned on the pool rows that carry a label
  (the project's labeling model: finalized PRBoost or rule labels), cross-fitted: every labeled
  pool row gets its soft label from the fold teacher that did not train on it; unlabeled pool rows,
  dev and test get the fold teachers' mean (no fold trained on them).
- ``prboost``: the finalized PRBoost model's probabilities. They are NOT out-of-sample: the final
  model was self-trained on its own pool pseudo-labels and on the gold dev set, so its pool labels
  are near its own fit and the ε selection on dev is in-sample (it leans to ε = 0, plain KD).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.datasets.models import Example, Split
from apps.distill import kinds
from apps.distill.models import DistillRun, Prediction, Student
from apps.jobs.artifacts import artifact_storage, save_artifact
from apps.jobs.models import FINISHED_STATUSES, Job
from apps.jobs.services import launch_job
from apps.projects.models import Project, Role
from apps.projects.selectors import role_in_project
from models.progress import Progress, ensure_progress, scaled

Log = Callable[[str], None]
STUDENT_ARTIFACT = "distill_student"
SPEED_ROWS = 256  # texts per examples/s measurement
PREDICT_CHUNK = 256


class DistillError(ValueError):
    """The project cannot be distilled as it is; the message says why (shown to users)."""


def _null_log(line: str) -> None:
    """Discard log lines."""


# --------------------------------------------------------------------------- reads
def active_distill_job(*, project: Project) -> Job | None:
    return (
        Job.objects.filter(project=project, kind=kinds.DISTILL)
        .exclude(status__in=FINISHED_STATUSES)
        .order_by("-created_at", "-id")
        .first()
    )


def serving_student(*, project: Project) -> Student | None:
    return (
        Student.objects.filter(project=project, is_serving=True).select_related("artifact").first()
    )


def latest_run(*, project: Project) -> DistillRun | None:
    return DistillRun.objects.filter(project=project).order_by("-created_at", "-id").first()


# --------------------------------------------------------------------------- launch
def launch_distillation(*, project: Project, user, params: dict | None = None) -> Job:
    """Queue a distillation (project admins). One distillation per project at a time."""
    if role_in_project(user=user, project=project) != Role.ADMIN:
        raise PermissionDenied("Only project admins can launch a distillation.")
    params = kinds.clean_params(params or {})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = active_distill_job(project=project)
        if busy is not None:
            raise ValidationError(
                f"Distillation job #{busy.pk} is still {busy.status}: wait for it or cancel it."
            )
        gold_dev = Example.objects.filter(
            project=project, split=Split.DEV, gold_label__isnull=False
        ).count()
        if gold_dev < 2:
            raise ValidationError(
                "Distillation picks its student on gold dev labels: label at least two dev "
                "examples first."
            )
        return launch_job(kind=kinds.DISTILL, project=project, user=user, params=params)


# --------------------------------------------------------------------------- texts
def model_text(text: str, entities) -> str:
    """What a student reads: the text, entity-marked for relation extraction."""
    from models.prboost.learners import mark_entities

    if not entities:
        return text
    (h, t) = entities
    return mark_entities(text, (h["text"], h["start"], h["end"]), (t["text"], t["start"], t["end"]))


def _dataset_texts(ds) -> list[str]:
    from models.prboost.learners import mark_entities

    if ds.entities is None:
        return list(ds.texts)
    return [mark_entities(t, h, tl) for t, (h, tl) in zip(ds.texts, ds.entities)]


# --------------------------------------------------------------------------- teachers
def encoder_name(params: dict) -> str | None:
    """The teacher encoder: the job's ``encoder``, else ``settings.FRUGAL_DISTILL_ENCODER``,
    else all-MiniLM-L6-v2."""
    from django.conf import settings

    return params.get("encoder") or getattr(settings, "FRUGAL_DISTILL_ENCODER", "") or None


def _encoder_teacher(
    *, data, texts, labeled, params, K, progress, log, check_cancelled, device="cpu"
) -> dict:
    """Cross-fitted fine-tuned encoder: soft labels on the pool, dev and test (see module doc);
    trained on ``device``, its throughput measured on the CPU."""
    from models.ptloss import cross_fit
    from models.ptloss.distill import TrainConfig, examples_per_second, predict_proba, train
    from models.ptloss.students import build_classifier, encode

    pool_texts, pool_labels = texts["pool"], labeled
    has_label = np.flatnonzero(pool_labels >= 0)
    if has_label.size < 2 * params["folds"]:
        raise DistillError(
            f"The encoder teacher trains on labeled pool rows: the project has {has_label.size}, "
            f"{2 * params['folds']} needed. Finalize PRBoost labels (or refresh labels from "
            "rules) first."
        )
    name = encoder_name(params)
    _, tok = build_classifier(name, n_classes=K, n_layers=1)
    L = params["max_length"]
    enc_lab = encode(tok, [pool_texts[i] for i in has_label], L)
    no_label = np.flatnonzero(pool_labels < 0)
    extra_texts = [pool_texts[i] for i in no_label] + texts["dev"] + texts["test"]
    enc_extra = encode(tok, extra_texts, L) if extra_texts else None
    speed: list[float] = []

    def fit_predict(tr, held, sub):
        check_cancelled()
        model, _ = build_classifier(name, n_classes=K, seed=params["seed"])
        model.to(device)
        cfg = TrainConfig(epochs=params["teacher_epochs"], lr=3e-4, batch_size=16, seed=0)
        train(
            model,
            enc_lab.subset(tr),
            loss="ce",
            hard=pool_labels[has_label][tr],
            config=cfg,
            progress=lambda f, m: sub(0.9 * f, f"teacher: {m}"),
            check_cancelled=check_cancelled,
        )
        if not speed and enc_extra is not None:
            rows = np.arange(min(SPEED_ROWS, len(enc_extra)))
            speed.append(examples_per_second(model.to("cpu"), enc_extra.subset(rows)))
            model.to(device)
        extra = predict_proba(model, enc_extra) if enc_extra is not None else None
        return predict_proba(model, enc_lab.subset(held)), extra

    cf = cross_fit(has_label.size, fit_predict, params["folds"], params["seed"], progress)
    pool_p = np.zeros((len(pool_texts), K))
    pool_p[has_label] = cf.oof
    n_un, n_dev = no_label.size, len(texts["dev"])
    if cf.extra is not None:
        pool_p[no_label] = cf.extra[:n_un]
        dev_p, test_p = cf.extra[n_un : n_un + n_dev], cf.extra[n_un + n_dev :]
    else:
        dev_p, test_p = np.zeros((0, K)), np.zeros((0, K))
    log(
        f"Encoder teacher: {params['folds']}-fold cross-fitted on {has_label.size} labeled pool "
        f"rows; {n_un} unlabeled pool rows, dev and test labeled by the fold teachers' mean."
    )
    return {
        "pool": pool_p,
        "dev": dev_p,
        "test": test_p,
        "examples_per_s": speed[0] if speed else None,
        "kind": "encoder",
        "out_of_sample": True,
    }


def _prboost_teacher(*, project, data, K, progress, log) -> dict:
    """The finalized PRBoost model's probabilities (in-sample: see the module doc)."""
    from apps.training.data import compute_features
    from apps.training.services import latest_label_set, load_loop_state

    label_set = latest_label_set(project=project)
    if label_set is None or not label_set.state_path:
        raise DistillError("No finalized PRBoost model: finalize labels on the training page.")
    loop = load_loop_state(label_set.state_path)
    if loop.final is None:
        raise DistillError("The PRBoost state holds no final model: finalize labels again.")
    pool_p = np.asarray(loop.final.pool_proba, dtype=np.float64)
    if pool_p.shape != (len(data.pool), K):
        raise DistillError(
            "The pool changed since PRBoost was finalized: finalize labels again first."
        )
    features = compute_features(data, progress)
    model = loop.final.model
    dev_p = model.predict_proba(features.dev_X)
    test_p = model.predict_proba(features.test_X) if len(data.test) else np.zeros((0, K))
    log(
        "PRBoost teacher: its probabilities are in-sample (the final model self-trained on these "
        "pool rows and on the gold dev set); the ε selection on dev leans to plain KD."
    )
    return {
        "pool": pool_p,
        "dev": dev_p,
        "test": test_p,
        "examples_per_s": None,
        "kind": "prboost",
        "out_of_sample": False,
    }


# --------------------------------------------------------------------------- students
def _build_student(params: dict, K: int, label_names: list[str], seed: int):
    from models.ptloss.students import build_classifier

    name = encoder_name(params)
    student = params["student"]
    if student == "hub":
        return build_classifier(
            params["hub_model"], n_classes=K, label_names=label_names, seed=seed
        )
    if student == "frozen":
        return build_classifier(
            name, n_classes=K, label_names=label_names, freeze_encoder=True, seed=seed
        )
    return build_classifier(
        name,
        n_classes=K,
        label_names=label_names,
        n_layers=params["layers"],
        layer_pick="spread" if student == "spread" else "first",
        seed=seed,
    )


def _accuracy(p: np.ndarray, y: np.ndarray) -> float | None:
    return float((p.argmax(1) == y).mean()) if len(y) else None


def student_tar(model, tokenizer, *, meta: dict) -> bytes:
    """The Hugging Face folder (save_pretrained) as an uncompressed tar, files at its root."""
    import json

    from models.ptloss.students import save_student

    with tempfile.TemporaryDirectory(prefix="frugal-student-") as tmp:
        save_student(model, tokenizer, tmp)
        (Path(tmp) / "frugal_student.json").write_text(json.dumps(meta, indent=1))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(Path(tmp).iterdir()):
                tar.add(path, arcname=path.name)
        return buf.getvalue()


def run_distillation(
    *,
    project: Project,
    job: Job | None = None,
    params: dict,
    progress: Progress | None = None,
    log: Log = _null_log,
    check_cancelled: Callable[[], None] | None = None,
) -> DistillRun:
    """Teacher soft labels → ε chosen on dev → one student per loss → the best on dev serves.

    Nothing is written until the end: artifacts first, then every row in one transaction."""
    import torch

    from apps.training.data import TrainingDataError, load_project_data
    from models.lm import resolve_device
    from models.ptloss import select_eps
    from models.ptloss.distill import TrainConfig, examples_per_second, predict_proba, train
    from models.ptloss.students import encode, n_parameters

    progress = ensure_progress(progress)
    check = check_cancelled or (lambda: None)
    params = kinds.clean_params(params)
    torch.manual_seed(params["seed"])
    # The worker's GPU when it has one (this kind declares the gpu resource); throughput is
    # measured on the CPU, where the serving student answers.
    device = resolve_device(None)
    log(f"Models train on {device}.")
    try:
        data = load_project_data(project)
    except TrainingDataError as exc:
        raise DistillError(str(exc)) from exc
    K = data.n_classes
    texts = {
        "pool": _dataset_texts(data.pool),
        "dev": _dataset_texts(data.dev),
        "test": _dataset_texts(data.test),
    }
    label_of = dict(
        Example.objects.filter(project=project, split=Split.POOL, label__isnull=False).values_list(
            "id", "label"
        )
    )
    pool_labels = np.asarray([label_of.get(int(i), -1) for i in data.pool_ids], dtype=np.int64)
    pool_labels[(pool_labels < 0) | (pool_labels >= K)] = -1
    progress(0.01, "Teacher soft labels")
    if params["teacher"] == "prboost":
        teacher = _prboost_teacher(
            project=project, data=data, K=K, progress=scaled(progress, 0.01, 0.3), log=log
        )
    else:
        teacher = _encoder_teacher(
            data=data,
            texts=texts,
            labeled=pool_labels,
            params=params,
            K=K,
            progress=scaled(progress, 0.01, 0.3),
            log=log,
            check_cancelled=check,
            device=device,
        )
    check()
    y_dev, y_test = data.dev.labels, data.test.labels
    selection = select_eps(
        teacher["dev"], y_dev, n_candidates=params["candidates"], seed=params["seed"]
    )
    log(
        f"ε selection on {len(y_dev)} dev rows: candidate {selection.index} of "
        f"{len(selection.mse)} ({'ε = 0, plain KD' if selection.is_kd else 'perturbed'}); "
        f"proxy MSE {selection.mse[selection.index]:.4f} vs KD {selection.mse[0]:.4f}."
    )
    rng = np.random.default_rng(params["seed"])
    train_idx = np.sort(rng.permutation(len(texts["pool"]))[: params["max_pool"]])
    results: list[dict] = []
    blobs: dict[str, bytes] = {}
    losses = params["losses"]
    tokenizer = None
    for j, loss in enumerate(losses):
        sub = scaled(progress, 0.3 + 0.55 * j / len(losses), 0.3 + 0.55 * (j + 1) / len(losses))
        check()
        model, tokenizer = _build_student(params, K, data.label_names, params["seed"])
        model.to(device)
        L = params["max_length"]
        enc_pool = encode(tokenizer, [texts["pool"][i] for i in train_idx], L)
        enc_dev = encode(tokenizer, texts["dev"], L)
        cfg = TrainConfig(epochs=params["epochs"], lr=3e-4, batch_size=16, seed=params["seed"])
        started = time.perf_counter()
        train(
            model,
            enc_pool,
            loss=loss,
            teacher=teacher["pool"][train_idx],
            eps=selection.eps if loss == "ptloss" else None,
            config=cfg,
            progress=lambda f, m, sub=sub, name=kinds.LOSS_LABELS[loss]: sub(
                0.9 * f, f"student ({name}): {m}"
            ),
            check_cancelled=check,
        )
        seconds = time.perf_counter() - started
        dev_acc = _accuracy(predict_proba(model, enc_dev), y_dev)
        test_acc = None
        if len(y_test):
            test_acc = _accuracy(predict_proba(model, encode(tokenizer, texts["test"], L)), y_test)
        speed_rows = (texts["test"] or texts["dev"])[:SPEED_ROWS]
        model.to("cpu")
        speed = examples_per_second(model, encode(tokenizer, speed_rows, L))
        blob = student_tar(
            model,
            tokenizer,
            meta={"loss": loss, "max_length": L, "task_type": project.task_type},
        )
        blobs[loss] = blob
        results.append(
            {
                "loss": loss,
                "dev_accuracy": dev_acc,
                "test_accuracy": test_acc,
                "params": n_parameters(model),
                "size_bytes": len(blob),
                "examples_per_s": speed,
                "train_seconds": seconds,
            }
        )
        log(
            f"{kinds.LOSS_LABELS[loss]}: dev {dev_acc:.3f}"
            + (f", test {test_acc:.3f}" if test_acc is not None else "")
            + f", {speed:.0f} examples/s."
        )
        sub(1.0, f"student ({kinds.LOSS_LABELS[loss]}) done")
    # The serving student: best dev accuracy; ties go to the later loss (PTLoss, then LS, KD, CE).
    best = max(range(len(results)), key=lambda i: (results[i]["dev_accuracy"], i))
    chosen = results[best]["loss"]
    progress(0.86, f"Predicting every example with the {kinds.LOSS_LABELS[chosen]} student")
    check()
    model, tokenizer = _load_from_tar(blobs[chosen])
    all_ids, all_texts = _all_example_texts(project)
    preds = _predict_proba(model, tokenizer, all_texts, params["max_length"], check=check)
    check()
    summary = {
        "teacher": {
            "kind": teacher["kind"],
            "out_of_sample": teacher["out_of_sample"],
            "dev_accuracy": _accuracy(teacher["dev"], y_dev),
            "test_accuracy": _accuracy(teacher["test"], y_test) if len(y_test) else None,
            "examples_per_s": teacher["examples_per_s"],
            "pool_top_prob": float(teacher["pool"].max(1).mean()) if len(teacher["pool"]) else None,
        },
        "selection": selection.summary(),
        "students": results,
        "chosen": chosen,
        "n_train": int(train_idx.size),
        "n_dev": int(len(y_dev)),
        "n_test": int(len(y_test)),
    }
    progress(0.95, "Saving the students")
    saved = []
    try:
        for r in results:
            saved.append(
                save_artifact(
                    project=project,
                    job=job,
                    kind=STUDENT_ARTIFACT,
                    name=f"student-{r['loss']}.tar",
                    fileobj_or_bytes=blobs[r["loss"]],
                    metadata={"loss": r["loss"], "format": "huggingface-folder-tar"},
                )
            )
        with transaction.atomic():
            run = DistillRun.objects.create(
                project=project, job=job, params=params, summary=summary
            )
            Student.objects.filter(project=project, is_serving=True).update(is_serving=False)
            serving = None
            for r, artifact in zip(results, saved):
                s = Student.objects.create(
                    project=project,
                    run=run,
                    loss=r["loss"],
                    artifact=artifact,
                    metrics=r,
                    max_length=params["max_length"],
                    is_serving=r["loss"] == chosen,
                )
                serving = s if s.is_serving else serving
            Prediction.objects.filter(project=project).delete()
            Prediction.objects.bulk_create(
                [
                    Prediction(
                        project=project,
                        example_id=int(pk),
                        student=serving,
                        label=int(p.argmax()),
                        confidence=float(p.max()),
                    )
                    for pk, p in zip(all_ids, preds)
                ],
                batch_size=5000,
            )
    except BaseException:
        for artifact in saved:
            artifact_storage().delete(artifact.path)
            if artifact.pk:
                type(artifact).objects.filter(pk=artifact.pk).delete()
        raise
    log(f"Serving student: {kinds.LOSS_LABELS[chosen]} ({len(all_ids)} examples predicted).")
    progress(1.0, "Distillation done")
    return run


def _all_example_texts(project: Project) -> tuple[list[int], list[str]]:
    ids, texts = [], []
    rows = Example.objects.filter(project=project).order_by("id")
    for pk, text, entities in rows.values_list("id", "text", "entities").iterator(2000):
        ids.append(pk)
        texts.append(
            model_text(text, entities if project.task_type == "relation_extraction" else None)
        )
    return ids, texts


# --------------------------------------------------------------------------- serving
_CACHE: dict[tuple, tuple] = {}  # (student id, quantized) -> (model, tokenizer)
_CACHE_LOCK = threading.Lock()


def _load_from_tar(blob: bytes) -> tuple:
    """(model, tokenizer) from a student tar held in memory."""
    from models.ptloss.students import load_student

    with (
        tempfile.TemporaryDirectory(prefix="frugal-student-") as tmp,
        tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar,
    ):
        tar.extractall(tmp, filter="data")
        return load_student(tmp)


def student_folder(student: Student) -> Path:
    """The student's Hugging Face folder, unpacked once per host into the model cache."""
    from django.conf import settings

    folder = Path(settings.FRUGAL_MODEL_CACHE_DIR) / "distill" / f"student-{student.pk}"
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".student-{student.pk}-", dir=folder.parent))
    with (
        artifact_storage().open(student.artifact.path, "rb") as src,
        tarfile.open(fileobj=src, mode="r|") as tar,
    ):
        tar.extractall(tmp, filter="data")
    try:
        tmp.rename(folder)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_serving_model(student: Student) -> tuple:
    """(model, tokenizer) of a student, loaded once per process. On CPU its Linear layers are
    quantized to int8 (dynamic) unless ``settings.FRUGAL_DISTILL_QUANTIZE`` is False: half the
    CPU time per request; probabilities move by ~1e-3."""
    from django.conf import settings

    quantize = bool(getattr(settings, "FRUGAL_DISTILL_QUANTIZE", True))
    key = (student.pk, quantize)
    with _CACHE_LOCK:
        if key not in _CACHE:
            import torch

            from models.ptloss.students import load_student

            model, tokenizer = load_student(student_folder(student))
            if quantize and next(model.parameters()).device.type == "cpu":
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
            _CACHE[key] = (model, tokenizer)
        return _CACHE[key]


def _predict_proba(model, tokenizer, texts: list[str], max_length: int, check=None) -> np.ndarray:
    from models.ptloss.distill import predict_proba
    from models.ptloss.students import encode

    out = np.zeros((len(texts), int(model.config.num_labels)))
    for lo in range(0, len(texts), PREDICT_CHUNK):
        if check is not None:
            check()
        chunk = texts[lo : lo + PREDICT_CHUNK]
        out[lo : lo + len(chunk)] = predict_proba(model, encode(tokenizer, chunk, max_length), 64)
    return out


def predict(*, project: Project, texts: list[str]) -> dict:
    """Labels and probabilities of the serving student for texts (already entity-marked)."""
    student = serving_student(project=project)
    if student is None:
        raise DistillError("This project has no serving student yet: run a distillation first.")
    model, tokenizer = load_serving_model(student)
    probs = _predict_proba(model, tokenizer, texts, student.max_length)
    names = [str(x) for x in project.labels or []]
    if len(names) != probs.shape[1]:
        names = [model.config.id2label[i] for i in range(probs.shape[1])]
    return {
        "student": {"id": student.pk, "loss": student.loss, "run": student.run_id},
        "labels": names,
        "predictions": [
            {
                "label": names[int(p.argmax())],
                "label_index": int(p.argmax()),
                "confidence": float(p.max()),
                "probabilities": [round(float(x), 6) for x in p],
            }
            for p in probs
        ],
    }
