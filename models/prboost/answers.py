"""The language model's answers, computed once: answer vocabulary, answer index, the LM pass.

- ``AnswerVocab``: the tokens that may answer a template — whole content words only. For a
  byte-level BPE (SmolLM2, GPT-2, RoBERTa) that is tokens starting with the space marker "Ġ" whose
  rest is alphabetic; for SentencePiece the "▁" marker; for WordPiece (BERT) tokens that are not
  "##" pieces. Words shorter than 3 letters and English stop words are dropped. Tokens spelling the
  same word in another case (" Money", " money") share one word id, their probabilities summed.
- ``AnswerIndex``: per template, every example's top-k answer word ids (N, k) plus the inverted
  index word -> sorted example ids (CSR), so matching a prompt rule is a slice and a union, never a
  model call. Saved to and loaded from one ``.npz`` file.
- ``compute_answer_index``: the one-time LM pass over a corpus for a list of templates, batched,
  cached on disk per chunk of prompts (resumable) and per template (a rerun reads one file).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.cache import ArrayCache, CacheStore, hash_texts, make_key
from models.prboost.templates import Template, TemplateError, build_prompts
from models.progress import Progress, ensure_progress, scaled

__all__ = [
    "AnswerIndex",
    "AnswerIndexSet",
    "AnswerVocab",
    "answer_vocab_for",
    "compute_answer_index",
    "stop_words",
]

_EXTRA_STOP_WORDS = frozenset(
    {
        "also", "are", "aren", "can", "could", "did", "didn", "does", "doesn", "don", "got", "had",
        "has", "have", "having", "isn", "just", "like", "lot", "lots", "make", "made", "may",
        "might", "must", "need", "really", "shall", "should", "such", "thing", "things", "use",
        "used", "using", "very", "want", "way", "will", "would", "yes", "yet",
    }
)  # fmt: skip


def _default_stop_words() -> frozenset[str]:
    return stop_words()


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words plus a few auxiliaries and fillers."""
    # Imported on first use: scikit-learn costs ~0.6 s, and the web processes that import
    # this module for rule keys and descriptions never need it.
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _EXTRA_STOP_WORDS


def __getattr__(name: str) -> Any:
    if name == "STOP_WORDS":  # the same set, computed on first access
        return stop_words()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DICTIONARY: frozenset[str] | None = None


def default_dictionary() -> frozenset[str]:
    """Known English words: the ``english-words`` lists (web2 + GCIDE) plus the whole words of the
    default encoder's WordPiece vocabulary (modern words such as "website", "youtube").

    A BPE vocabulary holds many word starts that are not words ("Ġwor", "Ġunbelie", "Ġincl");
    keeping only dictionary words removes them."""
    global _DICTIONARY
    if _DICTIONARY is None:
        from english_words import get_english_words_set

        words = set(get_english_words_set(["web2", "gcide"], lower=True, alpha=True))
        try:
            from models.lm import default_encoder

            vocab_file = Path(default_encoder()) / "vocab.txt"
            if vocab_file.exists():
                lines = vocab_file.read_text(encoding="utf-8").splitlines()
                words.update(w for w in lines if _ALPHA.fullmatch(w))
        except Exception:  # noqa: BLE001, S110 - the encoder's words are an optional extra
            pass
        _DICTIONARY = frozenset(w.lower() for w in words)
    return _DICTIONARY


_ALPHA = re.compile(r"[A-Za-z]+")
ANSWER_CHUNK = 256  # prompts per disk-cache entry of the LM pass (the unit of resumption)


