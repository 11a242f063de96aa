"""Rule proposers: large-error dev instances in, ranked candidate rules (with their evidence) out.

Three proposers share one interface (``Proposer.propose``):

- ``PromptProposer``: every template x every instance x each of the instance's top-k LM
  answer words (read from the dev answer index: no inference) gives a ``PromptRule`` labeled with
  the instance's gold label. Needs a causal LM's answer index on the pool and dev corpora; computes
  it (cached) when a corpus has none.
- ``MaskedLMProposer``: the same with a masked LM (``[MASK]``/``<mask>`` slot in the template).
- ``NgramProposer``: discriminative uni- and bigrams of the instances' texts (the text between the
  two entities for relation extraction) as ``KeywordRule`` candidates; no LM.

Ranking (``rank_candidates``), the part that separates good rules from noise:

1. drop candidates whose key (``rule_key``) was already judged or accepted, merge duplicates
   (same rule from several instances: the first source is kept as evidence);
2. match all candidates on the pool and the dev set (one engine call each);
3. precision, shrunk toward a prior: a Beta posterior whose prior is centred on the rule's
   agreement with the current model on its pool matches (mean p_model(label | x), given as
   ``pool_proba``; ``ScoringConfig.prior_strength`` pseudo-counts) and updated with the rule's
   dev matches, leave-one-out (the source instance proposed the rule, so it is no evidence for
   it). A rule seen on two dev examples is not trusted as if proven; where dev says nothing the
   pool's view decides. Without ``pool_proba`` the prior is Beta(1, 1). ``dev_precision`` is the
   posterior mean;
4. novelty: the share of the rule's pool matches that no accepted rule covers;
5. score (an expected gain): P(precision >= tau) under that posterior (tau = 0.6, the acceptance
   bar) x log(1 + new pool matches). A rule that probably passes review and labels many uncovered
   examples ranks first; log because the 1,000th new example is worth less than the 10th;
6. greedy redundancy filter: a candidate whose pool matches overlap a better one's with Jaccard
   >= ``max_jaccard`` (e.g. the same word under two templates) is dropped.
"""

from __future__ import annotations

import json
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.special import betainc

from models.data import TextDataset
from models.prboost.answers import (
    AnswerIndex,
    AnswerIndexSet,
    compute_answer_index,
    stop_words,
)
from models.prboost.matching import Corpus, match_rules
from models.prboost.rules import KeywordRule, PromptRule, RegexRule, Rule
from models.prboost.templates import (
    DEFAULT_MASK_TEMPLATES,
    DEFAULT_TEMPLATES,
    Template,
)
from models.prboost.tokenize import Token, is_stable, ngram_spans, phrase, tokenize

__all__ = [
    "Candidate",
    "MaskedLMProposer",
    "NgramProposer",
    "PromptProposer",
    "Proposer",
    "ScoringConfig",
    "rank_candidates",
    "rule_key",
]


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """A proposed rule with its evidence and scores.

    source_index: the dev instance it came from; answer_word: the LM word (None for n-grams);
    matches: sorted pool indices it matches; coverage: len(matches) / n_pool; dev_precision:
    posterior mean (smoothed, leave-one-out, weighted); novelty: share of matches no accepted rule
    covers; score: the ranking score (see the module doc); sample_indices: a few pool matches to
    show, uncovered ones first.
    """

    rule: Rule
    source_index: int
    answer_word: str | None
    matches: np.ndarray
    coverage: float
    dev_precision: float
    novelty: float
    score: float
    sample_indices: list[int] = field(default_factory=list)
    dev_matches: int = 0  # dev examples matched, the source excluded
    dev_correct: int = 0  # of those, with the rule's label
    p_good: float = 0.0  # P(precision >= tau) under the posterior
    proposer: str = ""

    @property
    def key(self) -> str:
        return rule_key(self.rule)


