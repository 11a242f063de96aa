"""One tokenizer for proposing and matching: every n-gram proposed from a text matches that text."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.data import TextDataset
from models.prboost.matching import Corpus, match_rules
from models.prboost.propose import NgramProposer, _between_ngrams, _ngrams
from models.prboost.rules import KeywordRule
from models.prboost.tokenize import tokenize, words

# Text mixing scripts, combining marks, apostrophes, punctuation and odd whitespace, plus any
# Unicode at all (hypothesis' default alphabet leaves out surrogates only).
PIECES = st.sampled_from(
    [
        "horrible",
        ",",
        " ",
        "  ",
        "\t",
        "\n",
        "don't",
        "l’homme",
        "हिन्दी",  # Devanagari: combining vowel signs and virama inside the word
        "नमस्ते",
        "e\u0301",  # e + combining acute
        "İstanbul",  # case-folds into i + combining dot
        "ß",
        "ﬁne",  # ligature: NFKC -> "fine"
        "Ｆｕｌｌ",  # full-width
        "12ab",
        "_x",
        "How many",
        ".",
        "'",
        "\u200d",
        "日本語",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=60),
    st.lists(PIECES, max_size=12).map("".join),
    st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=10).map("".join),
)


def _matches_own_text(grams: list[str], text: str) -> list[str]:
    """The n-grams of ``grams`` that do NOT match ``text``."""
    if not grams:
        return []
    corpus = Corpus(texts=[text])
    rules = [KeywordRule((g,), 0) for g in grams]
    hits = match_rules(rules, corpus)
    return [g for g, h in zip(grams, hits) if h.size != 1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_every_ngram_matches_the_text_it_came_from(text):
    assert _matches_own_text(_ngrams(text, 3), text) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_every_relation_ngram_matches_its_between_text(text):
    assert _matches_own_text(_between_ngrams(text, 3), text) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXTS, min_size=1, max_size=4))
@example(texts=["0\x00"])  # a number beside a NUL once made a pattern that rules refuse
def test_every_proposed_keyword_candidate_matches_its_source(texts):
    dev = TextDataset(
        texts=texts,
        labels=np.zeros(len(texts), dtype=np.int64),
        label_names=["a", "b"],
        ids=[str(i) for i in range(len(texts))],
    )
    corpus = Corpus(texts=texts)
    proposer = NgramProposer(max_n=3)
    raw = proposer.raw_candidates(
        instance_indices=np.arange(len(texts)),
        dev=dev,
        pool_corpus=corpus,
        dev_corpus=corpus,
        n_classes=2,
    )
    keyword = [(r, s) for r, s in zip(raw.rules, raw.sources) if isinstance(r, KeywordRule)]
    if keyword:
        hits = match_rules([r for r, _ in keyword], corpus)
        for (rule, source), h in zip(keyword, hits):
            assert source in h, (rule, texts[source])


def test_combining_marks_stay_inside_words():
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert words("cafe\u0301 noir") == ["café", "noir"]  # NFKC composes e + acute


def test_no_ngram_across_punctuation():
    assert "horrible horrible" not in _ngrams("horrible, horrible", 2)
    assert "horrible movie" in _ngrams("a horrible movie", 2)
    tokens = tokenize("great.  Fine")
    assert [t.joined for t in tokens] == [False, False]


def test_apostrophes_join_words():
    assert words("Don't stop") == ["don't", "stop"]
    assert words("'quoted'") == ["quoted"]
