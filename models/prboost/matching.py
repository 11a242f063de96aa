"""The matching engine: m rules on n examples -> a sparse label matrix (n, m), -1 = abstain.

How it stays fast on a million documents (200 keyword + 20 regex rules: ~7 CPU seconds):
- keyword rules: every distinct word of every rule goes into ONE Aho-Corasick automaton, which scans
  a normalized concatenation of the documents (NUL-separated) once, chunk by chunk (~1M chars);
  hit positions map to documents with ``np.searchsorted`` over the separator positions and word
  boundaries are checked with a code-point lookup table, all vectorized. For ASCII documents the
  automaton holds each word once per possible preceding character (" free", "(free", ...), so it
  only reports hits at word starts. A sparse product (documents x words) @ (words x rules) turns
  word hits into rule matches ("any"/"all").
- regex rules: one RE2 set holds all patterns; each document is scanned once for all of them, in
  linear time.
- prompt rules: a lookup in the cached answer index (word -> sorted example ids), no inference;
  the optional similarity term is one matrix-vector product.
- similarity rules: one matrix product of the embeddings with the anchors.
- ``n_jobs > 1`` splits keyword/regex matching over forked processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Protocol, runtime_checkable

import ahocorasick
import numpy as np
import re2
import scipy.sparse as sp

from models.data import Span, TextDataset
from models.prboost.rules import (
    KeywordRule,
    PromptRule,
    RegexRule,
    Rule,
    RuleError,
    SimilarityRule,
    is_word_char,
    normalize_text,
)
from models.progress import Progress, ensure_progress, scaled

CHUNK_CHARS = 1 << 20  # characters of text per keyword-scan chunk
SET_MAX_MEM = 256 << 20  # RE2 memory budget for the set of all regex rules of one call
_SEP = "\x00"


# ---------------------------------------------------------------------------------------------
# the label matrix


class LabelMatrix:
    """Votes of m rules on n examples, sparse: (n, m), label index or -1 = abstain.

    Stored as a scipy sparse array (CSC and/or CSR, each built on first use) whose values are
    ``label + 1`` (so that abstain is the implicit zero). Build one with ``from_dense``,
    ``from_matches`` or ``apply_rules``.
    """

    def __init__(self, matrix: sp.sparray | sp.spmatrix) -> None:
        """From a scipy sparse (n, m) matrix of ``label + 1``; CSR input stays CSR until a
        column-wise view is needed (row chunks of a big matrix convert nothing)."""
        if sp.issparse(matrix) and matrix.format == "csr":
            matrix = sp.csr_array(matrix)
        else:
            matrix = sp.csc_array(matrix)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        if matrix.nnz and matrix.data.min() < 0:
            raise ValueError("LabelMatrix values are label + 1 and must be >= 1")
        if matrix.dtype != np.int16:
            matrix = matrix.astype(np.int16)
        self._shape: tuple[int, int] = (int(matrix.shape[0]), int(matrix.shape[1]))
        self._csc: sp.csc_array | None = matrix if matrix.format == "csc" else None
        self._csr: sp.csr_array | None = matrix if matrix.format == "csr" else None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dense(cls, votes: np.ndarray) -> LabelMatrix:
        """From a dense (n, m) array of votes with -1 = abstain (e.g. WRENCH ``weak_labels``)."""
        votes = np.asarray(votes)
        if votes.ndim != 2:
            raise ValueError(f"votes must be 2-D (n, m), got shape {votes.shape}")
        if votes.size and votes.min() < -1:
            raise ValueError("votes must be class indices >= 0 or -1 for abstain")
        if votes.size and votes.max() >= np.iinfo(np.int16).max:
            raise ValueError("too many classes for an int16 label matrix")
        return cls(sp.csc_array((votes + 1).astype(np.int16)))

    @classmethod
    def from_matches(
        cls, n: int, matches: Sequence[np.ndarray], labels: Sequence[int]
    ) -> LabelMatrix:
        """Column j votes ``labels[j]`` on the rows ``matches[j]`` (sorted unique indices)."""
        if len(matches) != len(labels):
            raise ValueError("one label per column of matches is needed")
        m = len(matches)
        counts = np.fromiter((len(x) for x in matches), dtype=np.int64, count=m)
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        if m:
            indices = np.concatenate([np.asarray(x, dtype=np.int64) for x in matches])
        else:
            indices = np.zeros(0, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"match indices must lie in 0..{n - 1}")
        data = np.repeat(np.asarray(labels, dtype=np.int16) + 1, counts)
        index_dtype = np.int32 if n < 2**31 and indices.size < 2**31 else np.int64
        csc = sp.csc_array(
            (data, indices.astype(index_dtype), indptr.astype(index_dtype)), shape=(n, m)
        )
        return cls(csc)

    @classmethod
    def empty(cls, n: int) -> LabelMatrix:
        return cls(sp.csc_array((n, 0), dtype=np.int16))

    # -- shape ---------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return self._shape[0]

    @property
    def m(self) -> int:
        return self._shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.m)

    @property
    def nnz(self) -> int:
        """Number of non-abstain votes."""
        return int((self._csc if self._csc is not None else self._csr).nnz)

    @property
    def csc(self) -> sp.csc_array:
        """The (n, m) CSC array of ``label + 1`` (0 = abstain), built once. Do not modify."""
        if self._csc is None:
            self._csc = self._csr.tocsc()
            self._csc.sort_indices()
        return self._csc

    @property
    def csr(self) -> sp.csr_array:
        """The same as CSR (row-wise access), built once."""
        if self._csr is None:
            self._csr = self._csc.tocsr()
            self._csr.sort_indices()
        return self._csr

    def __repr__(self) -> str:
        return f"LabelMatrix(n={self.n}, m={self.m}, votes={self.nnz})"

    # -- access --------------------------------------------------------------------------------

    def to_dense(self, dtype: type = np.int16) -> np.ndarray:
        """(n, m) array of votes with -1 = abstain. For big n use ``rows`` chunks instead."""
        matrix = self._csc if self._csc is not None else self._csr
        return matrix.toarray().astype(dtype) - 1

    def column(self, j: int) -> np.ndarray:
        """Rule j's votes as a dense (n,) int16 array, -1 = abstain."""
        out = np.full(self.n, -1, dtype=np.int16)
        csc = self.csc
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        out[csc.indices[lo:hi]] = csc.data[lo:hi] - 1
        return out

    def matches(self, j: int) -> np.ndarray:
        """Sorted int64 row indices where rule j votes."""
        csc = self.csc
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        return csc.indices[lo:hi].astype(np.int64)

    def column_labels(self, j: int) -> np.ndarray:
        """Rule j's votes at ``matches(j)``, (k,) int64."""
        csc = self.csc
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        return csc.data[lo:hi].astype(np.int64) - 1

    def hstack(self, other: LabelMatrix) -> LabelMatrix:
        """Columns of self, then columns of other (same n)."""
        if other.n != self.n:
            raise ValueError(f"cannot stack label matrices with {self.n} and {other.n} rows")
        return LabelMatrix(sp.hstack([self.csc, other.csc], format="csc"))

    def rows(self, indices: np.ndarray | Sequence[int] | slice) -> LabelMatrix:
        """The sub-matrix of the given rows (in that order)."""
        if isinstance(indices, slice):
            return LabelMatrix(self.csr[indices])
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return LabelMatrix(self.csr[idx.astype(np.int64)])

    def columns(self, indices: np.ndarray | Sequence[int]) -> LabelMatrix:
        """The sub-matrix of the given rules (in that order)."""
        return LabelMatrix(self.csc[:, np.asarray(indices, dtype=np.int64)])

    def max_label(self) -> int:
        """The largest label voted, -1 when there are no votes."""
        matrix = self._csc if self._csc is not None else self._csr
        return int(matrix.data.max()) - 1 if matrix.nnz else -1

    def votes_per_row(self) -> np.ndarray:
        """(n,) number of non-abstain votes per example."""
        return np.diff(self.csr.indptr).astype(np.int64)

    def covered(self) -> np.ndarray:
        """(n,) bool: the example has at least one vote."""
        return self.votes_per_row() > 0

    def class_counts(self, n_classes: int) -> np.ndarray:
        """(n, K) int32: how many rules vote each class on each example."""
        csr = self.csr
        rows = np.repeat(np.arange(self.n), np.diff(csr.indptr))
        labels = csr.data.astype(np.int64) - 1
        if labels.size and labels.max() >= n_classes:
            raise ValueError(f"a vote {labels.max()} is out of range for {n_classes} classes")
        counts = sp.csr_array(
            (np.ones(labels.size, dtype=np.int32), (rows, labels)), shape=(self.n, n_classes)
        )
        return counts.toarray()


