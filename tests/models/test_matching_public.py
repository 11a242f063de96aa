"""The public one-rule matcher (JoinedTexts) and the one highlighter of models.prboost.matching."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.prboost.matching import (
    Corpus,
    JoinedTexts,
    highlight_html,
    keyword_pattern,
    match_rule,
    match_spans,
)
from models.prboost.rules import KeywordRule, PromptRule, RegexRule, SimilarityRule

WORDS = ["free", "money", "check out", "c++", "é", "win"]
texts_strategy = st.lists(
    st.lists(
        st.sampled_from([*WORDS, "x", " ", "\n", ".", "Free", "freedom", "\x00"]), max_size=8
    ).map("".join),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(texts=texts_strategy, words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_joined_keyword_matching_is_the_engines(texts, words):
    corpus = Corpus(texts=texts)
    matcher = JoinedTexts(corpus)
    for mode in ("any", "all"):
        for case_sensitive in (False, True):
            rule = KeywordRule(
                words=tuple(words), label=1, mode=mode, case_sensitive=case_sensitive
            )
            found, looked = matcher.match(rule)
            assert looked is None
            assert np.array_equal(found, match_rule(rule, corpus)), rule


@settings(max_examples=60, deadline=None)
@given(
    texts=texts_strategy,
    pattern=st.sampled_from(["free", "^free", "free$", r"\bwin\b", r"money\s*x", r"x+", "é"]),
)
def test_joined_regex_matching_is_the_engines(texts, pattern):
    corpus = Corpus(texts=texts)
    rule = RegexRule(pattern=pattern, label=0)
    found, looked = JoinedTexts(corpus).match(rule)
    assert looked is None and np.array_equal(found, match_rule(rule, corpus))


def test_a_dense_regex_with_a_budget_looks_at_a_sample_plus_the_kept_texts():
    texts = [f"filler {i}" for i in range(5000)]
    always = np.zeros(len(texts), dtype=bool)
    always[4990:] = True
    rule = RegexRule(pattern=r"\w+", label=1)
    found, looked = JoinedTexts(Corpus(texts=texts)).match(rule, budget=200, always=always)
    assert looked is not None and 200 < looked.size < 1000
    assert set(range(4990, 5000)) <= set(looked.tolist())
    assert set(found.tolist()) == set(looked.tolist())  # every text matches


def test_other_rule_kinds_go_to_the_engine():
    emb = np.eye(3, dtype=np.float32)
    corpus = Corpus(texts=["a", "b", "c"], embeddings=emb)
    rule = SimilarityRule(anchor_index=1, threshold=0.5, label=0)
    found, looked = JoinedTexts(corpus).match(rule)
    assert looked is None and found.tolist() == [1]


def test_spans_of_keyword_regex_and_prompt_rules():
    text = "Free money! Check  out freedom, win free"
    assert match_spans(KeywordRule(words=("free", "check out"), label=1), text) == [
        (0, 4),
        (12, 22),
        (36, 40),
    ]
    assert match_spans(RegexRule(pattern=r"fr\w+", label=1, flags=""), text) == [(23, 30), (36, 40)]
    prompt = PromptRule(template_id="t", answer_words=("win",), label=1)
    assert match_spans(prompt, text) == [(32, 35)]
    assert keyword_pattern([" "]) is None


def test_highlight_escapes_every_piece_and_marks_the_spans():
    text = "<b>free</b> & 'more'"
    html = highlight_html(text, [(3, 7)])
    assert html == "&lt;b&gt;<mark>free</mark>&lt;/b&gt; &amp; &#x27;more&#x27;"


def test_highlight_cuts_a_long_text_around_the_first_span():
    text = "a" * 100 + "HIT" + "b" * 100
    html = highlight_html(text, [(100, 103)], max_chars=30)
    assert html.startswith("…") and html.endswith("…") and "<mark>HIT</mark>" in html
    assert len(html.replace("<mark>", "").replace("</mark>", "")) == 32


def test_highlight_skips_overlaps_and_takes_attributes():
    html = highlight_html("abcdef", [(0, 3), (2, 5), (4, 6)], attributes=[' a="1"', "", ' a="3"'])
    assert html == '<mark a="1">abc</mark>d<mark a="3">ef</mark>'


@settings(max_examples=60, deadline=None)
@given(
    texts=texts_strategy,
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    window=st.sampled_from([1, 5, 30, 1 << 20]),
)
def test_keyword_matching_in_windows_is_the_engines(texts, words, window):
    import models.prboost.matching as matching

    corpus = Corpus(texts=texts)
    saved, matching.JOINED_WINDOW_BYTES = matching.JOINED_WINDOW_BYTES, window
    try:
        for mode in ("any", "all"):
            rule = KeywordRule(words=tuple(words), label=1, mode=mode)
            result = JoinedTexts(corpus).match_bounded(rule)
            assert result.stopped_after is None
            assert np.array_equal(result.matched, match_rule(rule, corpus)), rule
    finally:
        matching.JOINED_WINDOW_BYTES = saved


def test_a_keyword_scan_stops_at_the_time_cap_or_goes_on_with_a_sample(monkeypatch):
    monkeypatch.setattr("models.prboost.matching.JOINED_WINDOW_BYTES", 1000)
    texts = [f"free row {i}" if i % 3 else f"row {i}" for i in range(20_000)]
    corpus = Corpus(texts=texts)
    rule = KeywordRule(words=("free",), label=1)
    cut = JoinedTexts(corpus).match_bounded(rule, max_seconds=0.0)
    assert cut.stopped_after is not None and 0 < cut.stopped_after < len(texts)
    expected = match_rule(rule, Corpus(texts=texts[: cut.stopped_after]))
    assert np.array_equal(cut.matched, expected)
    sampled = JoinedTexts(corpus).match_bounded(rule, budget=500, max_seconds=0.0)
    assert sampled.looked is not None and set(sampled.matched) <= set(sampled.looked.tolist())
    assert set(sampled.matched.tolist()) == {i for i in sampled.looked.tolist() if i % 3}


@settings(max_examples=40, deadline=None)
@given(
    texts=texts_strategy,
    pattern=st.sampled_from(["(?s).*x", r"[\s\S]*free", "(?s)free.*win", ".*.*.*", "x\nfree"]),
    window=st.sampled_from([1, 7, 64, 1 << 20]),
)
def test_patterns_whose_hits_run_over_text_edges_match_as_the_engine(texts, pattern, window):
    """A hit that runs past its text switches to the per-text engine at once; the search
    windows (any size) change nothing."""
    import models.prboost.matching as matching

    corpus = Corpus(texts=texts)
    rule = RegexRule(pattern=pattern, label=0, flags="")
    saved, matching.JOINED_WINDOW_BYTES = matching.JOINED_WINDOW_BYTES, window
    try:
        result = JoinedTexts(corpus).match_bounded(rule)
    finally:
        matching.JOINED_WINDOW_BYTES = saved
    assert result.looked is None and result.stopped_after is None
    assert np.array_equal(result.matched, match_rule(rule, corpus))


def test_a_hit_running_over_its_text_switches_engines_at_once(monkeypatch):
    """(?s).*9 on many texts: one joined search, then per-text (not 500 corpus-long scans)."""
    texts = [f"row {i} of many" for i in range(20_000)]
    corpus = Corpus(texts=texts)
    matcher = JoinedTexts(corpus)
    calls = []
    original = matcher._per_text

    def spy(rule, first, **kwargs):
        calls.append(first)
        return original(rule, first, **kwargs)

    monkeypatch.setattr(matcher, "_per_text", spy)
    rule = RegexRule(pattern="(?s).*9", label=0, flags="")
    found, looked = matcher.match(rule)
    assert calls == [0] and looked is None
    assert np.array_equal(found, match_rule(rule, corpus))


def test_a_time_cap_stops_the_match_and_says_where():
    texts = [f"row {i}" for i in range(30_000)]
    rule = RegexRule(pattern="(?s).*9", label=0, flags="")
    result = JoinedTexts(Corpus(texts=texts)).match_bounded(rule, max_seconds=0.0)
    assert result.stopped_after is not None and 0 < result.stopped_after < len(texts)
    # The matches found are exactly those among the texts looked at.
    expected = match_rule(rule, Corpus(texts=texts[: result.stopped_after]))
    assert np.array_equal(result.matched, expected)


def test_a_bytes_cap_stops_a_search_that_matches_nothing(monkeypatch):
    monkeypatch.setattr("models.prboost.matching.JOINED_WINDOW_BYTES", 1000)
    texts = [f"row {i}" for i in range(10_000)]
    rule = RegexRule(pattern="zzz", label=0)
    result = JoinedTexts(Corpus(texts=texts)).match_bounded(rule, max_bytes=5000)
    assert result.stopped_after is not None and result.stopped_after < 2000
    assert result.matched.size == 0
    full = JoinedTexts(Corpus(texts=texts)).match_bounded(rule)
    assert full.stopped_after is None
