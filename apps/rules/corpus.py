"""A project's texts in memory for the live preview: a per-process LRU cache with a size bound.

Reading 100,000 texts from the database takes about half a second and the preview matches a new
rule at every keystroke, so each process keeps the texts of the projects it previewed lately,
with their joined forms (:class:`models.prboost.matching.JoinedTexts`).

The bound: ``settings.FRUGAL_TEXT_CACHE_CHARS`` characters of text in all (default 50 million;
environment variable of the same name). A cached character costs about 9 bytes once the keyword
and regex forms are built (measured on 100,000 texts of the shared corpora, 9.2 M characters:
1.7 for the texts, 6.8 for the joined forms, whose text takes 4 bytes a character as soon as
one text holds an emoji), so the default holds roughly 0.45 GB per process, five times the
100,000-example review benchmark. The least recently used project goes first; the project in
use stays even when it alone is larger.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from apps.datasets.models import Example, Split
from apps.projects.models import Project
from models.prboost.matching import Corpus, JoinedTexts

DEFAULT_MAX_CHARS = 50_000_000
SPLIT_CODES = {Split.POOL: 0, Split.DEV: 1, Split.TEST: 2}


@dataclass
class ProjectTexts:
    """Every example of a project as one matching corpus, in id order."""

    ids: np.ndarray  # (N,) int64, sorted
    splits: np.ndarray  # (N,) int8: 0 pool, 1 dev, 2 test
    corpus: Corpus
    matcher: JoinedTexts
    chars: int  # characters of text held (what the cache bound counts)


class TextCache:
    """Project id → (signature, ProjectTexts), least recently used first, bounded by characters."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, tuple[tuple, ProjectTexts]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def max_chars() -> int:
        return int(getattr(settings, "FRUGAL_TEXT_CACHE_CHARS", DEFAULT_MAX_CHARS))

    def get(self, project_id: int, signature: tuple) -> ProjectTexts | None:
        with self._lock:
            hit = self._entries.get(project_id)
            if hit is None or hit[0] != signature:
                return None
            self._entries.move_to_end(project_id)
            return hit[1]

    def put(self, project_id: int, signature: tuple, texts: ProjectTexts) -> None:
        with self._lock:
            self._entries[project_id] = (signature, texts)
            self._entries.move_to_end(project_id)
            limit = self.max_chars()
            while len(self._entries) > 1 and self.chars() > limit:
                self._entries.popitem(last=False)

    def chars(self) -> int:
        return sum(entry[1].chars for entry in self._entries.values())

    def project_ids(self) -> list[int]:
        """Cached projects, least recently used first."""
        with self._lock:
            return list(self._entries)

    def forget(self, project_id: int | None = None) -> None:
        with self._lock:
            if project_id is None:
                self._entries.clear()
            else:
                self._entries.pop(project_id, None)


CACHE = TextCache()


# Counting every example of a project of a million takes a sequential scan (~0.25 s); the
# count, which only a deletion changes without also changing a max id or the dev/test numbers,
# is taken again at most this often per process.
COUNT_REFRESH_S = 5.0
_COUNTS: dict[int, tuple[float, int]] = {}
_COUNTS_LOCK = threading.Lock()


def _signature(project: Project) -> tuple:
    """Max id overall, count and max id of dev+test (index-only reads, every call), and the
    count of all examples (at most ``COUNT_REFRESH_S`` old): changes when examples are added,
    removed or change split (gold labeling moves pool examples into dev)."""
    top = Example.objects.filter(project=project).aggregate(top=Max("id"))["top"]
    moved = Example.objects.filter(project=project, split__in=[Split.DEV, Split.TEST]).aggregate(
        n=Count("id"), top=Max("id")
    )
    now = time.monotonic()
    with _COUNTS_LOCK:
        hit = _COUNTS.get(project.pk)
    if hit is None or now - hit[0] > COUNT_REFRESH_S:
        hit = (now, Example.objects.filter(project=project).count())
        with _COUNTS_LOCK:
            _COUNTS[project.pk] = hit
    return (hit[1], top, moved["n"], moved["top"])


def answer_index(project: Project, example_ids: np.ndarray):
    """The language-model answer index over these examples, in this order, or None while the
    project's cache is cold. apps.training owns that cache and depends on this app (its rounds
    read and write rules): imported here, when called, so that no import cycle forms."""
    from apps.training.data import answer_index_for_examples

    return answer_index_for_examples(project, example_ids)


def project_texts(*, project: Project) -> ProjectTexts:
    """The project's texts, from the cache when no example was added, removed or moved since."""
    signature = _signature(project)
    hit = CACHE.get(project.pk, signature)
    if hit is not None:
        return hit
    rows = Example.objects.filter(project=project).order_by("id").values_list("id", "split", "text")
    ids, splits, texts = [], [], []
    for pk, split, text in rows.iterator(chunk_size=20000):
        ids.append(pk)
        splits.append(SPLIT_CODES.get(split, 0))
        texts.append(text)
    id_array = np.asarray(ids, dtype=np.int64)
    corpus = Corpus(texts=texts, answer_index=answer_index(project, id_array))
    loaded = ProjectTexts(
        ids=id_array,
        splits=np.asarray(splits, dtype=np.int8),
        corpus=corpus,
        matcher=JoinedTexts(corpus),
        chars=sum(map(len, texts)),
    )
    CACHE.put(project.pk, signature, loaded)
    return loaded


def forget_project_texts(*, project_id: int | None = None) -> None:
    """Drop one project's cached texts (all projects' with None)."""
    CACHE.forget(project_id)
    with _COUNTS_LOCK:
        if project_id is None:
            _COUNTS.clear()
        else:
            _COUNTS.pop(project_id, None)
