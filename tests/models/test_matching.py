"""The matching engine: keyword/regex/prompt/similarity rules on a corpus -> sparse label matrix."""

import re
import time
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.prboost.matching import Corpus, LabelMatrix, apply_rules, match_rule, match_rules
from models.prboost.rules import (
    KeywordRule,
    PromptRule,
    RegexRule,
    RuleError,
    SimilarityRule,
)


def hits(rule, texts):
    return match_rule(rule, Corpus(texts)).tolist()


# ----------------------------------------------------------------------------- keyword edge cases


def test_keyword_needs_word_boundaries():
    texts = ["Free entry", "freedom", "carefree", "free-for-all", "(free)", "free_stuff", "free"]
    assert hits(KeywordRule("free", 1), texts) == [0, 3, 4, 6]


def test_keyword_is_case_insensitive_unless_asked():
    texts = ["FREE", "Free", "free"]
    assert hits(KeywordRule("free", 1), texts) == [0, 1, 2]
    assert hits(KeywordRule("Free", 1, case_sensitive=True), texts) == [1]


def test_keyword_unicode_casefold_accents_and_nfkc():
    texts = [
        "STRASSE",
        "straße",
        "STRAẞE",
        "strase",
        "café",
        "cafe\u0301",
        "cafe",
        "ｆｒｅｅ",
        "ﬁne",
    ]
    assert hits(KeywordRule("Straße", 0), texts) == [0, 1, 2]
    assert hits(KeywordRule("café", 0), texts) == [4, 5]  # composed == decomposed; accent matters
    assert hits(KeywordRule("free", 0), texts) == [7]  # fullwidth letters
    assert hits(KeywordRule("fine", 0), texts) == [8]  # ligature


def test_keyword_boundaries_respect_non_latin_letters():
    texts = ["naïve", "naïveté", "日本 語", "Ελλάδα", "ΕΛΛΆΔΑ ok"]
    assert hits(KeywordRule("naïve", 0), texts) == [0]
    assert hits(KeywordRule("日本", 0), texts) == [2]
    assert hits(KeywordRule("ελλάδα", 0), texts) == [3, 4]


def test_phrases_match_across_whitespace_and_next_to_punctuation():
    texts = ["Click here!", "(click   here)", "click\nhere", "click, here", "clickhere"]
    assert hits(KeywordRule("click here", 1), texts) == [0, 1, 2]


def test_punctuation_edges_need_no_boundary():
    texts = ["I love c++11", "c++", "abc++", "$$$ now", "win$$$"]
    assert hits(KeywordRule("c++", 0), texts) == [0, 1]
    assert hits(KeywordRule("$$$", 1), texts) == [3, 4]


def test_keywords_that_share_an_automaton_key_both_match():
    # the word "1" after a period and the word ".1" are the same string to the scanner
    rules = [KeywordRule(("1",), 0), KeywordRule((".1",), 1), KeywordRule(("v.1",), 1)]
    L = apply_rules(rules, Corpus([".1", "v.1 and 1", "x1"]))
    assert [L.matches(j).tolist() for j in range(3)] == [[0, 1], [0, 1], [1]]


def test_keyword_all_mode_needs_every_word():
    texts = ["win a prize", "win win", "prize", "a prize to win", ""]
    assert hits(KeywordRule(("win", "prize"), 1, mode="all"), texts) == [0, 3]
    assert hits(KeywordRule(("win", "prize"), 1), texts) == [0, 1, 2, 3]


def test_empty_texts_and_empty_corpus():
    assert hits(KeywordRule("free", 1), ["", "", "free"]) == [2]
    L = apply_rules([KeywordRule("free", 1), RegexRule("x", 0)], Corpus([]))
    assert L.shape == (0, 2)
    assert apply_rules([], Corpus(["a", "b"])).shape == (2, 0)


def test_texts_with_nul_characters_do_not_shift_documents():
    texts = ["a\x00free", "free", "nothing"]
    assert hits(KeywordRule("free", 1), texts) == [0, 1]


def test_overlapping_keywords_all_count():
    texts = ["free entry", "entry", "free"]
    rules = [KeywordRule("free entry", 1), KeywordRule("entry", 0), KeywordRule("free", 1)]
    assert [m.tolist() for m in match_rules(rules, Corpus(texts))] == [[0], [0, 1], [0, 2]]


