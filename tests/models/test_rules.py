"""Rules: validation with clear messages, plain-words descriptions, and dict round trips."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.prboost.rules import (
    KeywordRule,
    PromptRule,
    RegexRule,
    RuleError,
    SimilarityRule,
    normalize_text,
    rule_from_dict,
    validate_regex,
)

LABELS = ["HAM", "SPAM"]


def test_keyword_rule_cleans_and_dedupes_words():
    rule = KeywordRule(("  free   entry ", "win", "win"), 1)
    assert rule.words == ("free entry", "win")
    assert KeywordRule("free", 1).words == ("free",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"words": (), "label": 1}, "at least one word"),
        ({"words": ("",), "label": 1}, "empty word"),
        ({"words": ("a",), "label": -1}, "label must be a class index >= 0"),
        ({"words": ("a",), "label": 1.5}, "label must be a class index"),
        ({"words": ("a",), "label": 1, "mode": "some"}, "mode must be 'any' or 'all'"),
        ({"words": ("a",), "label": 1, "scope": "title"}, "scope must be one of"),
        ({"words": (3,), "label": 1}, "must be strings"),
        ({"words": ("a" * 500,), "label": 1}, "the limit is"),
    ],
)
def test_keyword_rule_rejects_bad_input(kwargs, message):
    with pytest.raises(RuleError, match=message):
        KeywordRule(**kwargs)


def test_invalid_regex_raises_rule_error_with_reason():
    with pytest.raises(RuleError, match=r"invalid: missing \]"):
        RegexRule("[abc", 0)
    with pytest.raises(RuleError, match="backreferences"):
        RegexRule(r"(\w)\1", 0)
    with pytest.raises(RuleError, match="lookahead"):
        validate_regex("free(?=dom)")
    with pytest.raises(RuleError, match="too large"):
        validate_regex("a{5000}")
    with pytest.raises(RuleError, match="empty"):
        validate_regex("")
    with pytest.raises(RuleError, match="flags must be letters"):
        RegexRule("a", 0, flags="x")


def test_catastrophic_regex_is_accepted_and_runs_in_linear_time():
    rule = RegexRule(r"(a+)+$", 1)
    text = "a" * 100_000 + "b"
    start = time.perf_counter()
    assert rule.compile().search(text) is None
    assert time.perf_counter() - start < 1.0


def test_regex_flags_are_inlined_sorted():
    rule = RegexRule("free", 1, flags="si")
    assert rule.flags == "is"
    assert rule.inline_pattern == "(?is)free"
    assert rule.compile().search("FREE") is not None
    assert RegexRule("free", 1, flags="").compile().search("FREE") is None


def test_prompt_rule_validation():
    with pytest.raises(RuleError, match="needs an anchor_index"):
        PromptRule("t1", ("money",), 1, similarity_weight=0.5)
    with pytest.raises(RuleError, match="can never be reached"):
        PromptRule("t1", ("money",), 1, threshold=1.5)
    with pytest.raises(RuleError, match="threshold must be > 0"):
        PromptRule("t1", ("money",), 1, threshold=0.0)
    with pytest.raises(RuleError, match="template id"):
        PromptRule("", ("money",), 1)
    rule = PromptRule("t1", ("money", "money ", "free"), 1, anchor_index=3, similarity_weight=0.5)
    assert rule.answer_words == ("money", "free")


def test_similarity_rule_validation():
    with pytest.raises(RuleError, match=r"lies in \[-1, 1\]"):
        SimilarityRule(0, 1.5, 1)
    with pytest.raises(RuleError, match="anchor_index must be >= 0"):
        SimilarityRule(-1, 0.5, 1)


def test_descriptions_are_plain_words():
    assert KeywordRule(("free", "win"), 1).describe(LABELS) == (
        'SPAM when the text contains "free" or "win" (whole words, any case)'
    )
    assert "contains all of" in KeywordRule(("free", "win"), 1, mode="all").describe(LABELS)
    assert "between the two entities" in KeywordRule("of", 0, scope="between").describe()
    assert RegexRule(r"\d+", 0).describe(LABELS) == (
        r"HAM when the text matches the pattern /\d+/ (ignoring case)"
    )
    templates = {"t1": "This comment is about"}
    text = PromptRule("t1", ("money",), 1).describe(LABELS, templates)
    assert text == 'SPAM when the language model, asked "This comment is about", answers "money"'
    assert "example #4" in SimilarityRule(4, 0.8, 0).describe(LABELS)
    assert KeywordRule("x", 7).describe(LABELS).startswith("class 7 when")


def test_rule_from_dict_reports_bad_fields():
    with pytest.raises(RuleError, match="kind must be one of"):
        rule_from_dict({"kind": "magic"})
    with pytest.raises(RuleError, match="needs the field"):
        rule_from_dict({"kind": "keyword", "label": 1})
    with pytest.raises(RuleError, match="has no field"):
        rule_from_dict({"kind": "regex", "pattern": "a", "label": 1, "colour": "red"})
    with pytest.raises(RuleError, match="must be given as a dict"):
        rule_from_dict(["keyword"])


def test_rules_are_hashable_and_compare_by_value():
    a = KeywordRule(("free",), 1)
    assert a == rule_from_dict(a.to_dict())
    assert len({a, KeywordRule("free", 1), KeywordRule("free", 0)}) == 2


def test_normalize_text_folds_unicode_and_whitespace():
    assert normalize_text("STRAẞE\tund  Straße") == "strasse und strasse"
    assert normalize_text("ｆｒｅｅ ﬁle") == "free file"
    assert normalize_text("cafe\u0301") == normalize_text("café") == "café"
    assert normalize_text("Free", case_sensitive=True) == "Free"


words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=8,
)
keyword_rules = st.builds(
    KeywordRule,
    words=st.lists(words, min_size=1, max_size=4).map(tuple),
    label=st.integers(0, 9),
    mode=st.sampled_from(["any", "all"]),
    case_sensitive=st.booleans(),
    scope=st.sampled_from(["text", "between"]),
)
regex_rules = st.builds(
    RegexRule,
    pattern=st.sampled_from([r"free", r"\d{3,}", r"(a+)+$", r"^win\b", r"[A-Z]{2,}"]),
    label=st.integers(0, 9),
    flags=st.sampled_from(["", "i", "is", "im"]),
    scope=st.sampled_from(["text", "between"]),
)
prompt_rules = st.builds(
    PromptRule,
    template_id=st.sampled_from(["tc-about", "re-relation"]),
    answer_words=st.lists(st.sampled_from(["money", "free", "music"]), min_size=1).map(tuple),
    label=st.integers(0, 9),
    anchor_index=st.integers(0, 100),
    similarity_weight=st.sampled_from([0.0, 0.25, 1.0]),
    threshold=st.floats(0.05, 1.0),
)
similarity_rules = st.builds(
    SimilarityRule,
    anchor_index=st.integers(0, 1000),
    threshold=st.floats(-1, 1),
    label=st.integers(0, 9),
)


def _keep_valid(strategy):
    def build(draw):
        try:
            return draw(strategy)
        except RuleError:
            return None

    return st.composite(lambda draw: build(draw))().filter(lambda r: r is not None)


@settings(max_examples=200, deadline=None)
@given(_keep_valid(st.one_of(keyword_rules, regex_rules, prompt_rules, similarity_rules)))
def test_to_dict_from_dict_round_trip(rule):
    again = rule_from_dict(rule.to_dict())
    assert again == rule
    assert again.to_dict() == rule.to_dict()


def test_a_huge_keyword_list_is_refused_before_any_work():
    import time

    started = time.perf_counter()
    with pytest.raises(RuleError, match="at most 100 words, got 50000"):
        KeywordRule(words=tuple(f"w{i}" for i in range(50_000)), label=0)
    assert time.perf_counter() - started < 0.5
    rule = KeywordRule(words=("a", "b") * 400, label=0)  # duplicates: a set, not a list scan
    assert rule.words == ("a", "b")
