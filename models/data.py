"""Datasets as plain containers: texts, integer labels (-1 = unknown) and, for relation extraction,
the two entity spans. ``load_wrench`` reads the WRENCH benchmark folders in ../shared/data.

This is also the container the web workers build from the database and pass into ``models/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

TaskType = Literal["text_classification", "relation_extraction"]
TASK_TYPES: tuple[str, ...] = ("text_classification", "relation_extraction")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

Span = tuple[str, int, int]
"""An entity mention: (surface text, start, end), character offsets into the text, end exclusive."""


class DataError(ValueError):
    """A dataset that cannot be used as given; the message names the file, field and reason."""


@dataclass
class TextDataset:
    """N examples: ``texts`` (N,), ``labels`` (N,) int64 with -1 = unknown, ``ids`` (N,).

    ``entities`` is None for text classification; for relation extraction it holds one
    ``(head, tail)`` pair of spans per example.
    """

    texts: list[str]
    labels: np.ndarray  # (N,) int64, -1 = unknown
    label_names: list[str]
    ids: list[str]
    entities: list[tuple[Span, Span]] | None = None
    task_type: TaskType = "text_classification"

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self.ids = [str(i) for i in self.ids]
        self.label_names = [str(x) for x in self.label_names]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.texts)
        if not all(isinstance(t, str) for t in self.texts):
            raise DataError("every text must be a str")
        if self.labels.shape != (n,):
            raise DataError(f"labels has {self.labels.shape[0]} entries for {n} texts")
        if len(self.ids) != n:
            raise DataError(f"ids has {len(self.ids)} entries for {n} texts")
        if len(set(self.ids)) != n:
            raise DataError("ids must be unique")
        if self.task_type not in TASK_TYPES:
            raise DataError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        k = len(self.label_names)
        if n and (self.labels.min() < -1 or self.labels.max() >= k):
            raise DataError(f"labels must lie in -1..{k - 1} for {k} label names")
        if self.task_type == "relation_extraction" and self.entities is None:
            raise DataError("relation extraction needs entities (one pair of spans per text)")
        if self.entities is not None:
            if len(self.entities) != n:
                raise DataError(f"entities has {len(self.entities)} entries for {n} texts")
            self.entities = [(_as_span(pair[0]), _as_span(pair[1])) for pair in self.entities]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def labeled(self) -> np.ndarray:
        """Bool mask (N,) of examples whose label is known."""
        return self.labels >= 0

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The examples at ``indices`` (in that order), as a new dataset."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx].copy(),
            label_names=list(self.label_names),
            ids=[self.ids[i] for i in idx],
            entities=None if self.entities is None else [self.entities[i] for i in idx],
            task_type=self.task_type,
        )

    def with_labels(self, labels: np.ndarray) -> TextDataset:
        """A copy with other labels (e.g. hidden: ``np.full(n, -1)``)."""
        return TextDataset(
            texts=self.texts,
            labels=np.asarray(labels, dtype=np.int64),
            label_names=self.label_names,
            ids=self.ids,
            entities=self.entities,
            task_type=self.task_type,
        )


def _as_span(span: Sequence) -> Span:
    if len(span) != 3:
        raise DataError(f"a span is (text, start, end), got {span!r}")
    text, start, end = span
    start, end = int(start), int(end)
    if not 0 <= start <= end:
        raise DataError(f"span offsets must satisfy 0 <= start <= end, got {span!r}")
    return (str(text), start, end)


def _is_trec(folder: Path) -> bool:
    return folder.name.lower().endswith("trec")


def load_wrench(
    folder: str | Path,
    split: Literal["train", "valid", "test"],
    *,
    strip_leaking_word: bool | None = None,
) -> tuple[TextDataset, np.ndarray]:
    """One split of a WRENCH folder -> (dataset, votes (N, m) int64 with -1 = abstain).

    - Rows keep the file's order; ``ids`` are the file's keys.
    - Relation sets (``data.entity1/entity2/span1/span2``) get ``entities`` and
      ``task_type="relation_extraction"``.
    - wrench-trec's test texts begin with their fine-grained label ("dist How far ..."), which leaks
      the answer: that first word is stripped (``strip_leaking_word``: None = only for a folder
      named ``*trec`` and the test split).
    - wrench-sms: the votes of valid/test do not belong to their texts (see the data README); use
      the train votes, or re-apply the rules.
    """
    folder = Path(folder)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    path = folder / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (a WRENCH folder holds train/valid/test.json)")
    label_path = folder / "label.json"
    if not label_path.is_file():
        raise DataError(f"{label_path}: no such file")
    with label_path.open(encoding="utf-8") as f:
        label_map = json.load(f)
    try:
        label_names = [label_map[str(i)] for i in range(len(label_map))]
    except KeyError as exc:
        raise DataError(f"{label_path}: keys must be 0..K-1, missing {exc}") from None
    with path.open(encoding="utf-8") as f:
        rows = json.load(f)
    if not isinstance(rows, dict):
        raise DataError(f"{path}: expected an object {{id: example}}")

    strip = (
        (_is_trec(folder) and split == "test")
        if strip_leaking_word is None
        else bool(strip_leaking_word)
    )
    ids: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    votes: list[list[int]] = []
    entities: list[tuple[Span, Span]] = []
    relation = None
    for key, row in rows.items():
        try:
            data = row["data"]
            text = data["text"]
            label = int(row.get("label", -1))
            weak = [int(v) for v in row.get("weak_labels", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: example {key!r} is malformed ({exc})") from None
        is_rel = "entity1" in data
        if relation is None:
            relation = is_rel
        elif relation != is_rel:
            raise DataError(f"{path}: example {key!r} mixes relation and plain examples")
        shift = 0
        if strip:
            first, sep, rest = text.partition(" ")
            if sep:
                shift = len(first) + 1
                text = rest
        if is_rel:
            try:
                (s1, e1), (s2, e2) = data["span1"], data["span2"]
                pair = (
                    (str(data["entity1"]), int(s1) - shift, int(e1) - shift),
                    (str(data["entity2"]), int(s2) - shift, int(e2) - shift),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: example {key!r} has bad entity fields ({exc})") from None
            entities.append(pair)
        ids.append(str(key))
        texts.append(text)
        labels.append(label)
        votes.append(weak)
    m = len(votes[0]) if votes else 0
    if any(len(v) != m for v in votes):
        raise DataError(f"{path}: examples have different numbers of weak labels")
    vote_matrix = np.asarray(votes, dtype=np.int64).reshape(len(votes), m)
    dataset = TextDataset(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),
        label_names=label_names,
        ids=ids,
        entities=entities if relation else None,
        task_type="relation_extraction" if relation else "text_classification",
    )
    return dataset, vote_matrix


def load_wrench_splits(
    folder: str | Path,
) -> dict[str, tuple[TextDataset, np.ndarray]]:
    """Every split present in a WRENCH folder, by name (wrench-chemprot has no train)."""
    folder = Path(folder)
    return {s: load_wrench(folder, s) for s in SPLITS if (folder / f"{s}.json").is_file()}