def test_many_chunks_map_hits_to_the_right_documents(monkeypatch):
    from models.prboost import matching

    monkeypatch.setattr(matching, "CHUNK_CHARS", 16)
    # ASCII and non-ASCII documents take different paths; mix them
    texts = [
        f"doc {i}{' é' if i % 2 else ''} " + ("free" if i % 3 == 0 else "none") for i in range(200)
    ]
    found = matching._match_keyword_rules([KeywordRule("free", 1)], texts, None)[0]
    assert found.tolist() == list(range(0, 200, 3))


def test_lone_surrogates_and_control_characters_are_handled():
    texts = ["a\ud800 free", "\x01free\x02", "free\ud800x"]
    assert hits(KeywordRule("free", 1), texts) == [0, 1, 2]
    assert hits(RegexRule("free", 1), texts) == [0, 1, 2]


# ----------------------------------------------------------------------------- property: naive


def _naive_norm(text: str, case_sensitive: bool) -> str:
    text = unicodedata.normalize("NFKC", text.replace("\x00", " "))
    if not case_sensitive:
        text = text.casefold()
    return re.sub(r"\s+", " ", text)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch) in ("Mn", "Mc", "Me", "Pc")


def _naive_contains(text: str, word: str) -> bool:
    start = text.find(word)
    while start != -1:
        end = start + len(word)
        left_ok = start == 0 or not _is_word(word[0]) or not _is_word(text[start - 1])
        right_ok = end == len(text) or not _is_word(word[-1]) or not _is_word(text[end])
        if left_ok and right_ok:
            return True
        start = text.find(word, start + 1)
    return False


def naive_keyword_match(rule: KeywordRule, texts: list[str]) -> list[int]:
    words = [_naive_norm(w, rule.case_sensitive).strip(" ") for w in rule.words]
    out = []
    for i, text in enumerate(texts):
        norm = _naive_norm(text, rule.case_sensitive)
        found = [_naive_contains(norm, w) for w in words]
        if all(found) if rule.mode == "all" else any(found):
            out.append(i)
    return out


ALPHABET = "abAB ß-é.\n\t\u0301ẞ,x1_ (\x01"
corpus_texts = st.lists(st.text(alphabet=ALPHABET + "\x00", max_size=30), max_size=25)
rule_words = st.text(alphabet=ALPHABET, min_size=1, max_size=5)


def _make_rule(words, label, mode, case_sensitive):
    try:
        return KeywordRule(tuple(words), label, mode=mode, case_sensitive=case_sensitive)
    except RuleError:
        return None


keyword_rules = st.builds(
    _make_rule,
    st.lists(rule_words, min_size=1, max_size=3),
    st.integers(0, 2),
    st.sampled_from(["any", "all"]),
    st.booleans(),
).filter(lambda r: r is not None)


@settings(max_examples=300, deadline=None)
@given(texts=corpus_texts, rules=st.lists(keyword_rules, min_size=1, max_size=6))
def test_keyword_engine_equals_naive_reference(texts, rules):
    L = apply_rules(rules, Corpus(texts))
    assert L.shape == (len(texts), len(rules))
    for j, rule in enumerate(rules):
        assert L.matches(j).tolist() == naive_keyword_match(rule, texts), rule
        assert set(L.column_labels(j).tolist()) <= {rule.label}


REGEXES = [r"a+b", r"^a", r"b$", r"\bab\b", r"é|ß", r"[0-9]", r"a.b"]


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab é1\n", max_size=20), max_size=20),
    picks=st.lists(st.sampled_from(REGEXES), min_size=1, max_size=5),
    flags=st.sampled_from(["", "i", "s"]),
)
def test_regex_engine_equals_python_re_on_simple_patterns(texts, picks, flags):
    rules = [RegexRule(p, 0, flags=flags) for p in picks]
    L = apply_rules(rules, Corpus(texts))
    # RE2's \b, \w, \d and \s are ASCII-only, like Python's re.ASCII (see RegexRule)
    re_flags = re.ASCII | (re.I if "i" in flags else 0) | (re.S if "s" in flags else 0)
    for j, p in enumerate(picks):
        python_pattern = p.replace("$", r"\Z")  # RE2's $ is the very end; Python's allows a \n
        expected = [i for i, t in enumerate(texts) if re.search(python_pattern, t, re_flags)]
        assert L.matches(j).tolist() == expected


# ----------------------------------------------------------------------------- regex