@dataclass
class AnswerVocab:
    """Allowed answer tokens: ``token_ids`` (T,) -> ``token_word`` (T,) -> ``words`` (W,)."""

    words: list[str]
    token_ids: np.ndarray  # (T,) int64
    token_word: np.ndarray  # (T,) int64
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.token_ids = np.asarray(self.token_ids, dtype=np.int64)
        self.token_word = np.asarray(self.token_word, dtype=np.int64)
        self._index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def word_id(self, word: str) -> int:
        """The word's id, or -1 when it can never be an answer (not in the vocabulary)."""
        return self._index.get(word.strip().lower(), -1)

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update("\n".join(self.words).encode())
        h.update(self.token_ids.tobytes())
        h.update(self.token_word.tobytes())
        return h.hexdigest()

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[str],
        *,
        stop_words: Iterable[str] | None = None,
        min_length: int = 3,
        dictionary: Iterable[str] | None = None,
        use_dictionary: bool = True,
    ) -> AnswerVocab:
        """Filter a tokenizer's vocabulary (``tokens[id]`` = token string) to whole content words.

        ``dictionary``: the known words (default ``default_dictionary()``); ``use_dictionary=False``
        keeps every alphabetic word-initial token (for languages the dictionary does not cover).
        """
        stop = (
            _default_stop_words()
            if stop_words is None
            else frozenset(w.lower() for w in stop_words)
        )
        known: frozenset[str] | None = None
        if use_dictionary:
            known = (
                default_dictionary()
                if dictionary is None
                else frozenset(w.lower() for w in dictionary)
            )
        n_g = sum(1 for t in tokens if t.startswith("Ġ"))
        n_sp = sum(1 for t in tokens if t.startswith("▁"))
        n_wp = sum(1 for t in tokens if t.startswith("##"))
        least = max(10, len(tokens) // 100)  # a marker on >= 1% of the tokens is the scheme's
        if n_g >= max(n_sp, least):
            marker: str | None = "Ġ"
        elif n_sp >= least:
            marker = "▁"
        else:
            marker = None  # WordPiece or word-level: every non-"##" token starts a word
        words: list[str] = []
        index: dict[str, int] = {}
        token_ids: list[int] = []
        token_word: list[int] = []
        for tid, tok in enumerate(tokens):
            if not tok:
                continue
            if marker is not None:
                if not tok.startswith(marker):
                    continue
                body = tok[len(marker) :]
            else:
                if n_wp and tok.startswith("##"):
                    continue
                body = tok
            if len(body) < min_length or not _ALPHA.fullmatch(body):
                continue
            word = body.lower()
            if word in stop or (known is not None and word not in known):
                continue
            if word not in index:
                index[word] = len(words)
                words.append(word)
            token_ids.append(tid)
            token_word.append(index[word])
        if not words:
            raise ValueError("the tokenizer vocabulary has no whole-word content tokens")
        return cls(words, np.array(token_ids), np.array(token_word))


_VOCABS: dict[str, AnswerVocab] = {}


def answer_vocab_for(lm: Any) -> AnswerVocab:
    """The default ``AnswerVocab`` of a loaded ``CausalLM``/``MaskedLM`` (built once per model)."""
    if lm.model_id not in _VOCABS:
        _VOCABS[lm.model_id] = AnswerVocab.from_tokens(lm.vocab_tokens())
    return _VOCABS[lm.model_id]


@dataclass
class _Table:
    ids: np.ndarray  # (N, k) int32 word ids, best first, -1 = none
    probs: np.ndarray  # (N, k) float32
    indptr: np.ndarray  # (W + 1,) int64
    postings: np.ndarray  # (nnz,) int32 example ids, sorted within each word
    ranks: np.ndarray  # (nnz,) int8 rank of the word in that example's top-k

    @classmethod
    def build(cls, ids: np.ndarray, probs: np.ndarray, n_words: int) -> _Table:
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        n, k = ids.shape
        flat = ids.ravel()  # (N*k,) row-major: example i's words at i*k .. i*k+k-1
        keep = np.flatnonzero(flat >= 0)
        words = flat[keep]
        order = np.argsort(words, kind="stable")  # stable: example ids stay sorted per word
        postings = (keep[order] // max(k, 1)).astype(np.int32)
        ranks = (keep[order] % max(k, 1)).astype(np.int8)
        counts = np.bincount(words, minlength=n_words)
        indptr = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(ids, np.asarray(probs, dtype=np.float32), indptr, postings, ranks)


class AnswerIndex:
    """Top-k LM answer words per example and template, with an inverted index word -> examples."""

    def __init__(
        self,
        words: Sequence[str],
        n: int,
        k: int,
        *,
        model_id: str = "",
        templates: Sequence[Template] = (),
    ) -> None:
        self.words = list(words)  # (W,)
        self.n = int(n)
        self.k = int(k)
        self.model_id = model_id
        self.templates: dict[str, Template] = {t.id: t for t in templates}
        self._word_index = {w: i for i, w in enumerate(self.words)}
        self._tables: dict[str, _Table] = {}

    # building -------------------------------------------------------------------------------
    def add(
        self, template: Template | str, ids: np.ndarray, probs: np.ndarray | None = None
    ) -> None:
        """Add one template's answers: ``ids`` (N, k) word ids best first (-1 = none)."""
        tid = template if isinstance(template, str) else template.id
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[0] != self.n:
            raise ValueError(f"answers for {tid}: expected ({self.n}, k) word ids, got {ids.shape}")
        if ids.size and (ids.max() >= len(self.words) or ids.min() < -1):
            raise ValueError(f"answers for {tid}: word ids outside 0..{len(self.words) - 1}")
        if probs is None:
            probs = np.zeros(ids.shape, dtype=np.float32)
        self._tables[tid] = _Table.build(ids, probs, len(self.words))
        if not isinstance(template, str):
            self.templates[tid] = template

    @property
    def template_ids(self) -> list[str]:
        return list(self._tables)

    def __contains__(self, template_id: str) -> bool:
        return template_id in self._tables

    def _table(self, template_id: str) -> _Table:
        try:
            return self._tables[template_id]
        except KeyError:
            raise KeyError(
                f"no LM answers for template {template_id!r} (have: {', '.join(self._tables)})"
            ) from None

    def word_id(self, word: str) -> int:
        return self._word_index.get(word.strip().lower(), -1)

    # reading --------------------------------------------------------------------------------
    def lookup(self, template_id: str, words: Iterable[str], k: int | None = None) -> np.ndarray:
        """Sorted int64 ids of the examples whose top-``k`` (default all k) answers hold a word."""
        table = self._table(template_id)
        parts = []
        for w in words:
            wid = self.word_id(w)
            if wid < 0:
                continue
            lo, hi = table.indptr[wid], table.indptr[wid + 1]
            if hi == lo:
                continue
            if k is not None and k < self.k:
                parts.append(table.postings[lo:hi][table.ranks[lo:hi] < k])
            else:
                parts.append(table.postings[lo:hi])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        if len(parts) == 1:
            return parts[0].astype(np.int64)
        total = sum(len(p) for p in parts)
        if total * 16 > self.n:  # dense union: a mask is cheaper than sorting
            mask = np.zeros(self.n, dtype=bool)
            for p in parts:
                mask[p] = True
            return np.flatnonzero(mask).astype(np.int64)
        merged = np.sort(np.concatenate(parts)).astype(np.int64)  # sort + drop repeats: faster
        if merged.size < 2:  # than np.unique's hash path
            return merged
        return merged[np.r_[True, merged[1:] != merged[:-1]]]

    def topk(self, template_id: str, i: int) -> list[str]:
        """Example ``i``'s answer words under the template, best first."""
        return [self.words[j] for j in self._table(template_id).ids[i] if j >= 0]

    def topk_ids(self, template_id: str) -> np.ndarray:
        """(N, k) int32 word ids, best first, -1 = none."""
        return self._table(template_id).ids

    def topk_probs(self, template_id: str) -> np.ndarray:
        """(N, k) float32 probabilities over the answer vocabulary."""
        return self._table(template_id).probs

    def document_frequency(self, template_id: str) -> np.ndarray:
        """(W,) int64: in how many examples' top-k each word appears."""
        return np.diff(self._table(template_id).indptr)

    # persistence ----------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything ``from_arrays`` needs, as named arrays (for a file or an ``ArrayCache``)."""
        meta = {
            "format": 1,
            "n": self.n,
            "k": self.k,
            "model_id": self.model_id,
            "words": self.words,
            "templates": [t.to_dict() for t in self.templates.values()],
            "table_ids": self.template_ids,
        }
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for j, tid in enumerate(self.template_ids):
            t = self._tables[tid]
            for name in ("ids", "probs", "indptr", "postings", "ranks"):
                arrays[f"t{j}_{name}"] = getattr(t, name)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> AnswerIndex:
        """Inverse of ``to_arrays`` (``arrays``: a dict, or an open ``.npz``)."""
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != 1:
            raise ValueError(f"unknown answer index format {meta.get('format')!r}")
        index = cls(
            meta["words"],
            meta["n"],
            meta["k"],
            model_id=meta["model_id"],
            templates=[Template.from_dict(d) for d in meta["templates"]],
        )
        names = ("ids", "probs", "indptr", "postings", "ranks")
        for j, tid in enumerate(meta["table_ids"]):
            index._tables[tid] = _Table(*(arrays[f"t{j}_{name}"] for name in names))
        return index

    def save(self, path: Path | str) -> None:
        """One ``.npz`` file (written atomically) holding everything ``load`` needs."""
        path = Path(path)
        arrays = self.to_arrays()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> AnswerIndex:
        with np.load(Path(path), allow_pickle=False) as z:
            try:
                return cls.from_arrays(z)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc


def compute_answer_index(
    lm: Any,
    texts: Sequence[str],
    templates: Sequence[Template],
    k: int = 10,
    entities: Sequence[tuple[Any, Any]] | None = None,
    batch_size: int | None = None,
    cache_dir: Path | str | CacheStore | None = None,
    progress: Progress | None = None,
    *,
    vocab: AnswerVocab | None = None,
    use_cache: bool = True,
) -> AnswerIndex:
    """The one-time LM pass: top-k answer words of every text under every template.

    ``lm`` is a loaded ``CausalLM`` (plain/chat templates) or ``MaskedLM`` (mask templates).
    ``batch_size`` None: 4 on CPU (bench: fastest there), 64 on a GPU.
    Results are cached on disk by (model id, vocabulary, k, prompt content): per chunk of
    ``ANSWER_CHUNK`` prompts, so an interrupted pass resumes where it stopped, and per template,
    so a second pass over the same texts reads one file per template and runs no model.
    """
    if not templates:
        raise TemplateError("compute_answer_index needs at least one template")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    progress = ensure_progress(progress)
    if batch_size is None:  # measured: padding costs more than batching saves on CPU
        batch_size = 64 if str(getattr(lm, "device", "cpu")).startswith("cuda") else 4
    vocab = vocab or answer_vocab_for(lm)
    cache = ArrayCache(cache_dir, "answers", enabled=use_cache)
    vkey = vocab.digest()
    index = AnswerIndex(vocab.words, len(texts), min(k, len(vocab)), model_id=lm.model_id)
    prompts = {t.id: build_prompts(lm, t, texts, entities) for t in templates}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing: list[Template] = []
    for t in templates:
        hit = cache.get_many(_whole_key(lm, vkey, k, prompts[t.id]), ("ids", "probs"))
        if hit is not None and hit["ids"].shape[0] == len(texts):
            found[t.id] = (hit["ids"], hit["probs"])
        else:
            missing.append(t)
    shared = [t for t in missing if _text_first(t)]
    if len(shared) < 2 or not hasattr(lm, "next_token_topk_suffixes"):
        shared = []
    units = max(len(missing), 1)
    done = 0
    if shared:  # the example text is a common prefix: run it once for all these templates
        sub = scaled(progress, 0.0, len(shared) / units)
        suffix = {t.id: t.text[len("{text}") :] for t in shared}
        first = prompts[shared[0].id]
        prefixes = [p[: len(p) - len(suffix[shared[0].id])] for p in first]
        parts: dict[str, list[dict[str, np.ndarray]]] = {t.id: [] for t in shared}
        for start in range(0, len(texts), ANSWER_CHUNK):
            stop = min(start + ANSWER_CHUNK, len(texts))
            need, keys = [], {}
            for t in shared:
                keys[t.id] = _chunk_key(lm, vkey, k, prompts[t.id][start:stop])
                got = cache.get_many(keys[t.id], ("ids", "probs"))
                if got is None or got["ids"].shape[0] != stop - start:
                    need.append(t)
                else:
                    parts[t.id].append(got)
            if need:
                results = lm.next_token_topk_suffixes(
                    prefixes[start:stop], [suffix[t.id] for t in need], k, vocab, batch_size
                )
                for t, (ids, probs) in zip(need, results):
                    got = {"ids": ids, "probs": probs}
                    cache.put_many(keys[t.id], got)
                    parts[t.id].append(got)
            sub(stop / max(len(texts), 1), f"{'+'.join(suffix)}: LM answers {stop}/{len(texts)}")
        for t in shared:
            found[t.id] = _join(parts[t.id], index.k)
            cache.put_many(_whole_key(lm, vkey, k, prompts[t.id]), _as_dict(found[t.id]))
        done = len(shared)
    for t in missing:
        if t.id in found:
            continue
        sub = scaled(progress, done / units, (done + 1) / units)
        chunks = []
        ps = prompts[t.id]
        for start in range(0, len(ps), ANSWER_CHUNK):
            chunk = ps[start : start + ANSWER_CHUNK]
            key = _chunk_key(lm, vkey, k, chunk)
            got = cache.get_many(key, ("ids", "probs"))
            if got is None or got["ids"].shape[0] != len(chunk):
                ids, probs = lm.next_token_topk(chunk, k, vocab, batch_size=batch_size)
                got = {"ids": ids, "probs": probs}
                cache.put_many(key, got)
            chunks.append(got)
            end = min(start + ANSWER_CHUNK, len(ps))
            sub(end / max(len(ps), 1), f"{t.id}: LM answers {end}/{len(ps)}")
        found[t.id] = _join(chunks, index.k)
        cache.put_many(_whole_key(lm, vkey, k, ps), _as_dict(found[t.id]))
        done += 1
    for t in templates:
        index.add(t, *found[t.id])
    progress(1.0, f"LM answers for {len(texts)} texts x {len(templates)} templates")
    return index


def _whole_key(lm: Any, vkey: str, k: int, prompts: Sequence[str]) -> str:
    return make_key("answers", lm.model_id, vkey, k, hash_texts(prompts))


def _chunk_key(lm: Any, vkey: str, k: int, prompts: Sequence[str]) -> str:
    return make_key("answers-chunk", lm.model_id, vkey, k, hash_texts(prompts))


def _text_first(t: Template) -> bool:
    """A plain template "{text}<fixed question>" whose question starts with white space."""
    rest = t.text[len("{text}") :]
    return (
        t.style == "plain"
        and t.text.startswith("{text}")
        and rest[:1].isspace()
        and "{e1}" not in rest
        and "{e2}" not in rest
    )


def _join(parts: list[dict[str, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    return np.concatenate([p["ids"] for p in parts]), np.concatenate([p["probs"] for p in parts])


def _as_dict(pair: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    return {"ids": pair[0], "probs": pair[1]}


class AnswerIndexSet:
    """Several answer indices over the same examples seen as one (e.g. a causal LM's and a masked
    LM's, whose vocabularies differ): each template id is answered by the index that holds it."""

    def __init__(self, *indices: AnswerIndex | AnswerIndexSet) -> None:
        flat: list[AnswerIndex] = []
        for index in indices:
            flat.extend(index.parts if isinstance(index, AnswerIndexSet) else [index])
        if not flat:
            raise ValueError("AnswerIndexSet needs at least one index")
        sizes = {index.n for index in flat}
        if len(sizes) != 1:
            raise ValueError(f"answer indices over different numbers of examples: {sorted(sizes)}")
        self.parts = flat
        self.n = flat[0].n
        self._route: dict[str, AnswerIndex] = {}
        for index in flat:
            for tid in index.template_ids:
                self._route.setdefault(tid, index)

    @property
    def template_ids(self) -> list[str]:
        return list(self._route)

    @property
    def templates(self) -> dict[str, Template]:
        out: dict[str, Template] = {}
        for index in self.parts:
            out.update({k: v for k, v in index.templates.items() if k not in out})
        return out

    def __contains__(self, template_id: str) -> bool:
        return template_id in self._route

    def part(self, template_id: str) -> AnswerIndex:
        try:
            return self._route[template_id]
        except KeyError:
            raise KeyError(
                f"no LM answers for template {template_id!r} (have: {', '.join(self._route)})"
            ) from None

    def lookup(self, template_id: str, words: Iterable[str], k: int | None = None) -> np.ndarray:
        return self.part(template_id).lookup(template_id, words, k)

    def topk(self, template_id: str, i: int) -> list[str]:
        return self.part(template_id).topk(template_id, i)
