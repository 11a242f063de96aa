"""From the database to ``models/``: a project's examples as datasets, features, corpora, and the
language model's answer index, all read through the models' disk cache.

Order matters and is fixed: every split is in Example id order, so pool and dev positions (which
the saved loop state refers to) stay stable between rounds as long as the examples do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings

from apps.datasets.models import Example, Split
from apps.training.prboost_settings import effective_templates, language_model_name
from models.progress import Progress, ensure_progress, scaled

EXTERNAL_VOTES = "external"  # Example.votes key of imported rule votes (WRENCH weak_labels)


class TrainingDataError(ValueError):
    """The project's data cannot be used for PRBoost as it is; the message says why."""


@dataclass
class ProjectData:
    """A project's splits as ``TextDataset`` objects plus the Example ids of their rows."""

    task_type: str
    label_names: list[str]
    pool: object  # models.data.TextDataset (labels hidden: -1)
    pool_ids: np.ndarray  # (n_pool,) Example ids
    dev: object  # gold dev set
    dev_ids: np.ndarray
    test: object  # gold test set (may be empty)
    test_ids: np.ndarray
    pool_votes: np.ndarray | None = None  # (n_pool, m) imported rule votes, -1 abstain
    dev_votes: np.ndarray | None = None  # (n_dev, m) or None when unknown
    # dev/test examples without a gold label (no part of training or scoring; finalize predicts
    # them so the unsure ones reach the disagreements view) and their Example ids
    unlabeled: object = None  # models.data.TextDataset (labels hidden: -1) or None
    unlabeled_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


@dataclass
class Features:
    pool_X: np.ndarray  # (n_pool, D') the weak learner's features
    dev_X: np.ndarray
    test_X: np.ndarray
    pool_emb: np.ndarray  # (n_pool, D) sentence embeddings (similarity terms)
    dev_emb: np.ndarray
    seconds: float = 0.0
    kind: str = "encoder"  # the learner's features: "encoder" embeddings or "tfidf"
    unlabeled_X: np.ndarray | None = None  # ProjectData.unlabeled's rows (None when there are none)


@dataclass
class Prepared:
    """Everything a round needs besides the loop state."""

    data: ProjectData
    features: Features
    pool_corpus: object  # models.prboost.matching.Corpus
    dev_corpus: object
    proposer: object | None
    templates: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def loop_data(self, *, seed_votes: bool):
        from models.prboost.loop import LoopData
        from models.prboost.matching import LabelMatrix

        pool_votes = dev_votes = None
        if seed_votes and self.data.pool_votes is not None:
            pool_votes = LabelMatrix.from_dense(self.data.pool_votes)
            if self.data.dev_votes is not None:
                dev_votes = LabelMatrix.from_dense(self.data.dev_votes)
        return LoopData(
            dev=self.data.dev,
            pool_X=self.features.pool_X,
            dev_X=self.features.dev_X,
            pool_corpus=self.pool_corpus,
            dev_corpus=self.dev_corpus,
            proposer=self.proposer,
            seed_pool_votes=pool_votes,
            seed_dev_votes=dev_votes,
            dev_ids=self.data.dev_ids,
        )