def test_catastrophic_regex_on_a_corpus_returns_fast():
    texts = ["a" * 50_000 + "b", "aaaa", "b"] * 10
    start = time.perf_counter()
    L = apply_rules([RegexRule(r"(a+)+$", 1), RegexRule(r"(x+x+)+y", 0)], Corpus(texts))
    assert time.perf_counter() - start < 1.0
    assert L.matches(0).tolist() == list(range(1, 30, 3))
    assert L.matches(1).size == 0


def test_regex_word_classes_are_ascii_and_unicode_classes_work():
    texts = ["abé", "ab é", "Ünïcode"]
    assert hits(RegexRule(r"\bab\b", 0), texts) == [0, 1]  # é is not \w for RE2
    assert hits(RegexRule(r"\bab\pL", 0), texts) == [0]
    assert hits(RegexRule(r"ünïcode", 0), texts) == [2]  # (?i) folds Unicode case


def test_regex_searches_raw_text_with_flags():
    texts = ["Call 0800 123", "call me", "CALL 12"]
    assert hits(RegexRule(r"call \d+", 1), texts) == [0, 2]
    assert hits(RegexRule(r"call \d+", 1, flags=""), texts) == []
    assert hits(RegexRule(r"^call", 1, flags=""), texts) == [1]


# ----------------------------------------------------------------------------- relation scope


def test_between_scope_looks_only_between_the_entities():
    texts = ["the cup of tea was hot", "tea of the cup", "of cup tea"]
    entities = [
        (("cup", 4, 7), ("tea", 11, 14)),
        (("cup", 11, 14), ("tea", 0, 3)),
        (("cup", 3, 6), ("tea", 7, 10)),
    ]
    corpus = Corpus(texts, entities=entities)
    assert match_rule(KeywordRule("of", 2, scope="between"), corpus).tolist() == [0, 1]
    assert match_rule(KeywordRule("of", 2), corpus).tolist() == [0, 1, 2]
    assert match_rule(RegexRule(r"^\s*of\s*$", 2, scope="between"), corpus).tolist() == [0]
    with pytest.raises(RuleError, match="need entity spans"):
        match_rule(KeywordRule("of", 2, scope="between"), Corpus(texts))


# ----------------------------------------------------------------------------- prompt/similarity


class FakeAnswerIndex:
    """word -> examples, per template, like the real AnswerIndex."""

    def __init__(self, answers):
        self.answers = answers  # {template_id: [set of words per example]}

    def lookup(self, template_id, words):
        per_example = self.answers[template_id]
        return np.array(
            [i for i, got in enumerate(per_example) if got & set(words)], dtype=np.int64
        )


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_prompt_rule_matches_from_the_answer_index_without_inference():
    index = FakeAnswerIndex({"t": [{"money", "free"}, {"music"}, {"free"}, set()]})
    corpus = Corpus(["a", "b", "c", "d"], answer_index=index)
    assert match_rule(PromptRule("t", ("free",), 1), corpus).tolist() == [0, 2]
    assert match_rule(PromptRule("t", ("music", "money"), 1), corpus).tolist() == [0, 1]


def test_prompt_rule_similarity_term_adds_to_the_word_hit():
    index = FakeAnswerIndex({"t": [{"free"}, set(), {"free"}, set()]})
    emb = _unit([[1, 0], [1, 0.1], [0, 1], [0.9, 0.5]])
    dev = _unit([[1, 0]])
    corpus = Corpus(["a", "b", "c", "d"], embeddings=emb, answer_index=index, anchor_embeddings=dev)
    # score = hit + 0.5 cos; threshold 1.2 needs a hit and cos >= 0.4
    rule = PromptRule("t", ("free",), 1, anchor_index=0, similarity_weight=0.5, threshold=1.2)
    assert match_rule(rule, corpus).tolist() == [0]
    # threshold 0.45 is reached by any hit, or by similarity alone when cos >= 0.9
    # (example 1: cos 0.995; example 3: cos 0.874 falls short)
    rule = PromptRule("t", ("free",), 1, anchor_index=0, similarity_weight=0.5, threshold=0.45)
    assert match_rule(rule, corpus).tolist() == [0, 1, 2]


def test_prompt_rule_without_answer_index_is_a_clear_error():
    with pytest.raises(RuleError, match="answer index"):
        match_rule(PromptRule("t", ("free",), 1), Corpus(["a"]))