# ---------------------------------------------------------------------------------------------
# the corpus


@runtime_checkable
class AnswerIndexLike(Protocol):
    """What the engine needs from the LM answer index (``models.prboost.answers.AnswerIndex``)."""

    def lookup(self, template_id: str, words: Sequence[str]) -> np.ndarray:
        """Sorted int64 ids of the examples whose top-k answers under the template hold a word."""
        ...


@dataclass
class Corpus:
    """The examples rules are matched against.

    texts: (N,) strings. embeddings: (N, D) L2-normalized or None. answer_index: the cached LM
    answers for these texts (needed by prompt rules). entities: (head, tail) spans per text for
    relation extraction (needed by ``scope="between"`` rules). anchor_embeddings: (A, D) the
    embeddings a rule's ``anchor_index`` refers to (e.g. the dev set's when matching the pool);
    None means this corpus's own ``embeddings``.
    """

    texts: Sequence[str]
    embeddings: np.ndarray | None = None
    answer_index: AnswerIndexLike | None = None
    entities: Sequence[tuple[Span, Span]] | None = None
    anchor_embeddings: np.ndarray | None = None
    _between: Corpus | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.texts, list):
            self.texts = list(self.texts)
        if not all(isinstance(t, str) for t in self.texts):
            bad = next(i for i, t in enumerate(self.texts) if not isinstance(t, str))
            raise ValueError(f"corpus texts must be strings; text {bad} is {self.texts[bad]!r}")
        n = len(self.texts)
        for name in ("embeddings", "anchor_embeddings"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                if value.ndim != 2:
                    raise ValueError(f"{name} must be 2-D (rows, D), got shape {value.shape}")
                setattr(self, name, value)
        if self.embeddings is not None and self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings has {self.embeddings.shape[0]} rows for {n} texts")
        if self.entities is not None and len(self.entities) != n:
            raise ValueError(f"entities has {len(self.entities)} entries for {n} texts")

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_dataset(
        cls,
        dataset: TextDataset,
        embeddings: np.ndarray | None = None,
        answer_index: AnswerIndexLike | None = None,
        anchor_embeddings: np.ndarray | None = None,
    ) -> Corpus:
        return cls(
            texts=dataset.texts,
            embeddings=embeddings,
            answer_index=answer_index,
            entities=dataset.entities,
            anchor_embeddings=anchor_embeddings,
        )

    def between(self) -> Corpus:
        """The texts between the two entity mentions (empty when they overlap), as a corpus."""
        if self.entities is None:
            raise RuleError(
                "rules with scope='between' need entity spans (a relation-extraction corpus)"
            )
        if self._between is None:
            self._between = Corpus(
                texts=[_between_text(t, e) for t, e in zip(self.texts, self.entities)]
            )
        return self._between

    def anchors(self) -> np.ndarray:
        """The embeddings ``anchor_index`` refers to."""
        anchors = self.anchor_embeddings if self.anchor_embeddings is not None else self.embeddings
        if anchors is None:
            raise RuleError("similarity terms need embeddings (the corpus has none)")
        return anchors


def _between_text(text: str, pair: tuple[Span, Span]) -> str:
    (_, s1, e1), (_, s2, e2) = pair
    first_end, second_start = (e1, s2) if s1 <= s2 else (e2, s1)
    return text[first_end:second_start] if first_end <= second_start else ""


# ---------------------------------------------------------------------------------------------
# keyword scanning


@lru_cache(maxsize=1)
def _word_table() -> np.ndarray:
    """(65536,) bool: is the BMP code point a word character (see ``rules.is_word_char``)."""
    table = np.zeros(0x10000, dtype=bool)
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        table[cp] = is_word_char(chr(cp)) if cp >= 128 else (chr(cp).isalnum() or cp == 95)
    return table


def _is_word(cps: np.ndarray) -> np.ndarray:
    """Vectorized ``is_word_char`` over an array of code points."""
    table = _word_table()
    out = np.zeros(cps.shape, dtype=bool)
    bmp = cps < 0x10000
    out[bmp] = table[cps[bmp]]
    if not bmp.all():
        astral = np.flatnonzero(~bmp)
        uniq, inverse = np.unique(cps[astral], return_inverse=True)
        out[astral] = np.array([is_word_char(chr(int(c))) for c in uniq], dtype=bool)[inverse]
    return out


def _codepoints(text: str) -> np.ndarray:
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _chunks(texts: Sequence[str], chunk_chars: int) -> list[tuple[int, int]]:
    """[lo, hi) document ranges holding about ``chunk_chars`` characters each."""
    n = len(texts)
    if n == 0:
        return []
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n) + 1
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(chunk_chars, int(ends[-1]), chunk_chars), side="left")
    bounds = np.unique(np.concatenate([[0], cuts + 1, [n]]).clip(0, n))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _fold_case_sensitive(text: str) -> str:
    return normalize_text(text, case_sensitive=True)


