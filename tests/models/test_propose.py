"""Templates, candidate ranking and the three proposers (prompt, masked LM, n-grams)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.data import TextDataset
from models.prboost.answers import STOP_WORDS, AnswerIndex, answer_vocab_for
from models.prboost.matching import Corpus
from models.prboost.propose import (
    CombinedProposer,
    MaskedLMProposer,
    NgramProposer,
    PromptProposer,
    ScoringConfig,
    rank_candidates,
    rule_key,
)
from models.prboost.rules import KeywordRule, PromptRule, RegexRule
from models.prboost.templates import (
    CANDIDATE_TEMPLATES,
    DEFAULT_TEMPLATES,
    Template,
    TemplateError,
)
from tests.models.lm_fixtures import make_tiny_masked_lm

# --------------------------------------------------------------------------- templates


def test_relation_template_names_both_entities():
    tpl = Template(
        "re", 'In "{text}", the relation between "{e1}" and "{e2}" is', "relation_extraction"
    )
    text = "The burst has been caused by water hammer pressure."
    ents = (("burst", 4, 9), ("pressure", 43, 51))
    assert tpl.render(text, ents) == (
        'In "The burst has been caused by water hammer pressure.", the relation between '
        '"burst" and "pressure" is'
    )
    with pytest.raises(TemplateError, match="entities"):
        tpl.render(text)


def test_render_never_rereads_braces_from_the_example():
    tpl = Template("tc", "{text}\nThis text is about")
    assert tpl.render("costs {e1} and {mask} {text}") == (
        "costs {e1} and {mask} {text}\nThis text is about"
    )
    assert tpl.render("x" * 5000).startswith("x" * 1000 + "\n")  # long texts are cut


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "a", "text": "no slot"}, "needs {text} exactly once"),
        ({"id": "a", "text": "{text} {oops}"}, "unknown placeholder"),
        ({"id": "a b", "text": "{text}"}, "template id"),
        ({"id": "a", "text": "{text} {e1}", "task_type": "relation_extraction"}, "both entities"),
        ({"id": "a", "text": "{text} {e1} {e2}"}, "only exist for relation"),
        ({"id": "a", "text": "{text}", "style": "mask"}, "{mask} exactly once"),
        ({"id": "a", "text": "{text} {mask}"}, "mask-style"),
        ({"id": "a", "text": "{text}", "colour": "red"}, "no field"),
        ({"text": "{text}"}, "needs the field"),
    ],
)
def test_bad_templates_are_refused_with_a_reason(fields, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        Template.from_dict(fields)


def test_template_dict_round_trip_and_defaults_are_valid():
    for task, templates in CANDIDATE_TEMPLATES.items():
        for t in templates:
            assert t.task_type == task
            assert Template.from_dict(t.to_dict()) == t
    assert DEFAULT_TEMPLATES["text_classification"]
    assert all(
        "{e1}" in t.text and "{e2}" in t.text for t in DEFAULT_TEMPLATES["relation_extraction"]
    )


# --------------------------------------------------------------------------- rule keys


def test_rule_key_ignores_word_order_and_case():
    a = KeywordRule(("Free", "money"), 1)
    b = KeywordRule(("money", "free"), 1)
    assert rule_key(a) == rule_key(b)
    assert rule_key(a) != rule_key(KeywordRule(("money", "free"), 0))
    assert rule_key(KeywordRule(("Free",), 1, case_sensitive=True)) != rule_key(
        KeywordRule(("free",), 1, case_sensitive=True)
    )
    # the anchor only matters when the similarity term uses it
    assert rule_key(PromptRule("t", ("money",), 1, anchor_index=3)) == rule_key(
        PromptRule("t", ("money",), 1)
    )


# --------------------------------------------------------------------------- ranking

WORDS = ["money", "free", "love", "song", "creating"]
DEV_LABELS = np.array([1, 1, 0, 0, 1, 0])
DEV_ANSWERS = [  # two answers per dev example
    ["money", "creating"],
    ["money", "free"],
    ["love", "creating"],
    ["song", "creating"],
    ["free", "money"],
    ["love", "song"],
]
POOL_ANSWERS = [["money", "creating"]] * 4 + [["love", "creating"]] * 6


def _index(rows, templates=("t",)):
    index = AnswerIndex(WORDS, len(rows), 2)
    ids = np.array([[WORDS.index(w) for w in r] for r in rows], dtype=np.int32)
    for tid in templates:
        index.add(Template(tid, "{text}\nThis text is about"), ids)
    return index


def _setup(templates=("t",)):
    dev = TextDataset(
        texts=[f"dev {i}" for i in range(6)],
        labels=DEV_LABELS.copy(),
        label_names=["HAM", "SPAM"],
        ids=[str(i) for i in range(6)],
    )
    pool = Corpus([f"pool {i}" for i in range(10)], answer_index=_index(POOL_ANSWERS, templates))
    dev_corpus = Corpus(dev.texts, answer_index=_index(DEV_ANSWERS, templates))
    return dev, pool, dev_corpus


def _propose(proposer, instances, accepted=(), judged=frozenset(), k=10, **kw):
    dev, pool, dev_corpus = _setup(kw.pop("templates", ("t",)))
    return proposer.propose(
        instance_indices=np.array(instances),
        dev=dev,
        pool_corpus=pool,
        dev_corpus=dev_corpus,
        accepted=list(accepted),
        judged=set(judged),
        n_classes=2,
        k=k,
        **kw,
    )


def test_candidates_rank_by_expected_gain_with_leave_one_out_precision():
    cands = _propose(PromptProposer(), [0])
    assert [c.answer_word for c in cands] == ["money", "creating"]
    money, creating = cands
    assert money.rule == PromptRule("t", ("money",), 1, anchor_index=0)
    assert money.source_index == 0 and money.rule.label == DEV_LABELS[0]
    # dev matches of "money" besides its source: examples 1 and 4, both SPAM -> Beta(3, 1)
    assert (money.dev_matches, money.dev_correct) == (2, 2)
    assert money.dev_precision == pytest.approx(3 / 4)
    assert money.p_good == pytest.approx(1 - 0.6**3)
    assert money.score == pytest.approx((1 - 0.6**3) * np.log(5))
    assert money.matches.tolist() == [0, 1, 2, 3] and money.coverage == pytest.approx(0.4)
    # "creating" is generic: both of its other dev matches are HAM
    assert (creating.dev_matches, creating.dev_correct) == (2, 0)
    assert creating.p_good == pytest.approx(0.4**3)
    assert set(money.sample_indices) <= set(money.matches.tolist())


def test_proposing_from_cached_answers_runs_no_model(monkeypatch):
    def boom(self):
        raise AssertionError("an LM was loaded although both answer indices are there")

    monkeypatch.setattr(PromptProposer, "_load_lm", boom)
    assert _propose(PromptProposer(), [0, 2])


def test_judged_and_accepted_rules_are_not_proposed_again():
    money = PromptRule("t", ("money",), 1)
    cands = _propose(PromptProposer(), [0], judged={rule_key(money)})
    assert [c.answer_word for c in cands] == ["creating"]
    cands = _propose(PromptProposer(), [0], accepted=[money])
    assert [c.answer_word for c in cands] == ["creating"]
    assert cands[0].novelty == pytest.approx(0.6)  # pool 0..3 already covered by "money"
    assert all(i >= 4 for i in cands[0].sample_indices)  # uncovered matches shown first


def test_duplicate_rules_from_several_instances_are_merged():
    cands = _propose(PromptProposer(), [0, 1, 4])
    keys = [c.key for c in cands]
    assert len(keys) == len(set(keys))
    money = [c for c in cands if c.answer_word == "money"]
    assert len(money) == 1 and money[0].source_index == 0


def test_redundant_rules_under_another_template_are_dropped():
    cands = _propose(PromptProposer(), [0], templates=("t", "u"))
    assert sorted(c.answer_word for c in cands) == ["creating", "money"]


def test_dev_weights_scale_the_evidence_only_when_asked():
    w = np.array([1, 1, 1, 1, 1, 1.0])
    heavy_w = np.array([1, 1, 1, 1, 20, 1.0])
    weighted = PromptProposer(scoring=ScoringConfig(weighted_counts=True))
    even = _propose(weighted, [0], dev_weights=w)[0]
    heavy = _propose(weighted, [0], dev_weights=heavy_w)[0]
    assert heavy.answer_word == "money"
    assert heavy.dev_precision > even.dev_precision
    # the default counts each dev match once (issue 9: weighted counts made estimates noisy)
    plain = _propose(PromptProposer(), [0], dev_weights=heavy_w)[0]
    assert plain.dev_precision == _propose(PromptProposer(), [0], dev_weights=w)[0].dev_precision
    with pytest.raises(ValueError, match="dev_weights"):
        _propose(PromptProposer(), [0], dev_weights=np.ones(3))


def test_k_limits_the_candidates_and_unlabeled_instances_propose_nothing():
    assert len(_propose(PromptProposer(), [0, 2, 3], k=1)) == 1
    dev, pool, dev_corpus = _setup()
    dev.labels[:] = -1
    assert (
        PromptProposer().propose(
            instance_indices=np.array([0, 1]),
            dev=dev,
            pool_corpus=pool,
            dev_corpus=dev_corpus,
            accepted=[],
            judged=set(),
            n_classes=2,
            k=5,
        )
        == []
    )


def test_similarity_term_needs_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        _propose(PromptProposer(similarity_weight=1.0), [0])


def test_similarity_term_anchors_rules_to_their_source():
    dev, pool, dev_corpus = _setup()
    rng = np.random.default_rng(0)
    dev_emb = rng.normal(size=(6, 8))
    dev_emb /= np.linalg.norm(dev_emb, axis=1, keepdims=True)
    pool_emb = np.repeat(dev_emb[:1], 10, axis=0)  # every pool example looks like dev 0
    pool_emb[5:] = -dev_emb[0]  # ... except the second half, its opposite
    pool = Corpus(pool.texts, embeddings=pool_emb, answer_index=pool.answer_index,
                  anchor_embeddings=dev_emb)  # fmt: skip
    dev_corpus = Corpus(dev.texts, embeddings=dev_emb, answer_index=dev_corpus.answer_index)
    proposer = PromptProposer(
        similarity_weight=1.0, min_similarity=0.5, scoring=ScoringConfig(max_jaccard=1.0)
    )
    cands = proposer.propose(
        instance_indices=np.array([0]),
        dev=dev,
        pool_corpus=pool,
        dev_corpus=dev_corpus,
        accepted=[],
        judged=set(),
        n_classes=2,
        k=5,
    )
    creating = next(c for c in cands if c.answer_word == "creating")
    assert creating.rule.anchor_index == 0 and creating.rule.threshold == pytest.approx(1.5)
    assert creating.matches.tolist() == [0, 1, 2, 3, 4]  # word hit and similar to dev 0


def test_rank_candidates_rejects_mismatched_inputs():
    dev, pool, dev_corpus = _setup()
    with pytest.raises(ValueError, match="dev_labels"):
        rank_candidates(
            [PromptRule("t", ("money",), 1)], [0], ["money"],
            pool_corpus=pool, dev_corpus=dev_corpus, dev_labels=np.zeros(3),
        )  # fmt: skip
    with pytest.raises(ValueError, match="covered"):
        rank_candidates(
            [PromptRule("t", ("money",), 1)], [0], ["money"],
            pool_corpus=pool, dev_corpus=dev_corpus, dev_labels=DEV_LABELS,
            covered=np.zeros(3, bool),
        )  # fmt: skip


# --------------------------------------------------------------------------- n-grams


def _spam_data():
    dev = TextDataset(
        texts=[
            "Click here to win a free iPhone now",
            "free money click here",
            "I love this song so much",
            "this song is my favourite song",
        ],
        labels=np.array([1, 1, 0, 0]),
        label_names=["HAM", "SPAM"],
        ids=["a", "b", "c", "d"],
    )
    pool = Corpus(
        [
            "click here for free stuff",
            "win a free phone",
            "great song",
            "love it",
            "click here",
            "the song is great",
        ]
    )
    return dev, pool


def test_ngram_proposer_makes_keyword_rules_from_the_instance():
    dev, pool = _spam_data()
    cands = NgramProposer().propose(
        instance_indices=np.array([0]),
        dev=dev,
        pool_corpus=pool,
        dev_corpus=Corpus(dev.texts),
        accepted=[],
        judged=set(),
        n_classes=2,
        k=5,
    )
    assert cands and all(isinstance(c.rule, KeywordRule) and c.rule.label == 1 for c in cands)
    words = [c.rule.words[0] for c in cands]
    assert words[0] in {"click", "click here"}  # seen again in dev example 1, also SPAM
    assert not any(w in STOP_WORDS for w in words)
    assert all(c.answer_word is None and c.proposer == "ngram" for c in cands)


def test_ngram_proposer_reads_between_the_entities_for_relations():
    text = "The burst has been caused by water hammer pressure."
    dev = TextDataset(
        texts=[text, "The pain was caused by the flu."],
        labels=np.array([0, 0]),
        label_names=["Cause-Effect", "Other"],
        ids=["1", "2"],
        entities=[(("burst", 4, 9), ("pressure", 43, 51)), (("pain", 4, 8), ("flu", 27, 30))],
        task_type="relation_extraction",
    )
    pool_corpus = Corpus(dev.texts, entities=dev.entities)
    keep_all = ScoringConfig(max_jaccard=1.01)  # "caused" and "caused by" match the same here
    cands = NgramProposer(scoring=keep_all).propose(
        instance_indices=np.array([0]),
        dev=dev,
        pool_corpus=pool_corpus,
        dev_corpus=Corpus(dev.texts, entities=dev.entities),
        accepted=[],
        judged=set(),
        n_classes=2,
        k=10,
    )
    phrases = {c.rule.words[0] for c in cands}
    assert "caused by" in phrases
    assert all(c.rule.scope == "between" for c in cands)
    assert "burst" not in phrases  # the entities themselves are not between them


def _propose_text(texts, labels, instances, pool_texts, k=20, proposer=None):
    dev = TextDataset(
        texts=texts,
        labels=np.array(labels),
        label_names=[f"c{i}" for i in range(max(labels) + 1)],
        ids=[str(i) for i in range(len(texts))],
    )
    return (proposer or NgramProposer(scoring=ScoringConfig(max_jaccard=1.01))).propose(
        instance_indices=np.array(instances),
        dev=dev,
        pool_corpus=Corpus(pool_texts),
        dev_corpus=Corpus(dev.texts),
        accepted=[],
        judged=set(),
        n_classes=max(labels) + 1,
        k=k,
    )


def test_ngram_proposer_keeps_the_question_words_that_carry_a_question_class():
    cands = _propose_text(
        ["How many people live in Chicago ?", "How many dogs are there ?", "Who wrote Hamlet ?"],
        [0, 0, 1],
        [0],
        ["How many moons has Mars ?", "How many states are there ?", "Who is the mayor ?"],
    )
    by_phrase = {c.rule.words[0]: c for c in cands if isinstance(c.rule, KeywordRule)}
    assert by_phrase["how many"].rule.label == 0
    assert by_phrase["how many"].dev_correct == 1  # dev example 1 asks "how many" too
    assert "in" not in by_phrase and "live in" not in by_phrase  # stop words still filtered
    assert "many" not in by_phrase


def test_ngram_proposer_generalizes_numbers_into_regex_rules():
    cands = _propose_text(
        ["Call 08000930705 to claim your prize", "Text WIN to 87121 now", "see you at 5 pm"],
        [1, 1, 0],
        [0],
        ["ring 09061701461 today", "msg 81010 for info", "meet at 5", "call 555"],
    )
    regexes = {c.rule.pattern: c for c in cands if isinstance(c.rule, RegexRule)}
    phone = regexes[r"\b\d{5,}\b"]
    assert phone.rule.label == 1
    assert phone.matches.tolist() == [0, 1]  # long numbers only, not "5" or "555"
    assert (phone.dev_matches, phone.dev_correct) == (1, 1)  # "87121" (leave-one-out)


def test_combined_proposer_ranks_every_proposers_candidates_together():
    dev = TextDataset(
        texts=["money offer", "money now", "nice song", "song", "free money", "nice"],
        labels=DEV_LABELS.copy(),
        label_names=["HAM", "SPAM"],
        ids=[str(i) for i in range(6)],
    )
    pool_texts = [f"money offer {i}" if i < 4 else f"a nice song {i}" for i in range(10)]
    kw = {
        "instance_indices": np.array([0]),
        "dev": dev,
        "pool_corpus": Corpus(pool_texts, answer_index=_index(POOL_ANSWERS)),
        "dev_corpus": Corpus(dev.texts, answer_index=_index(DEV_ANSWERS)),
        "accepted": [],
        "judged": set(),
        "n_classes": 2,
        "k": 10,
    }
    keep_all = ScoringConfig(max_jaccard=1.01)  # "money" matches the same rows either way
    both = CombinedProposer([PromptProposer(), NgramProposer()], scoring=keep_all)
    assert both.name == "prompt+ngram"
    cands = both.propose(**kw)
    assert {c.proposer for c in cands} == {"prompt", "ngram"}
    assert all(isinstance(c.rule, PromptRule) == (c.proposer == "prompt") for c in cands)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    alone = PromptProposer(scoring=keep_all).propose(**kw)
    alone += NgramProposer(scoring=keep_all).propose(**kw)
    assert {rule_key(c.rule) for c in cands} <= {rule_key(c.rule) for c in alone}
    with pytest.raises(ValueError, match="at least one"):
        CombinedProposer([])


# --------------------------------------------------------------------------- masked LM


def test_masked_lm_proposer_runs_end_to_end_with_a_tiny_model(tmp_path):
    folder = make_tiny_masked_lm(tmp_path / "mlm")
    dev, pool = _spam_data()
    dev_corpus = Corpus(dev.texts)
    proposer = MaskedLMProposer(str(folder), cache_dir=tmp_path / "cache", answer_k=5)
    cands = proposer.propose(
        instance_indices=np.array([0, 2]),
        dev=dev,
        pool_corpus=pool,
        dev_corpus=dev_corpus,
        accepted=[],
        judged=set(),
        n_classes=2,
        k=6,
    )
    vocab = answer_vocab_for(proposer.lm)
    assert pool.answer_index is not None and dev_corpus.answer_index is not None
    assert cands
    for c in cands:
        assert isinstance(c.rule, PromptRule) and c.rule.template_id == "tc-mask-about"
        assert c.rule.label == dev.labels[c.source_index]
        assert c.answer_word in vocab.words and c.answer_word in c.rule.answer_words
        assert c.proposer == "masked_lm"
    assert len({c.key for c in cands}) == len(cands)


def test_masked_lm_proposer_needs_a_model():
    with pytest.raises(ValueError, match="needs a masked LM"):
        MaskedLMProposer(None)


# --------------------------------------------------------------------------- real SmolLM2


@pytest.mark.slow
def test_prompt_proposer_on_smollm2_proposes_clean_words_with_gold_labels(
    data_dir, tmp_path_factory
):
    from models.data import load_wrench

    cache = tmp_path_factory.mktemp("answers")
    dev_all, _ = load_wrench(data_dir / "wrench-youtube", "valid")
    pool_all, _ = load_wrench(data_dir / "wrench-youtube", "train")
    dev = dev_all.subset(np.arange(24))
    pool = Corpus(pool_all.texts[:30])
    dev_corpus = Corpus(dev.texts)
    proposer = PromptProposer(DEFAULT_TEMPLATES["text_classification"][:1], cache_dir=cache)
    kwargs = {"dev": dev, "pool_corpus": pool, "dev_corpus": dev_corpus, "n_classes": 2, "k": 15}
    kwargs["accepted"] = []
    instances = np.array([0, 2, 4, 5, 8])
    cands = proposer.propose(instance_indices=instances, judged=set(), **kwargs)
    vocab = answer_vocab_for(proposer.lm)
    assert len(cands) >= 5
    keys = [c.key for c in cands]
    assert len(keys) == len(set(keys))
    for c in cands:
        assert c.source_index in instances
        assert c.rule.label == dev.labels[c.source_index]
        word = c.answer_word
        assert word in vocab.words and word not in STOP_WORDS
        assert re.fullmatch(r"[a-z]{3,}", word)  # no pieces, punctuation or digits
        assert word in dev_corpus.answer_index.topk(c.rule.template_id, c.source_index)
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    # judging the first half removes exactly those from the next proposal
    judged = set(keys[: len(keys) // 2])
    again = proposer.propose(instance_indices=instances, judged=judged, **kwargs)
    assert not judged & {c.key for c in again}