def test_similarity_rule_uses_anchor_embeddings():
    emb = _unit([[1, 0], [0.8, 0.6], [0, 1]])
    corpus = Corpus(["a", "b", "c"], embeddings=emb)
    assert match_rule(SimilarityRule(0, 0.8, 1), corpus).tolist() == [0, 1]
    pool = Corpus(["a", "b", "c"], embeddings=emb, anchor_embeddings=_unit([[0, 1], [1, 0]]))
    assert match_rule(SimilarityRule(0, 0.9, 1), pool).tolist() == [2]
    with pytest.raises(RuleError, match="out of range"):
        match_rule(SimilarityRule(5, 0.9, 1), pool)
    with pytest.raises(RuleError, match="need embeddings"):
        match_rule(SimilarityRule(0, 0.9, 1), Corpus(["a"]))


# ----------------------------------------------------------------------------- label matrix


def test_apply_rules_builds_the_label_matrix():
    texts = ["free money", "hello", "call 0800 now", "free call 12"]
    rules = [KeywordRule("free", 1), KeywordRule("hello", 0), RegexRule(r"call \d+", 1)]
    L = apply_rules(rules, Corpus(texts))
    assert L.to_dense().tolist() == [[1, -1, -1], [-1, 0, -1], [-1, -1, 1], [1, -1, 1]]
    assert L.covered().tolist() == [True, True, True, True]
    assert L.column(1).tolist() == [-1, 0, -1, -1]
    assert L.votes_per_row().tolist() == [1, 1, 1, 2]
    assert L.class_counts(2).tolist() == [[0, 1], [1, 0], [0, 1], [0, 2]]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 12).flatmap(
        lambda n: st.lists(
            st.lists(st.integers(-1, 3), min_size=n, max_size=n), min_size=0, max_size=8
        ).map(lambda cols: np.array(cols, dtype=np.int64).reshape(len(cols), n).T)
    )
)
def test_label_matrix_dense_round_trip_and_slicing(votes):
    L = LabelMatrix.from_dense(votes)
    assert L.shape == votes.shape
    np.testing.assert_array_equal(L.to_dense(), votes)
    np.testing.assert_array_equal(L.covered(), (votes >= 0).any(axis=1))
    n, m = votes.shape
    rows = np.arange(n)[::-1]
    np.testing.assert_array_equal(L.rows(rows).to_dense(), votes[rows])
    np.testing.assert_array_equal(L.hstack(L).to_dense(), np.hstack([votes, votes]))
    if m:
        np.testing.assert_array_equal(L.columns([m - 1]).to_dense(), votes[:, [m - 1]])
        np.testing.assert_array_equal(L.column(0), votes[:, 0])
        assert L.matches(0).tolist() == np.flatnonzero(votes[:, 0] >= 0).tolist()


def test_label_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        LabelMatrix.from_dense(np.zeros(3))
    with pytest.raises(ValueError, match="-1 for abstain"):
        LabelMatrix.from_dense(np.array([[-2]]))
    with pytest.raises(ValueError, match="must lie in"):
        LabelMatrix.from_matches(3, [np.array([5])], [0])
    with pytest.raises(ValueError, match="cannot stack"):
        LabelMatrix.empty(2).hstack(LabelMatrix.empty(3))


def test_parallel_matching_equals_serial(monkeypatch):
    from models.prboost import matching

    monkeypatch.setattr(matching, "PARALLEL_MIN_TEXTS", 10)
    texts = [f"doc {i} " + ("free call 0800" if i % 7 == 0 else "nothing é") for i in range(301)]
    rules = [KeywordRule("free", 1), RegexRule(r"\d{4}", 1), KeywordRule("é", 0)]
    serial = apply_rules(rules, Corpus(texts))
    parallel = apply_rules(rules, Corpus(texts), n_jobs=3)
    np.testing.assert_array_equal(parallel.to_dense(), serial.to_dense())
    assert serial.matches(0).tolist() == list(range(0, 301, 7))


def test_corpus_rejects_non_string_texts_and_mismatched_embeddings():
    with pytest.raises(ValueError, match="text 1 is None"):
        Corpus(["a", None])
    with pytest.raises(ValueError, match="embeddings has 1 rows for 2 texts"):
        Corpus(["a", "b"], embeddings=np.zeros((1, 3)))
    assert Corpus(("a", "b")).texts == ["a", "b"]


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=40))
def test_sorted_unique_equals_numpy_unique_on_any_ids(ids):
    from models.prboost.matching import _sorted_unique

    array = np.asarray(ids, dtype=np.int64)
    np.testing.assert_array_equal(_sorted_unique(array), np.unique(array))