# ASCII characters that can precede a word in normalized text: every non-word character except
# the whitespace that normalization turns into " " (NUL, the document separator, included).
_ASCII_LEFT_CONTEXTS = tuple(
    chr(c)
    for c in range(128)
    if not (chr(c).isalnum() or c == 95) and not (chr(c).isspace() and c != 32)
)


class KeywordScanner:
    """Aho-Corasick automata over a set of normalized words; finds (document, word) hits.

    Two paths, same semantics (the tests check both against a naive reference):
    - ASCII documents (most of them): a word that needs a left boundary enters the automaton once
      per ASCII character that can precede it (" free", "(free", "\x00free", ...), so the scan
      reports hits at word starts only, instead of every "in" inside "within"; only the right
      boundary is checked afterwards.
    - other documents: the bare words, both boundaries checked on the code points afterwards.
    """

    def __init__(self, words: Sequence[str], case_sensitive: bool) -> None:
        self.words = list(words)  # already normalized with ``normalize_word``
        self.case_sensitive = case_sensitive
        self.length = np.array([len(w) for w in self.words], dtype=np.int64)
        first = np.array([ord(w[0]) for w in self.words], dtype=np.int64)
        last = np.array([ord(w[-1]) for w in self.words], dtype=np.int64)
        self.needs_left = _is_word(first)  # a word edge that is a word char needs a boundary
        self.needs_right = _is_word(last)
        self.automaton = ahocorasick.Automaton()  # value: word id
        # One ASCII key can stand for several words: "." + "1" (the word "1" after a period) is
        # also the word ".1". So the automaton's value is a key id, and the words of key k are
        # ascii_words[ascii_ptr[k]:ascii_ptr[k + 1]].
        keys: dict[str, list[int]] = {}
        for wid, word in enumerate(self.words):
            self.automaton.add_word(word, wid)
            if not word.isascii():
                continue  # cannot occur in ASCII text
            if self.needs_left[wid]:
                for context in _ASCII_LEFT_CONTEXTS:
                    keys.setdefault(context + word, []).append(wid)
            else:
                keys.setdefault(word, []).append(wid)
        self.ascii_automaton = ahocorasick.Automaton()  # value: key id
        for kid, key in enumerate(keys):
            self.ascii_automaton.add_word(key, kid)
        sizes = [len(wids) for wids in keys.values()]
        self.ascii_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.ascii_words = np.fromiter(chain.from_iterable(keys.values()), dtype=np.int64)
        self.ascii_unique = all(size == 1 for size in sizes)
        self.automaton.make_automaton()
        self.ascii_automaton.make_automaton()

    def scan(
        self,
        texts: Sequence[str],
        chunk_chars: int | None = None,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unique (doc, word id) hit pairs as two int64 arrays, sorted by doc then word."""
        progress = ensure_progress(progress)
        chunk_chars = chunk_chars or CHUNK_CHARS
        n = len(texts)
        if n == 0 or not self.words:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        is_ascii = np.fromiter(map(str.isascii, texts), dtype=bool, count=n)
        keys: list[np.ndarray] = []
        n_words = len(self.words)
        done = 0
        for ascii_part in (True, False):
            where = np.flatnonzero(is_ascii if ascii_part else ~is_ascii)
            if where.size == 0:
                continue
            part = texts if where.size == n else [texts[i] for i in where]
            for lo, hi in _chunks(part, chunk_chars):
                docs, wids = self._scan_chunk(part, lo, hi, ascii_part)
                if docs.size:
                    keys.append(np.unique(where[docs] * n_words + wids))
                done += hi - lo
                progress(done / n, f"keywords: {done:,} of {n:,} texts")
        if not keys:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        key = np.unique(np.concatenate(keys))
        return key // n_words, key % n_words

    def _scan_chunk(
        self, texts: Sequence[str], lo: int, hi: int, ascii_part: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hits in texts[lo:hi] as (local doc index, word id), boundaries checked."""
        fold = _fold_case_sensitive if self.case_sensitive else normalize_text
        # every document is preceded by a separator, so doc d owns the text after the d-th NUL
        norm = _SEP + _SEP.join(map(fold, texts[lo:hi]))
        if norm.count(_SEP) != hi - lo:  # a text holds NUL itself: blank it out
            norm = _SEP + _SEP.join(fold(t.replace(_SEP, " ")) for t in texts[lo:hi])
        automaton = self.ascii_automaton if ascii_part else self.automaton
        if len(automaton) == 0:  # e.g. only non-ASCII words, ASCII texts
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        flat = np.fromiter(chain.from_iterable(automaton.iter(norm)), dtype=np.int64)
        if flat.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        ends = flat[0::2]  # index of the last character of each hit
        wids = flat[1::2]
        if ascii_part:  # key ids -> word ids; left boundaries are guaranteed by the contexts
            ends, wids = self._ascii_key_words(ends, wids)
        starts = ends - self.length[wids] + 1
        cps = _codepoints(norm)
        size = cps.shape[0]
        ok = np.ones(ends.shape, dtype=bool)
        if not ascii_part:
            check = self.needs_left[wids]  # starts > 0 always: norm begins with a separator
            ok[check] = ~_is_word(cps[starts[check] - 1])
        check = self.needs_right[wids] & (ends + 1 < size)
        ok[check] &= ~_is_word(cps[ends[check] + 1])
        seps = np.flatnonzero(cps == 0)
        docs = np.searchsorted(seps, starts[ok], side="right") - 1 + lo
        return docs.astype(np.int64), wids[ok]

    def _ascii_key_words(self, ends: np.ndarray, kids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(end, key id) hits -> (end, word id) hits, one per word the key stands for."""
        first = self.ascii_ptr[kids]
        if self.ascii_unique:
            return ends, self.ascii_words[first]
        counts = self.ascii_ptr[kids + 1] - first
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(ends, counts), self.ascii_words[np.repeat(first, counts) + offsets]


def _match_keyword_rules(
    rules: Sequence[KeywordRule], texts: Sequence[str], progress: Progress | None
) -> list[np.ndarray]:
    """Sorted matched doc indices per keyword rule, with one scan per case mode."""
    n = len(texts)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(rules)
    modes = sorted({r.case_sensitive for r in rules})
    for step, case_sensitive in enumerate(modes):
        ids = [i for i, r in enumerate(rules) if r.case_sensitive == case_sensitive]
        vocab: dict[str, int] = {}
        rule_words: list[list[int]] = []
        for i in ids:
            wids = [vocab.setdefault(w, len(vocab)) for w in rules[i].normalized_words]
            rule_words.append(sorted(set(wids)))
        scanner = KeywordScanner(list(vocab), case_sensitive)
        sub = scaled(progress, step / len(modes), (step + 1) / len(modes))
        docs, wids = scanner.scan(texts, progress=sub)
        hits = sp.csr_array(
            (np.ones(docs.size, dtype=np.int32), (docs, wids)), shape=(n, len(vocab))
        )
        cols = np.concatenate([np.full(len(w), j) for j, w in enumerate(rule_words)])
        rows = np.concatenate([np.asarray(w, dtype=np.int64) for w in rule_words])
        membership = sp.csc_array(
            (np.ones(rows.size, dtype=np.int32), (rows, cols)), shape=(len(vocab), len(ids))
        )
        counts = sp.csc_array(hits @ membership)  # (n, rules): how many of the rule's words hit
        counts.sort_indices()
        for j, i in enumerate(ids):
            lo, hi = counts.indptr[j], counts.indptr[j + 1]
            rows_j = counts.indices[lo:hi].astype(np.int64)
            if rules[i].mode == "all":
                rows_j = rows_j[counts.data[lo:hi] >= len(rule_words[j])]
            out[i] = rows_j
    return out


# ---------------------------------------------------------------------------------------------
# regex scanning


def _public_match(regex_set: re2.Set):
    def match(data: bytes) -> list[int]:
        return regex_set.Match(data) or []

    return match


def _match_regex_rules(
    rules: Sequence[RegexRule], texts: Sequence[str], progress: Progress | None
) -> list[np.ndarray]:
    """Sorted matched doc indices per regex rule: one RE2 set, one pass per document."""
    progress = ensure_progress(progress)
    n = len(texts)
    options = re2.Options()
    options.max_mem = SET_MAX_MEM
    options.log_errors = False
    regex_set = re2.Set.SearchSet(options)
    try:
        for rule in rules:
            regex_set.Add(rule.inline_pattern)
        regex_set.Compile()
    except re2.error as exc:
        raise RuleError(f"the regex rules are too large to run together ({exc})") from None
    # The wrapper's Set.Match encodes each str and returns None for no match; calling the
    # compiled set on bytes directly halves the per-document cost. Fall back if it moves.
    raw = getattr(regex_set, "_set", None)
    match = raw.Match if raw is not None and hasattr(raw, "Match") else _public_match(regex_set)
    doc_parts: list[np.ndarray] = []
    rule_parts: list[np.ndarray] = []
    step = max(1, n // 20)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        try:
            encoded = list(map(str.encode, texts[lo:hi]))
        except UnicodeEncodeError:  # lone surrogates: replace them
            encoded = [t.encode("utf-8", "replace") for t in texts[lo:hi]]
        results = list(map(match, encoded))
        lens = np.fromiter(map(len, results), dtype=np.int64, count=hi - lo)
        if lens.any():
            rule_parts.append(np.fromiter(chain.from_iterable(results), dtype=np.int64))
            doc_parts.append(np.repeat(np.arange(lo, hi, dtype=np.int64), lens))
        progress(hi / n, f"regexes: {hi:,} of {n:,} texts")
    if not doc_parts:
        return [np.zeros(0, dtype=np.int64) for _ in rules]
    docs = np.concatenate(doc_parts)
    rids = np.concatenate(rule_parts)
    order = np.lexsort((docs, rids))
    docs, rids = docs[order], rids[order]
    bounds = np.searchsorted(rids, np.arange(len(rules) + 1))
    return [docs[bounds[j] : bounds[j + 1]] for j in range(len(rules))]


# ---------------------------------------------------------------------------------------------
# prompt and similarity rules


def _anchor_vectors(rules: Sequence[Rule], corpus: Corpus) -> np.ndarray:
    anchors = corpus.anchors()
    idx = np.array([r.anchor_index for r in rules], dtype=np.int64)
    if idx.size and idx.max() >= anchors.shape[0]:
        raise RuleError(
            f"anchor_index {int(idx.max())} is out of range: there are {anchors.shape[0]} anchor "
            "embeddings"
        )
    if corpus.embeddings is None:
        raise RuleError("similarity terms need the corpus's embeddings (it has none)")
    if anchors.shape[1] != corpus.embeddings.shape[1]:
        raise RuleError(
            f"anchor embeddings have {anchors.shape[1]} dimensions, the corpus's "
            f"{corpus.embeddings.shape[1]}"
        )
    return anchors[idx]  # (r, D)


def _similarities(corpus: Corpus, anchors: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(N, r) cosine similarities (embeddings are L2-normalized), in row chunks."""
    emb = corpus.embeddings
    out = np.empty((emb.shape[0], anchors.shape[0]), dtype=np.float32)
    a = anchors.astype(np.float32, copy=False).T
    for lo in range(0, emb.shape[0], chunk):
        out[lo : lo + chunk] = emb[lo : lo + chunk].astype(np.float32, copy=False) @ a
    return out


def _sorted_unique(ids: np.ndarray) -> np.ndarray:
    """``np.unique(ids)``, skipped when ``ids`` is already strictly increasing.

    The answer index returns sorted, unique ids; numpy 2's hash-based ``unique`` re-sorting a
    million of them cost ~0.6 s per prompt rule, the check costs ~1 ms.
    """
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids
    return np.unique(ids)


def _match_prompt_rules(rules: Sequence[PromptRule], corpus: Corpus) -> list[np.ndarray]:
    if corpus.answer_index is None:
        raise RuleError("prompt rules need the corpus's answer index (the cached LM answers)")
    n = len(corpus)
    out = []
    weighted = [r for r in rules if r.similarity_weight > 0]
    sims = _similarities(corpus, _anchor_vectors(weighted, corpus)) if weighted else None
    w_pos = {id(r): j for j, r in enumerate(weighted)}
    for rule in rules:
        hits = np.asarray(
            corpus.answer_index.lookup(rule.template_id, list(rule.answer_words)), dtype=np.int64
        )
        if hits.size and (hits.min() < 0 or hits.max() >= n):
            raise RuleError(
                f"the answer index returned example ids outside 0..{n - 1}: it belongs to "
                "another corpus"
            )
        if rule.similarity_weight == 0:
            out.append(_sorted_unique(hits))
            continue
        score = rule.similarity_weight * sims[:, w_pos[id(rule)]].astype(np.float64)
        score[hits] += 1.0
        out.append(np.flatnonzero(score >= rule.threshold - 1e-9).astype(np.int64))
    return out


def _match_similarity_rules(rules: Sequence[SimilarityRule], corpus: Corpus) -> list[np.ndarray]:
    sims = _similarities(corpus, _anchor_vectors(rules, corpus))
    return [
        np.flatnonzero(sims[:, j] >= r.threshold - 1e-6).astype(np.int64)
        for j, r in enumerate(rules)
    ]


# ---------------------------------------------------------------------------------------------
# public entry points


PARALLEL_MIN_TEXTS = 20_000  # below this, worker processes cost more than they save
_FORK_STATE: tuple | None = None  # (kind, rules, texts) inherited by forked workers


def _match_text_part(bounds: tuple[int, int]) -> list[np.ndarray]:
    kind, group, texts = _FORK_STATE  # type: ignore[misc]
    lo, hi = bounds
    match = _match_keyword_rules if kind == "keyword" else _match_regex_rules
    return [idx + lo for idx in match(group, texts[lo:hi], None)]


def _can_fork(n_jobs: int, n_texts: int) -> bool:
    import multiprocessing

    return (
        n_jobs > 1
        and n_texts >= PARALLEL_MIN_TEXTS
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon  # e.g. inside a Celery prefork child
    )


def _match_text_rules(
    kind: str, group: list, texts: Sequence[str], progress: Progress, n_jobs: int
) -> list[np.ndarray]:
    """Keyword or regex rules on texts, split over ``n_jobs`` forked processes if worth it."""
    match = _match_keyword_rules if kind == "keyword" else _match_regex_rules
    if not _can_fork(n_jobs, len(texts)):
        return match(group, texts, progress)
    import multiprocessing

    global _FORK_STATE
    cuts = np.linspace(0, len(texts), n_jobs + 1).astype(int)
    parts = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    _FORK_STATE = (kind, group, texts)
    try:
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            results = pool.map(_match_text_part, parts)
    finally:
        _FORK_STATE = None
    progress(1.0, f"{kind} rules: {len(texts):,} texts in {len(parts)} processes")
    return [np.concatenate([r[j] for r in results]) for j in range(len(group))]


def match_rules(
    rules: Sequence[Rule], corpus: Corpus, progress: Progress | None = None, n_jobs: int = 1
) -> list[np.ndarray]:
    """For each rule, the sorted int64 indices of the examples it matches.

    ``n_jobs > 1`` splits keyword and regex matching over that many forked processes (Linux; not
    inside daemonic processes such as Celery's prefork children, where it runs serially).
    """
    progress = ensure_progress(progress)
    out: list[np.ndarray | None] = [None] * len(rules)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, KeywordRule | RegexRule | PromptRule | SimilarityRule):
            raise RuleError(f"not a rule: {rule!r}")
        scope = getattr(rule, "scope", "text")
        groups.setdefault((rule.kind, scope), []).append(i)
    order = sorted(groups)
    for step, (kind, scope) in enumerate(order):
        ids = groups[(kind, scope)]
        sub = scaled(progress, step / len(order), (step + 1) / len(order))
        target = corpus.between() if scope == "between" else corpus
        group = [rules[i] for i in ids]
        if kind in ("keyword", "regex"):
            found = _match_text_rules(kind, group, target.texts, sub, n_jobs)
        elif kind == "prompt":
            found = _match_prompt_rules(group, target)
        else:
            found = _match_similarity_rules(group, target)
        for i, idx in zip(ids, found):
            out[i] = idx
        sub(1.0, f"{kind} rules matched")
    progress(1.0, f"{len(rules)} rules matched on {len(corpus):,} examples")
    return out  # type: ignore[return-value]


def apply_rules(
    rules: Sequence[Rule], corpus: Corpus, progress: Progress | None = None, n_jobs: int = 1
) -> LabelMatrix:
    """The (n, m) label matrix of ``rules`` on ``corpus``: rule j votes its label where it hits."""
    matches = match_rules(rules, corpus, progress, n_jobs=n_jobs)
    return LabelMatrix.from_matches(len(corpus), matches, [r.label for r in rules])


def match_rule(rule: Rule, corpus: Corpus) -> np.ndarray:
    """Sorted int64 indices of the examples ``rule`` matches."""
    return match_rules([rule], corpus)[0]


# ---------------------------------------------------------------------------------------------
# one rule at a time on a fixed corpus (the live preview), and highlighting
#
# The imports of this part are local to its functions, so the file's header stays as it was.

DENSE_SHARE = 0.15  # past this share of matched texts, per-text RE2 beats the joined search
MAX_SPANS = 50  # marks per text in highlighting


class JoinedTexts:
    """A corpus's texts joined once, so that one rule at a time matches in a single pass.

    For the live preview: the same corpus, a new rule at every keystroke. The answers are
    :func:`match_rule`'s. Keyword rules scan the texts normalized and joined by NUL (the work
    ``KeywordScanner.scan`` would redo on every call) with one Aho-Corasick pass; regex rules run
    RE2 over the raw texts joined by newlines, one search per matched text instead of one per
    text. Each joined form is built on first use and kept: a keyword form (one per case mode)
    takes 2 to 5 bytes per character of text (the normalized text, 1 to 4 bytes a character,
    and its word mask), the regex form about 1 byte per character.
    """

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._joined: dict = {}

    def joined_bytes(self) -> tuple[bytes, list[int], list[int]]:
        """(raw texts as UTF-8 joined by newlines, byte offset of each text, byte lengths)."""
        hit = self._joined.get("bytes")
        if hit is None:
            encoded = [t.encode("utf-8", "surrogatepass") for t in self.corpus.texts]
            lengths = [len(e) for e in encoded]
            starts = np.zeros(len(encoded), dtype=np.int64)
            if encoded:
                np.cumsum(np.asarray(lengths[:-1], dtype=np.int64) + 1, out=starts[1:])
            hit = (b"\n".join(encoded), starts.tolist(), lengths)
            self._joined["bytes"] = hit
        return hit

    def joined(self, case_sensitive: bool) -> tuple[str, np.ndarray, np.ndarray]:
        """(normalized texts joined by NUL, (C,) is-word-char mask, (N-1,) separator offsets)."""
        hit = self._joined.get(case_sensitive)
        if hit is None:
            texts = [t.replace(_SEP, " ") for t in self.corpus.texts]
            joined = _SEP.join(normalize_text(t, case_sensitive) for t in texts)
            cps = _codepoints(joined)
            hit = (joined, _is_word(cps), np.flatnonzero(cps == 0))
            self._joined[case_sensitive] = hit
        return hit

    def match(
        self, rule: Rule, *, budget: int | None = None, always: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(sorted positions of the texts ``rule`` matches, the positions looked at or None).

        Exact unless ``budget``: then a regex that matches most texts (past ``DENSE_SHARE``) or
        whose hits run past their text (or any rule that takes long, with ``max_seconds``) is
        run on an even sample of about ``budget`` of the
        remaining texts, plus those marked in ``always`` ((N,) bool), and the second value
        lists the positions looked at. No cap on time: see :meth:`match_bounded`.
        """
        result = self.match_bounded(rule, budget=budget, always=always)
        return result.matched, result.looked

    def match_bounded(
        self,
        rule: Rule,
        *,
        budget: int | None = None,
        always: np.ndarray | None = None,
        max_seconds: float | None = None,
        max_bytes: int | None = None,
    ) -> BoundedMatch:
        """:meth:`match` with a bounded cost: regex rules stop once ``max_seconds`` have passed
        or ``max_bytes`` of text were scanned, and say after how many texts
        (``BoundedMatch.stopped_after``; the texts before that position are all looked at, or
        sampled as in :meth:`match`). Keyword rules are one linear Aho-Corasick pass and are
        not cut."""
        if isinstance(rule, KeywordRule) and rule.scope == "text":
            return self._keyword_matches(
                rule, budget=budget, always=always, max_seconds=max_seconds, max_bytes=max_bytes
            )
        if isinstance(rule, RegexRule) and rule.scope == "text":
            return self._regex_matches(
                rule, budget=budget, always=always, max_seconds=max_seconds, max_bytes=max_bytes
            )
        return BoundedMatch(match_rule(rule, self.corpus))

    def _keyword_matches(
        self,
        rule: KeywordRule,
        *,
        budget: int | None = None,
        always: np.ndarray | None = None,
        max_seconds: float | None = None,
        max_bytes: int | None = None,
    ) -> BoundedMatch:
        """The engine's keyword matching (same normalization, automaton and word boundaries)
        on the joined texts, in windows of about ``JOINED_WINDOW_BYTES`` characters that end at
        text edges, so the clock is looked at between windows. With a ``budget``, a scan that
        has spent a third of ``max_seconds`` goes on with the per-text engine on a sample of the
        rest (as dense regexes do); out of time, it stops (``stopped_after``)."""
        import time

        clock = _Budget(max_seconds, max_bytes)
        joined, is_word, seps = self.joined(rule.case_sensitive)
        words = list(dict.fromkeys(rule.normalized_words))
        scanner = KeywordScanner(words, rule.case_sensitive)
        n = len(self.corpus.texts)
        parts: list[np.ndarray] = []
        doc = 0
        while doc < n:
            start = 0 if doc == 0 else int(seps[doc - 1]) + 1
            edge = int(np.searchsorted(seps, start + JOINED_WINDOW_BYTES))  # first text after
            stop = int(seps[edge]) if edge < seps.size else len(joined)
            edge = min(n, edge + 1)
            parts.append(
                self._keyword_window(rule, scanner, words, joined, is_word, seps, start, stop)
            )
            clock.scanned += stop - start
            doc = edge
            now = time.perf_counter()
            if doc < n and budget is not None and clock.past_third(now):
                found = np.concatenate(parts).tolist() if parts else []
                return self._per_text(
                    rule, doc, budget=budget, always=always, clock=clock, found=found
                )
            if doc < n and clock.over(now):
                matched = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                return BoundedMatch(matched, np.arange(doc, dtype=np.int64), stopped_after=doc)
        matched = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return BoundedMatch(matched)

    @staticmethod
    def _keyword_window(rule, scanner, words, joined, is_word, seps, start, stop) -> np.ndarray:
        """Sorted positions of the texts matched in ``joined[start:stop]`` (whole texts)."""
        hits = scanner.automaton.iter(joined, start, stop)
        flat = np.fromiter(chain.from_iterable(hits), dtype=np.int64)
        if flat.size == 0:
            return np.zeros(0, dtype=np.int64)
        ends, wids = flat[0::2], flat[1::2]
        starts = ends - scanner.length[wids] + 1
        ok = np.ones(ends.shape, dtype=bool)
        check = scanner.needs_left[wids] & (starts > 0)
        ok[check] = ~is_word[starts[check] - 1]
        check = scanner.needs_right[wids] & (ends + 1 < is_word.size)
        ok[check] &= ~is_word[ends[check] + 1]
        docs = np.searchsorted(seps, starts[ok]).astype(np.int64)
        if rule.mode == "all" and len(words) > 1:
            pairs = np.unique(docs * len(words) + wids[ok])
            found, counts = np.unique(pairs // len(words), return_counts=True)
            return found[counts >= len(words)]
        return np.unique(docs)

    def _regex_matches(
        self,
        rule: RegexRule,
        *,
        budget: int | None,
        always: np.ndarray | None,
        max_seconds: float | None = None,
        max_bytes: int | None = None,
    ) -> BoundedMatch:
        r"""RE2 searches over the joined texts, one per matched text, in windows of
        ``JOINED_WINDOW_BYTES``.

        The texts are joined with newlines and searched with the ``m`` flag added, so ``^``/``$``
        match at every text edge: every match inside one text is found at its place (``\b`` sees
        the newline as a text edge does). Any hit of a pattern with ``^``/``$`` (which the ``m``
        flag widened) is checked on that text alone with the rule's own pattern. After each hit
        the search resumes at the next text. Each search ends at a window edge (a text edge), so
        one search scans a bounded number of bytes. Three kinds of pattern switch to the per-text
        engine for the rest: one whose hit runs past its text (``(?s).*9``: every later search
        would scan to the end of the window) as soon as that happens, a dense one (past
        ``DENSE_SHARE`` of the texts matched, after 500 hits), and, with a ``budget``, one that
        has spent a third of ``max_seconds`` (many hits, a Python step each).
        """
        import bisect
        import time

        from models.prboost.rules import _re2_options, regex_with_flags

        clock = _Budget(max_seconds, max_bytes)
        pattern = rule.pattern
        texts = self.corpus.texts
        n = len(texts)
        if "\\A" in pattern or "\\z" in pattern:  # text-edge anchors: no joined equivalent
            return self._per_text(rule, 0, budget=budget, always=always, clock=clock, found=[])
        joined, starts, lengths = self.joined_bytes()
        flags = rule.flags + "m"
        wide = re2.compile(regex_with_flags(pattern, flags).encode("utf-8"), _re2_options())
        anchored = ("^" in pattern or "$" in pattern) and "m" not in rule.flags
        exact = rule.compile()
        found: list[int] = []
        hits = 0
        doc = 0  # the first text not looked at yet
        search = wide.search
        total = len(joined)
        while doc < n:
            pos = starts[doc]
            edge = bisect.bisect_left(starts, pos + JOINED_WINDOW_BYTES, lo=doc + 1)
            endpos = starts[edge] - 1 if edge < n else total  # the newline before text ``edge``
            hit = search(joined, pos, endpos)
            if hit is None:
                clock.scanned += endpos - pos
                doc = edge
            else:
                clock.scanned += hit.end() - pos
                at = bisect.bisect_right(starts, hit.start(), lo=doc) - 1
                if hit.end() > starts[at] + lengths[at]:  # runs past its text: switch engines
                    return self._per_text(
                        rule, at, budget=budget, always=always, clock=clock, found=found
                    )
                if not anchored or exact.search(texts[at]):
                    found.append(at)
                hits += 1
                doc = at + 1
                if hits > 500 and hits > DENSE_SHARE * doc:
                    return self._per_text(
                        rule, doc, budget=budget, always=always, clock=clock, found=found
                    )
            now = time.perf_counter()
            if doc < n and budget is not None and clock.past_third(now):
                # Many hits, each a Python step: a sample of the rest costs less.
                return self._per_text(
                    rule, doc, budget=budget, always=always, clock=clock, found=found
                )
            if doc < n and clock.over(now):
                return BoundedMatch(
                    np.asarray(found, dtype=np.int64),
                    np.arange(doc, dtype=np.int64),
                    stopped_after=doc,
                )
        return BoundedMatch(np.asarray(found, dtype=np.int64))

    def _per_text(
        self,
        rule: KeywordRule | RegexRule,
        first: int,
        *,
        budget: int | None,
        always: np.ndarray | None,
        clock: _Budget,
        found: list[int],
    ) -> BoundedMatch:
        """The engine's per-text matching for texts ``first``..N-1 (an even sample of about
        ``budget`` of them plus those in ``always`` when ``budget``), in blocks, within
        ``clock``; ``found`` holds the matches before ``first``."""
        import time

        texts = self.corpus.texts
        n = len(texts)
        rest = np.arange(first, n, dtype=np.int64)
        sampled = budget is not None and rest.size > budget
        if sampled:
            stride = -(-rest.size // budget)
            kept = rest[always[rest]] if always is not None else rest[:0]
            rest = np.union1d(rest[::stride], kept)
        parts = [np.asarray(found, dtype=np.int64)]
        done = 0
        while done < rest.size:
            block = rest[done : done + PER_TEXT_BLOCK]
            sub = Corpus(texts=[texts[i] for i in block])
            parts.append(block[match_rule(rule, sub)])
            clock.scanned += sum(len(texts[i]) for i in block)
            done += block.size
            if done < rest.size and clock.over(time.perf_counter()):
                stop = int(rest[done])  # texts from here on are not looked at
                looked = np.concatenate([np.arange(first, dtype=np.int64), rest[:done]])
                return BoundedMatch(np.concatenate(parts), looked, stopped_after=stop)
        matched = np.unique(np.concatenate(parts))
        if sampled:
            return BoundedMatch(matched, np.concatenate([np.arange(first, dtype=np.int64), rest]))
        return BoundedMatch(matched)


JOINED_WINDOW_BYTES = 1 << 20  # the most bytes one joined search may scan
PER_TEXT_BLOCK = 2048  # texts matched between two looks at the clock


@dataclass
class BoundedMatch:
    """What :meth:`JoinedTexts.match_bounded` found.

    ``matched``: (K,) sorted positions of matched texts. ``looked``: (L,) positions looked at,
    or None when every text was. ``stopped_after``: set when a cap on time or bytes cut the
    search short: the position of the first text not looked at (earlier ones all were, or
    were sampled).
    """

    matched: np.ndarray
    looked: np.ndarray | None = None
    stopped_after: int | None = None


class _Budget:
    """Seconds and bytes a bounded match may spend; ``over(now)`` once either is spent."""

    def __init__(self, max_seconds: float | None, max_bytes: int | None) -> None:
        import time

        now = time.perf_counter()
        self.deadline = None if max_seconds is None else now + max_seconds
        self.third = None if max_seconds is None else now + max_seconds / 3
        self.max_bytes = max_bytes
        self.scanned = 0

    def past_third(self, now: float) -> bool:
        return self.third is not None and now > self.third

    def over(self, now: float) -> bool:
        if self.deadline is not None and now > self.deadline:
            return True
        return self.max_bytes is not None and self.scanned > self.max_bytes


def keyword_pattern(words: Sequence[str], case_sensitive: bool = False):
    """One Python ``re`` pattern marking any of ``words`` in raw text (whitespace runs inside a
    phrase match any whitespace; word edges need a boundary), longest first; None if no word."""
    import re

    from models.prboost.rules import normalize_word

    parts = []
    for word in words:
        pieces = [re.escape(w) for w in normalize_word(word, case_sensitive).split(" ") if w]
        if not pieces:
            continue
        body = r"\s+".join(pieces)
        left = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
        right = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
        parts.append(left + body + right)
    if not parts:
        return None
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts), 0 if case_sensitive else re.IGNORECASE)


def match_spans(rule: Rule, text: str, limit: int = MAX_SPANS) -> list[tuple[int, int]]:
    """Character spans of ``text`` to mark for ``rule``, in order: keyword hits, regex matches,
    a prompt rule's answer words; none for similarity rules."""
    from models.prboost.rules import compile_regex

    spans: list[tuple[int, int]] = []
    if isinstance(rule, KeywordRule | PromptRule):
        words, case = (
            (rule.words, rule.case_sensitive)
            if isinstance(rule, KeywordRule)
            else (rule.answer_words, False)
        )
        pattern = keyword_pattern(words, case)
        if pattern is not None:
            spans = [m.span() for m in pattern.finditer(text)]
    elif isinstance(rule, RegexRule):
        for m in compile_regex(rule.pattern, rule.flags).finditer(text):
            if m.end() > m.start():
                spans.append((m.start(), m.end()))
            if len(spans) >= limit:
                break
    return spans[:limit]


def highlight_html(
    text: str,
    spans: Sequence[tuple[int, int]],
    *,
    max_chars: int | None = None,
    attributes: Sequence[str] | None = None,
) -> str:
    """``text`` HTML-escaped with each span in ``<mark>``: the one highlighter of the project.

    ``spans``: (start, end) character offsets in order; a span overlapping an earlier mark is
    left unmarked. Longer than ``max_chars``, the text is cut to a window around the first span
    with "…" on the cut sides. ``attributes[i]`` (trusted markup, e.g. ``' class="entity"'``)
    goes into span i's ``<mark>`` tag. Every piece of ``text`` is escaped, so the result is safe
    to show as HTML.
    """
    import html

    text = text or ""
    start, end = 0, len(text)
    prefix = suffix = ""
    if max_chars and len(text) > max_chars:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - max_chars // 3, len(text) - max_chars))
        end = start + max_chars
        prefix = "…" if start > 0 else ""
        suffix = "…" if end < len(text) else ""
    out = [prefix]
    position = start
    for i, (a, b) in enumerate(spans):
        a, b = max(a, start), min(b, end)
        if b <= a or a < position:
            continue
        tag = f"<mark{attributes[i]}>" if attributes is not None else "<mark>"
        out.append(html.escape(text[position:a]))
        out.append(f"{tag}{html.escape(text[a:b])}</mark>")
        position = b
    out.append(html.escape(text[position:end]))
    out.append(suffix)
    return "".join(out)