def rule_key(rule: Rule) -> str:
    """A canonical string identity of a rule: equal for rules that match the same way.

    Word lists are order-free (sorted) and, unless case-sensitive, lower-cased; everything else
    is the rule's ``to_dict()`` with sorted keys.
    """
    d = rule.to_dict()
    for name in ("words", "answer_words"):
        if name in d:
            words = [str(w).strip() for w in d[name]]
            if not d.get("case_sensitive", False):
                words = [w.lower() for w in words]
            d[name] = sorted(set(words))
    if d.get("kind") == "prompt" and not d.get("similarity_weight"):
        d["anchor_index"] = None  # without a similarity term the anchor does not change matches
    return json.dumps(d, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class ScoringConfig:
    """Knobs of ``rank_candidates`` (module doc, steps 3-6)."""

    prior: tuple[float, float] = (1.0, 1.0)  # Beta prior of a rule's precision (no pool view)
    # With the model's pool probabilities (``pool_proba``), the prior is centred on the rule's
    # agreement with the model on its pool matches (mean p_model(label | x), clipped to
    # [0.05, 0.95]) with this many pseudo-counts: dev evidence (a handful of matches) moves it
    # only as far as it deserves. Not tuned on any set: 4 = a rule needs 4 dev matches to
    # weigh as much as the pool's view.
    prior_strength: float = 4.0
    # count dev matches weighted by the boosting weights (the first build) instead of once each
    weighted_counts: bool = False
    tau: float = 0.6  # the precision a rule needs to be worth accepting
    max_jaccard: float = 0.8  # drop candidates this redundant with a better one
    min_pool_matches: int = 1  # a rule must label at least this many pool examples
    n_samples: int = 5  # sample matches shown as evidence


class Proposer(Protocol):
    def propose(
        self,
        *,
        instance_indices: np.ndarray,
        dev: TextDataset,
        pool_corpus: Corpus,
        dev_corpus: Corpus,
        accepted: Sequence[Rule],
        judged: set[str],
        n_classes: int,
        k: int,
    ) -> list[Candidate]: ...


# --------------------------------------------------------------------------- ranking
def _weights(dev_weights: np.ndarray | None, n_dev: int) -> np.ndarray:
    if dev_weights is None:
        return np.ones(n_dev)
    w = np.asarray(dev_weights, dtype=np.float64).reshape(-1)
    if w.shape != (n_dev,) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError(f"dev_weights must be {n_dev} finite non-negative numbers, not all zero")
    return w * (n_dev / w.sum())  # mean 1: counts stay on the scale of examples


def _pool_covered(accepted: Sequence[Rule], pool_corpus: Corpus) -> np.ndarray:
    covered = np.zeros(len(pool_corpus), dtype=bool)
    if accepted:
        for idx in match_rules(list(accepted), pool_corpus):
            covered[idx] = True
    return covered


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def rank_candidates(
    rules: Sequence[Rule],
    sources: Sequence[int],
    answer_words: Sequence[str | None],
    *,
    pool_corpus: Corpus,
    dev_corpus: Corpus,
    dev_labels: np.ndarray,
    accepted: Sequence[Rule] = (),
    judged: set[str] | frozenset[str] = frozenset(),
    k: int = 10,
    dev_weights: np.ndarray | None = None,
    covered: np.ndarray | None = None,
    config: ScoringConfig = ScoringConfig(),
    proposer: str | Sequence[str] = "",
    pool_proba: np.ndarray | None = None,
) -> list[Candidate]:
    """Score, filter and rank raw candidate rules (module doc); the best ``k`` as ``Candidate``s.

    ``sources[j]``/``answer_words[j]``: the dev instance and LM word behind ``rules[j]``;
    ``proposer``: the proposer's name, or one name per rule (candidates of several proposers).
    ``covered``: (n_pool,) bool pool coverage of the accepted rules (computed when None).
    ``pool_proba``: (n_pool, K) the current model's probabilities on the pool; the precision
    prior is then centred on the rule's agreement with it (``ScoringConfig.prior_strength``).
    """
    dev_labels = np.asarray(dev_labels, dtype=np.int64)
    proposers = [proposer] * len(rules) if isinstance(proposer, str) else list(proposer)
    n_pool, n_dev = len(pool_corpus), len(dev_corpus)
    if dev_labels.shape != (n_dev,):
        raise ValueError(f"dev_labels has {dev_labels.shape} entries for {n_dev} dev examples")
    w = _weights(dev_weights, n_dev)  # validated even when unused
    if not config.weighted_counts:
        w = np.ones(n_dev)
    if pool_proba is not None:
        pool_proba = np.asarray(pool_proba, dtype=np.float64)
        if pool_proba.ndim != 2 or pool_proba.shape[0] != n_pool:
            raise ValueError(f"pool_proba must be (n_pool={n_pool}, K), not {pool_proba.shape}")
    skip = set(judged) | {rule_key(r) for r in accepted}
    uniq: dict[str, int] = {}
    for j, rule in enumerate(rules):
        key = rule_key(rule)
        if key not in skip and key not in uniq:
            uniq[key] = j
    if not uniq or k <= 0:
        return []
    keep = list(uniq.values())
    cand_rules = [rules[j] for j in keep]
    pool_m = match_rules(cand_rules, pool_corpus)
    dev_m = match_rules(cand_rules, dev_corpus)
    if covered is None:
        covered = _pool_covered(accepted, pool_corpus)
    covered = np.asarray(covered, dtype=bool)
    if covered.shape != (n_pool,):
        raise ValueError(f"covered must be a ({n_pool},) bool mask of the pool")

    rows = []
    for c, j in enumerate(keep):
        rule, src = cand_rules[c], int(sources[j])
        pm = pool_m[c]
        if pm.size < config.min_pool_matches:
            continue
        dm = dev_m[c]
        dm = dm[dm != src]  # leave-one-out: the source proposed it
        labeled = dm[dev_labels[dm] >= 0]
        hit = dev_labels[labeled] == rule.label
        correct_w = float(w[labeled][hit].sum())
        wrong_w = float(w[labeled][~hit].sum())
        if pool_proba is not None and rule.label < pool_proba.shape[1]:
            agree = float(np.clip(pool_proba[pm, rule.label].mean(), 0.05, 0.95))
            a, b = config.prior_strength * agree, config.prior_strength * (1.0 - agree)
        else:
            a, b = config.prior
        alpha, beta = a + correct_w, b + wrong_w
        p_mean = alpha / (alpha + beta)
        p_good = float(1.0 - betainc(alpha, beta, config.tau))  # P(precision >= tau)
        new = int((~covered[pm]).sum())
        score = p_good * float(np.log1p(new))
        rows.append(
            {
                "c": c,
                "j": j,
                "pm": pm,
                "precision": p_mean,
                "p_good": p_good,
                "novelty": new / pm.size,
                "score": score,
                "dev_matches": int(labeled.size),
                "dev_correct": int(hit.sum()),
            }
        )
    rows.sort(key=lambda r: (-r["score"], -r["precision"], -r["pm"].size, r["j"]))

    chosen: list[dict[str, Any]] = []
    for r in rows:
        if len(chosen) >= k:
            break
        if any(_jaccard(r["pm"], q["pm"]) >= config.max_jaccard for q in chosen):
            continue
        chosen.append(r)

    out = []
    for r in chosen:
        rule = cand_rules[r["c"]]
        pm = r["pm"]
        rng = np.random.default_rng(zlib.crc32(rule_key(rule).encode()))
        fresh, old = pm[~covered[pm]], pm[covered[pm]]
        picks = list(rng.permutation(fresh)[: config.n_samples])
        picks += list(rng.permutation(old)[: config.n_samples - len(picks)])
        out.append(
            Candidate(
                rule=rule,
                source_index=int(sources[r["j"]]),
                answer_word=answer_words[r["j"]],
                matches=pm,
                coverage=float(pm.size / max(n_pool, 1)),
                dev_precision=float(r["precision"]),
                novelty=float(r["novelty"]),
                score=float(r["score"]),
                sample_indices=sorted(int(i) for i in picks),
                dev_matches=r["dev_matches"],
                dev_correct=r["dev_correct"],
                p_good=float(r["p_good"]),
                proposer=proposers[r["j"]],
            )
        )
    return out


@dataclass
class RawCandidates:
    """Unranked candidate rules, one entry per (rule, the dev instance and answer word behind it,
    the proposer that made it); duplicates are fine (``rank_candidates`` merges them)."""

    rules: list[Rule] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    answer_words: list[str | None] = field(default_factory=list)
    proposers: list[str] = field(default_factory=list)

    def add(self, rule: Rule, source: int, answer_word: str | None, proposer: str) -> None:
        self.rules.append(rule)
        self.sources.append(source)
        self.answer_words.append(answer_word)
        self.proposers.append(proposer)

    def extend(self, other: RawCandidates) -> None:
        self.rules += other.rules
        self.sources += other.sources
        self.answer_words += other.answer_words
        self.proposers += other.proposers


class RankedProposer(ABC):
    """``Proposer.propose`` for the library's proposers: their ``raw_candidates``, ranked by
    ``rank_candidates`` with their ``scoring``."""

    scoring: ScoringConfig

    @abstractmethod
    def raw_candidates(
        self,
        *,
        instance_indices: np.ndarray,
        dev: TextDataset,
        pool_corpus: Corpus,
        dev_corpus: Corpus,
        n_classes: int,
    ) -> RawCandidates:
        """Unranked candidate rules from the large-error instances."""

    def propose(
        self,
        *,
        instance_indices: np.ndarray,
        dev: TextDataset,
        pool_corpus: Corpus,
        dev_corpus: Corpus,
        accepted: Sequence[Rule],
        judged: set[str],
        n_classes: int,
        k: int,
        dev_weights: np.ndarray | None = None,
        covered: np.ndarray | None = None,
        pool_proba: np.ndarray | None = None,
    ) -> list[Candidate]:
        raw = self.raw_candidates(
            instance_indices=instance_indices,
            dev=dev,
            pool_corpus=pool_corpus,
            dev_corpus=dev_corpus,
            n_classes=n_classes,
        )
        return rank_candidates(
            raw.rules,
            raw.sources,
            raw.answer_words,
            pool_corpus=pool_corpus,
            dev_corpus=dev_corpus,
            dev_labels=dev.labels,
            accepted=accepted,
            judged=judged,
            k=k,
            dev_weights=dev_weights,
            covered=covered,
            config=self.scoring,
            proposer=raw.proposers,
            pool_proba=pool_proba,
        )


# --------------------------------------------------------------------------- LM proposers
class _AnswerProposer(RankedProposer):
    """Shared body of the LM proposers: read the dev top-k answers, make prompt rules, rank."""

    name = "prompt"
    default_templates: dict[str, list[Template]] = DEFAULT_TEMPLATES

    def __init__(
        self,
        templates: Sequence[Template] | None = None,
        *,
        lm: Any = None,
        words_per_instance: int | None = None,
        answer_k: int = 10,
        similarity_weight: float = 0.0,
        min_similarity: float = 0.3,
        scoring: ScoringConfig = ScoringConfig(),
        batch_size: int | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        """templates: None = the ones the corpora's answer indices hold (or the defaults for the
        task when an index must be computed); lm: a loaded LM or a name/path, used only when an
        index is missing; words_per_instance: how many of an instance's top answers become
        candidates (None = all k); similarity_weight > 0 adds the embedding term anchored to the
        source instance, matching at 1 + similarity_weight * min_similarity."""
        if similarity_weight < 0:
            raise ValueError("similarity_weight must be >= 0")
        self.templates = list(templates) if templates is not None else None
        self.lm = lm
        self.words_per_instance = words_per_instance
        self.answer_k = answer_k
        self.similarity_weight = float(similarity_weight)
        self.min_similarity = float(min_similarity)
        self.scoring = scoring
        self.batch_size = batch_size
        self.cache_dir = cache_dir

    @abstractmethod
    def _load_lm(self) -> Any:
        """The loaded LM (loaded only when an answer index has to be computed)."""

    def _templates_for(self, dev: TextDataset) -> list[Template]:
        if self.templates is not None:
            return self.templates
        return list(self.default_templates[dev.task_type])

    def _ensure_index(self, corpus: Corpus, templates: list[Template]):
        """The corpus's answer index holding ``templates`` (missing ones computed and attached)."""
        index = corpus.answer_index
        missing = [t for t in templates if index is None or t.id not in index]
        if missing:
            lm = self._load_lm()
            entities = corpus.entities
            extra = compute_answer_index(
                lm,
                list(corpus.texts),
                missing,
                k=self.answer_k,
                entities=entities,
                batch_size=self.batch_size,
                cache_dir=self.cache_dir,
            )
            corpus.answer_index = extra if index is None else AnswerIndexSet(index, extra)
        return corpus.answer_index

    def raw_candidates(
        self,
        *,
        instance_indices: np.ndarray,
        dev: TextDataset,
        pool_corpus: Corpus,
        dev_corpus: Corpus,
        n_classes: int,
    ) -> RawCandidates:
        """Every (template, top answer word) of each instance as a prompt rule for its label."""
        if self.templates is None and dev_corpus.answer_index is not None:
            held = _held_templates(dev_corpus.answer_index)
            templates = [
                t
                for t in held
                if pool_corpus.answer_index is not None and t.id in pool_corpus.answer_index
            ] or self._templates_for(dev)
        else:
            templates = self._templates_for(dev)
        templates = [t for t in templates if t.task_type == dev.task_type] or templates
        dev_index = self._ensure_index(dev_corpus, templates)
        self._ensure_index(pool_corpus, templates)
        if self.similarity_weight > 0:
            _check_embeddings(pool_corpus, dev_corpus)

        raw = RawCandidates()
        for i in np.asarray(instance_indices, dtype=np.int64):
            y = int(dev.labels[i])
            if y < 0 or y >= n_classes:
                continue
            for t in templates:
                for word in dev_index.topk(t.id, int(i))[: self.words_per_instance]:
                    raw.add(self._rule(t.id, word, y, int(i)), int(i), word, self.name)
        return raw

    def _rule(self, template_id: str, word: str, label: int, source: int) -> PromptRule:
        if self.similarity_weight > 0:
            return PromptRule(
                template_id,
                (word,),
                label,
                anchor_index=source,
                similarity_weight=self.similarity_weight,
                threshold=1.0 + self.similarity_weight * self.min_similarity,
            )
        return PromptRule(template_id, (word,), label, anchor_index=source)


def _held_templates(index: AnswerIndex | AnswerIndexSet) -> list[Template]:
    held = index.templates
    return [held[tid] for tid in index.template_ids if tid in held]


def _check_embeddings(pool_corpus: Corpus, dev_corpus: Corpus) -> None:
    if pool_corpus.embeddings is None or dev_corpus.embeddings is None:
        raise ValueError(
            "similarity_weight > 0 needs embeddings on both corpora (models.lm.embed_texts)"
        )
    if pool_corpus.anchor_embeddings is None:
        raise ValueError(
            "similarity_weight > 0 anchors rules to dev examples: give the pool corpus "
            "anchor_embeddings = the dev embeddings"
        )


class PromptProposer(_AnswerProposer):
    """Causal-LM prompting (default: SmolLM2-135M-Instruct, ``DEFAULT_TEMPLATES``)."""

    name = "prompt"
    default_templates = DEFAULT_TEMPLATES

    def _load_lm(self) -> Any:
        from models.lm import CausalLM, load_causal_lm

        if not isinstance(self.lm, CausalLM):
            self.lm = load_causal_lm(self.lm)
        return self.lm


class MaskedLMProposer(_AnswerProposer):
    """Masked-LM prompting (``lm``: e.g. "roberta-base" or a loaded ``MaskedLM``; mask templates).

    Its answers live in their own index (another vocabulary): ``compute_answer_index`` with the
    masked LM, combined with a causal LM's index through ``AnswerIndexSet`` when both are used.
    """

    name = "masked_lm"
    default_templates = DEFAULT_MASK_TEMPLATES

    def __init__(self, lm: Any, templates: Sequence[Template] | None = None, **kw: Any) -> None:
        if lm is None:
            raise ValueError("MaskedLMProposer needs a masked LM (a name, a path or a MaskedLM)")
        super().__init__(templates, lm=lm, **kw)

    def _templates_for(self, dev: TextDataset) -> list[Template]:
        templates = super()._templates_for(dev)
        return [t for t in templates if t.style == "mask"] or templates

    def raw_candidates(self, **kw: Any) -> RawCandidates:
        if self.templates is None:  # only mask-style templates, even if a causal index is there
            self.templates = list(DEFAULT_MASK_TEMPLATES[kw["dev"].task_type])
        return super().raw_candidates(**kw)

    def _load_lm(self) -> Any:
        from models.lm import MaskedLM, load_masked_lm

        if not isinstance(self.lm, MaskedLM):
            self.lm = load_masked_lm(self.lm)
        return self.lm


# --------------------------------------------------------------------------- n-grams
# Question words carry the class of a question ("how many" asks for a number, "who" for a
# person), so the n-grams count them as content words although stop-word lists hold them.
QUESTION_WORDS = frozenset({"who", "whom", "whose", "what", "which", "where", "when", "why", "how"})


def _tokens(text: str) -> list[Token]:
    """The words of a text as the matcher sees them (``tokenize.tokenize``)."""
    return tokenize(text)


def _usable(token: str) -> bool:
    """A word an n-gram may hold: no digits or underscores (numbers become regex rules) and
    unchanged by the matcher's normalization."""
    return not any(ch.isdigit() or ch == "_" for ch in token) and is_stable(token)


def _ngrams(text: str, max_n: int) -> list[str]:
    """Uni- to ``max_n``-grams of a text, shortest first: unigrams that are not stop words, longer
    ones that neither start nor end with a stop word, except after a leading question word
    ("how many", "what country"). Only words the text joins with one space form an n-gram, so
    every n-gram matches the text it came from (``tokenize``)."""
    tokens = _tokens(text)
    texts = [t.text for t in tokens]
    words = stop_words()
    ok = [_usable(t) for t in texts]
    stop = [(t in words and t not in QUESTION_WORDS) or len(t) < 2 for t in texts]
    out: list[str] = []
    for n in range(1, max_n + 1):
        for s, e in ngram_spans(tokens, n):
            if not all(ok[s:e]):
                continue
            first, last = stop[s], stop[e - 1]
            if n == 1:
                if first or (len(texts[s]) < 3 and texts[s] not in QUESTION_WORDS):
                    continue
            elif all(stop[s:e]) or (texts[s] not in QUESTION_WORDS and (first or last)):
                continue
            out.append(phrase(tokens, s, e))
    return list(dict.fromkeys(out))


_DIGIT_TOKEN = re.compile(r"\S*\d\S*")
_DIGIT_RUN = re.compile(r"\d+")
_EDGE_PUNCT = ".,;:!?()[]{}\"'"


def _number_shapes(text: str) -> list[str]:
    """Regex patterns of the text's tokens that hold digits, with the digits generalized: a run
    of 5 or more digits (phone numbers, short codes) becomes ``\\d{5,}``, a shorter one ``\\d+``;
    other characters stay literal ("£1000" -> ``£\\d+``, "150p" -> ``\\b\\d+p\\b``). Numbers carry
    what words cannot (prices, phone numbers, dates), and no word list or LM answer names them."""
    out: list[str] = []
    for token in _DIGIT_TOKEN.findall(text):
        token = token.strip(_EDGE_PUNCT).lower()
        # Control characters (NUL...) make no pattern a person would write, and rules refuse NUL.
        if not token or len(token) > 40 or not token.isprintable():
            continue
        parts, last = [], 0
        for run in _DIGIT_RUN.finditer(token):
            parts.append(re.escape(token[last : run.start()]))
            parts.append(r"\d{5,}" if len(run.group()) >= 5 else r"\d+")
            last = run.end()
        parts.append(re.escape(token[last:]))
        pattern = "".join(parts)
        if token[0].isalnum():
            pattern = r"\b" + pattern
        if token[-1].isalnum():
            pattern += r"\b"
        out.append(pattern)
    return list(dict.fromkeys(out))


def _between_ngrams(text: str, max_n: int) -> list[str]:
    """Uni- to ``max_n``-grams of the text between two entities, longest first, stop words
    allowed anywhere: prepositions are what carry a relation ("into", "caused by", "part of")."""
    tokens = _tokens(text)
    ok = [_usable(t.text) for t in tokens]
    out: list[str] = []
    for n in range(min(max_n, len(tokens)), 0, -1):
        for s, e in ngram_spans(tokens, n):
            if all(ok[s:e]):
                out.append(phrase(tokens, s, e))
    return list(dict.fromkeys(out))


class NgramProposer(RankedProposer):
    """Discriminative n-grams of the large-error instances as keyword rules (no LM).

    Text classification: unigrams (no stop words) and bigrams (not starting or ending with a
    stop word, unless a question word leads: "how many") of the instance's text. Relation
    extraction: uni- to trigrams of the text between the two entities, stop words included
    ("into", "caused by"), as ``scope="between"`` rules. Ranked like every candidate (dev
    precision, novelty, coverage).
    """

    name = "ngram"

    def __init__(
        self,
        max_n: int = 2,
        *,
        max_per_instance: int = 40,
        scoring: ScoringConfig = ScoringConfig(),
    ) -> None:
        if max_n < 1:
            raise ValueError("max_n must be >= 1")
        self.max_n = max_n
        self.max_per_instance = max_per_instance
        self.scoring = scoring

    def raw_candidates(
        self,
        *,
        instance_indices: np.ndarray,
        dev: TextDataset,
        pool_corpus: Corpus,
        dev_corpus: Corpus,
        n_classes: int,
    ) -> RawCandidates:
        """The n-grams of each instance (between the entities for relations) as keyword rules."""
        relation = dev.task_type == "relation_extraction" and dev.entities is not None
        raw = RawCandidates()
        for i in np.asarray(instance_indices, dtype=np.int64):
            y = int(dev.labels[i])
            if y < 0 or y >= n_classes:
                continue
            if relation:
                grams = _between_ngrams(_between(dev.texts[i], dev.entities[i]), max(self.max_n, 3))
            else:
                grams = _ngrams(dev.texts[i], self.max_n)
            for gram in grams[: self.max_per_instance]:
                rule = KeywordRule((gram,), y, scope="between" if relation else "text")
                raw.add(rule, int(i), None, self.name)
            if not relation:
                for pattern in _number_shapes(dev.texts[i])[: self.max_per_instance]:
                    raw.add(RegexRule(pattern, y), int(i), None, self.name)
        return raw


class CombinedProposer(RankedProposer):
    """Several proposers' candidates ranked together, so the best of each reach the reviewer.

    E.g. ``CombinedProposer([PromptProposer(), NgramProposer()])``: the LM's answer words find
    topical rules ("money", "subscribe"), the n-grams the function-word cues an LM never answers
    with ("how many", "caused by"). Each candidate keeps the name of the proposer that made it.
    """

    def __init__(self, proposers: Sequence[Any], *, scoring: ScoringConfig = ScoringConfig()):
        if not proposers:
            raise ValueError("CombinedProposer needs at least one proposer")
        self.proposers = list(proposers)
        self.scoring = scoring
        self.name = "+".join(p.name for p in self.proposers)

    def raw_candidates(self, **kw: Any) -> RawCandidates:
        raw = RawCandidates()
        for proposer in self.proposers:
            raw.extend(proposer.raw_candidates(**kw))
        return raw


def _between(text: str, pair: Any) -> str:
    (_, s1, e1), (_, s2, e2) = pair
    lo, hi = (e1, s2) if s1 <= s2 else (e2, s1)
    return text[lo:hi] if lo <= hi else ""