def cache_dir() -> Path:
    path = Path(settings.FRUGAL_MODEL_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _entities(raw, example_id: int):
    if not isinstance(raw, list) or len(raw) != 2:
        raise TrainingDataError(
            f"example #{example_id} has no pair of entity mentions; relation extraction needs "
            "both on every example"
        )
    spans = []
    for span in raw:
        try:
            spans.append((str(span["text"]), int(span["start"]), int(span["end"])))
        except (KeyError, TypeError, ValueError):
            raise TrainingDataError(
                f"example #{example_id}: an entity mention needs text, start and end"
            ) from None
    return tuple(spans)


def _votes(rows: list, n_classes: int) -> np.ndarray | None:
    """(n, m) imported votes when every row has the same number of them, else None."""
    if not rows:
        return None
    lists = [(v or {}).get(EXTERNAL_VOTES) if isinstance(v, dict) else None for v in rows]
    if any(not isinstance(x, list) for x in lists):
        return None
    widths = {len(x) for x in lists}
    if len(widths) != 1 or 0 in widths:
        return None
    votes = np.asarray(lists, dtype=np.int64)
    if votes.min() < -1 or votes.max() >= n_classes:
        return None
    return votes


LOAD_CHUNK = 5000


def load_project_data(project, progress: Progress | None = None) -> ProjectData:
    """The project's pool, gold dev and gold test sets in Example id order (``progress`` after
    every chunk of ``LOAD_CHUNK`` rows)."""
    from models.data import TextDataset

    progress = ensure_progress(progress)

    names = [str(x) for x in project.labels or []]
    if len(names) < 2:
        raise TrainingDataError("the project needs at least two labels")
    relation = project.task_type == "relation_extraction"
    columns = ["id", "split", "text", "gold_label", "votes"] + (["entities"] if relation else [])
    parts: dict[str, list] = {Split.POOL: [], Split.DEV: [], Split.TEST: []}
    unlabeled = []
    examples = Example.objects.filter(project=project)
    total = examples.count()
    rows = examples.order_by("id").values_list(*columns)
    for done, row in enumerate(rows.iterator(chunk_size=LOAD_CHUNK), start=1):
        if done % LOAD_CHUNK == 0:
            progress(done / total, f"Loading examples ({done:,} of {total:,})")
        split, gold = row[1], row[3]
        if split == Split.POOL:
            parts[Split.POOL].append(row)
        elif gold is not None and 0 <= gold < len(names):
            parts[split].append(row)
        elif gold is None:
            unlabeled.append(row)

    def dataset(items, labelled: bool):
        return TextDataset(
            texts=[r[2] for r in items],
            labels=np.asarray([r[3] if labelled else -1 for r in items], dtype=np.int64),
            label_names=names,
            ids=[str(r[0]) for r in items],
            entities=[_entities(r[5], r[0]) for r in items] if relation else None,
            task_type=project.task_type,
        )

    pool, dev, test = parts[Split.POOL], parts[Split.DEV], parts[Split.TEST]
    if not pool:
        raise TrainingDataError("the project has no pool examples to label; import data first")
    if len(dev) < 2:
        raise TrainingDataError(
            f"PRBoost needs gold labels on the dev set (the project has {len(dev)} dev "
            "examples with a gold label); label some dev examples first"
        )
    pool_votes = _votes([r[4] for r in pool], len(names))
    dev_votes = _votes([r[4] for r in dev], len(names)) if pool_votes is not None else None
    if dev_votes is not None and dev_votes.shape[1] != pool_votes.shape[1]:
        dev_votes = None
    return ProjectData(
        task_type=project.task_type,
        label_names=names,
        pool=dataset(pool, False),
        pool_ids=np.asarray([r[0] for r in pool], dtype=np.int64),
        dev=dataset(dev, True),
        dev_ids=np.asarray([r[0] for r in dev], dtype=np.int64),
        test=dataset(test, True),
        test_ids=np.asarray([r[0] for r in test], dtype=np.int64),
        pool_votes=pool_votes,
        dev_votes=dev_votes,
        unlabeled=dataset(unlabeled, False) if unlabeled else None,
        unlabeled_ids=np.asarray([r[0] for r in unlabeled], dtype=np.int64),
    )


def compute_features(
    data: ProjectData,
    progress: Progress | None = None,
    *,
    prb: dict | None = None,
    kind: str | None = None,
) -> Features:
    """Sentence embeddings (cached on disk) and the learner's features for every split.

    The learner's features follow the project's ``end_model`` (``prb``) unless ``kind`` ("encoder"
    or "tfidf") fixes them: "auto" picks encoder or TF-IDF by 5-fold cross-validation of a
    dev-only model inside the dev set (never on test).
    """
    from apps.training.prboost_settings import encoder_name
    from models.lm import embed_texts
    from models.prboost.learners import text_features

    progress = ensure_progress(progress)
    started = time.perf_counter()
    encoder = encoder_name(prb) if prb is not None else (settings.FRUGAL_ENCODER or None)
    folder = cache_dir()
    steps = [("pool", data.pool), ("dev", data.dev), ("test", data.test)]
    if data.unlabeled is not None:
        steps.append(("unlabeled", data.unlabeled))
    out: dict[str, np.ndarray] = {}
    emb: dict[str, np.ndarray] = {}
    for j, (name, dataset) in enumerate(steps):
        sub = scaled(progress, j / len(steps), (j + 1) / len(steps))

        def embed(texts, sub=sub, name=name):
            return embed_texts(
                list(texts),
                encoder=encoder,
                cache_dir=folder,
                progress=lambda f, m, sub=sub, name=name: sub(f, f"Embedding the {name} set: {m}"),
            )

        if len(dataset) == 0:
            out[name] = np.zeros((0, 1), dtype=np.float32)
            emb[name] = out[name]
            continue
        emb[name] = embed(dataset.texts)
        out[name] = (
            emb[name]
            if dataset.task_type != "relation_extraction"
            else text_features(dataset, embed)
        )
    if kind is None:
        end_model = (prb or {}).get("end_model", "encoder")
        kind = "tfidf" if end_model == "tfidf" else "encoder"
        if end_model == "auto":
            kind = _choose_features(data, out)
    if kind == "tfidf":
        out = _tfidf_features(data)
    if out["test"].shape[1] != out["pool"].shape[1]:
        out["test"] = np.zeros((0, out["pool"].shape[1]), dtype=np.float32)
    unlabeled_X = out.get("unlabeled")
    if unlabeled_X is not None and unlabeled_X.shape[1] != out["pool"].shape[1]:
        unlabeled_X = None
    return Features(
        unlabeled_X=unlabeled_X,
        pool_X=out["pool"],
        dev_X=out["dev"],
        test_X=out["test"],
        pool_emb=emb["pool"],
        dev_emb=emb["dev"],
        seconds=time.perf_counter() - started,
        kind=kind,
    )


def _tfidf_features(data: ProjectData) -> dict[str, np.ndarray]:
    from models.prboost.learners import TfidfFeatures

    present = [d for d in (data.pool, data.dev) if len(d)]
    tf = TfidfFeatures().fit(*present)
    splits = [("pool", data.pool), ("dev", data.dev), ("test", data.test)]
    if data.unlabeled is not None:
        splits.append(("unlabeled", data.unlabeled))
    return {
        name: tf.transform(d) if len(d) else np.zeros((0, 1), dtype=np.float32)
        for name, d in splits
    }


def _choose_features(data: ProjectData, encoder_out: dict[str, np.ndarray]) -> str:
    """ "encoder" or "tfidf": the better 5-fold cross-validated accuracy of a dev-only logistic
    regression inside the dev set (ties and dev sets too small to split go to the encoder)."""
    from models.prboost.learners import EmbeddingClassifier, cv_accuracy

    y = data.dev.labels
    if len(y) < 20 or np.unique(y).size < 2 or len(data.pool) == 0:
        return "encoder"
    K = data.n_classes

    def make():
        return EmbeddingClassifier(n_classes=K, C=10.0)

    try:
        tfidf_dev = _tfidf_features(data)["dev"]
    except ValueError:  # e.g. an empty vocabulary
        return "encoder"
    enc = cv_accuracy(encoder_out["dev"], y, make, folds=5)
    tf = cv_accuracy(tfidf_dev, y, make, folds=5)
    return "tfidf" if tf > enc else "encoder"


# --------------------------------------------------------------------------- answer index
class AnswerIndexView:
    """Rows ``positions`` of a larger answer index, seen as an index of their own (the loop's pool
    or dev corpus over the project-wide index). Implements what matching and proposing read."""

    def __init__(self, index, positions: np.ndarray):
        self.index = index
        # (n,) rows of ``index``; -1 = an example the index does not hold (it matches nothing)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.n = int(self.positions.size)
        inverse = np.full(index.n, -1, dtype=np.int64)
        held = self.positions >= 0
        inverse[self.positions[held]] = np.flatnonzero(held)
        self._inverse = inverse

    @property
    def template_ids(self) -> list[str]:
        return list(self.index.template_ids)

    @property
    def templates(self) -> dict:
        return dict(self.index.templates)

    def __contains__(self, template_id: str) -> bool:
        return template_id in self.index

    def lookup(self, template_id: str, words, k: int | None = None) -> np.ndarray:
        hits = self._inverse[self.index.lookup(template_id, words, k)]
        return np.sort(hits[hits >= 0])

    def topk(self, template_id: str, i: int) -> list[str]:
        row = int(self.positions[i])
        return self.index.topk(template_id, row) if row >= 0 else []


def _index_key(*, lm_name: str, templates: list, k: int, texts: list[str], entities) -> str:
    from models.cache import hash_texts, make_key

    ents = None if entities is None else hash_texts([json.dumps(e) for e in entities])
    return make_key(
        "project-answer-index",
        lm_name,
        [t.to_dict() for t in templates],
        k,
        hash_texts(texts),
        ents,
    )


def _index_path(key: str) -> Path:
    return cache_dir() / "project-answer-index" / f"{key}.npz"


@dataclass
class AnswerIndexPlan:
    """Where a project's answer index lives and what it is computed over."""

    path: Path
    ids: np.ndarray  # (N,) Example ids, pool and dev, id order
    texts: list[str]
    entities: list | None
    templates: list
    lm_name: str | None


def answer_index_plan(project, prb: dict) -> AnswerIndexPlan:
    """The cache file for this exact LM pass (model, templates, k, texts) over the project's pool
    and dev examples (test examples are left out: no rule is proposed from or trained on them)."""
    relation = project.task_type == "relation_extraction"
    columns = ["id", "text"] + (["entities"] if relation else [])
    rows = list(
        Example.objects.filter(project=project, split__in=[Split.POOL, Split.DEV])
        .order_by("id")
        .values_list(*columns)
    )
    ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    texts = [r[1] for r in rows]
    entities = [_entities(r[2], r[0]) for r in rows] if relation else None
    templates = effective_templates(project, prb)
    lm_name = language_model_name(prb)
    if prb["proposer"] == "causal" and lm_name is None:
        from models.lm import default_causal_lm

        lm_label = f"default:{default_causal_lm()}"
    else:
        lm_label = str(lm_name)
    key = _index_key(
        lm_name=lm_label, templates=templates, k=prb["top_k"], texts=texts, entities=entities
    )
    return AnswerIndexPlan(_index_path(key), ids, texts, entities, templates, lm_name)


def project_answer_index(
    project, prb: dict, *, compute: bool, progress: Progress | None = None
) -> tuple[object | None, np.ndarray]:
    """The LM answer index over the project's pool and dev examples and their ids.

    Read from ``FRUGAL_MODEL_CACHE_DIR`` when this exact pass was done before; otherwise
    computed when ``compute`` (the one-time LM pass, itself cached per batch so an interrupted
    pass resumes), else None. The n-gram proposer needs none.
    """
    from models.prboost.answers import AnswerIndex

    if prb["proposer"] == "ngram":
        return None, np.zeros(0, dtype=np.int64)
    plan = answer_index_plan(project, prb)
    path, ids, texts, entities = plan.path, plan.ids, plan.texts, plan.entities
    templates, lm_name = plan.templates, plan.lm_name
    if path.is_file():
        return AnswerIndex.load(path), ids
    if not compute:
        return None, ids
    progress = ensure_progress(progress)
    progress(0.0, "Loading the language model")
    from models.prboost.answers import compute_answer_index

    if prb["proposer"] == "masked":
        from models.lm import load_masked_lm

        lm = load_masked_lm(lm_name)
    else:
        from models.lm import load_causal_lm

        lm = load_causal_lm(lm_name)
    index = compute_answer_index(
        lm,
        texts,
        templates,
        k=prb["top_k"],
        entities=entities,
        cache_dir=cache_dir(),
        progress=scaled(progress, 0.02, 1.0),
    )
    index.save(path)
    return index, ids


def make_proposer(prb: dict, templates: list):
    from models.prboost.propose import (
        CombinedProposer,
        MaskedLMProposer,
        NgramProposer,
        PromptProposer,
    )

    if prb["proposer"] == "ngram":
        return NgramProposer()
    common = {"templates": templates, "answer_k": prb["top_k"], "cache_dir": cache_dir()}
    if prb["proposer"] == "masked":
        lm_proposer = MaskedLMProposer(language_model_name(prb), **common)
    else:
        lm_proposer = PromptProposer(lm=language_model_name(prb), **common)
    if prb["add_ngrams"]:
        return CombinedProposer([lm_proposer, NgramProposer()])
    return lm_proposer


def prepare(project, prb: dict, progress: Progress | None = None) -> Prepared:
    """Examples, features, corpora and proposer for a round (reads the warm cache; computes
    what is missing)."""
    from models.prboost.matching import Corpus

    progress = ensure_progress(progress)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    progress(0.0, "Loading examples")
    data = load_project_data(project, scaled(progress, 0.0, 0.05))
    timings["load_examples"] = time.perf_counter() - t0
    features = compute_features(data, scaled(progress, 0.05, 0.4), prb=prb)
    timings["features"] = features.seconds
    t0 = time.perf_counter()
    index, ids = project_answer_index(project, prb, compute=True, progress=scaled(progress, 0.4, 1))
    pool_index = dev_index = None
    if index is not None:
        position = {int(pk): i for i, pk in enumerate(ids)}
        pool_index = AnswerIndexView(index, [position[int(pk)] for pk in data.pool_ids])
        dev_index = AnswerIndexView(index, [position[int(pk)] for pk in data.dev_ids])
    timings["answer_index"] = time.perf_counter() - t0
    templates = effective_templates(project, prb)
    pool_corpus = Corpus.from_dataset(
        data.pool,
        embeddings=features.pool_emb,
        answer_index=pool_index,
        anchor_embeddings=features.dev_emb,
    )
    dev_corpus = Corpus.from_dataset(data.dev, embeddings=features.dev_emb, answer_index=dev_index)
    return Prepared(
        data=data,
        features=features,
        pool_corpus=pool_corpus,
        dev_corpus=dev_corpus,
        proposer=make_proposer(prb, templates),
        templates=templates,
        timings=timings,
    )


def answer_index_for_examples(project, example_ids: np.ndarray):
    """For apps.rules' live preview: the cached answer index over these examples (in this
    order), or None when the cache is cold or the proposer uses no language model."""
    from apps.training.prboost_settings import prboost_settings

    try:
        index, ids = project_answer_index(project, prboost_settings(project), compute=False)
    except Exception:  # noqa: BLE001 - a preview without prompt matches beats a broken page
        return None
    if index is None:
        return None
    position = {int(pk): i for i, pk in enumerate(ids)}
    rows = [position.get(int(pk), -1) for pk in example_ids]
    return AnswerIndexView(index, np.asarray(rows, dtype=np.int64))
