"""Answer vocabulary, answer index (lookup, persistence) and the cached LM pass (masked-LM path)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.lm import MaskedLM, load_masked_lm
from models.prboost.answers import (
    STOP_WORDS,
    AnswerIndex,
    AnswerIndexSet,
    AnswerVocab,
    answer_vocab_for,
    compute_answer_index,
)
from models.prboost.templates import Template, TemplateError
from tests.models.lm_fixtures import make_tiny_masked_lm


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> MaskedLM:
    return load_masked_lm(str(make_tiny_masked_lm(tmp_path_factory.mktemp("mlm"))), device="cpu")


# --------------------------------------------------------------------------- vocabulary
def test_bpe_vocab_keeps_whole_content_words_only():
    filler = [f"Ġfiller{i}x" for i in range(120)]  # enough "Ġ" tokens to detect byte-level BPE
    tokens = [
        "Ġmoney",
        "ĠMoney",
        "money",  # no space marker: a piece inside a word
        "Ġthe",  # stop word
        "Ġab",  # too short
        "Ġ123",
        "Ġ!!",
        "Ġwor",  # a word start that is no word
        "Ġspam",
        "Ġcafé",  # not ASCII letters
        *filler,
    ]
    vocab = AnswerVocab.from_tokens(tokens)
    assert vocab.words == ["money", "spam"]
    assert list(vocab.token_ids) == [0, 1, 8]  # " money" and " Money" share a word
    assert list(vocab.token_word) == [0, 0, 1]
    assert vocab.word_id("Money") == 0 and vocab.word_id("the") == -1


def test_wordpiece_vocab_drops_pieces_specials_and_stop_words():
    tokens = ["[PAD]", "[MASK]", "money", "##ing", "the", "42", "song", "##s", "."]
    vocab = AnswerVocab.from_tokens(tokens)
    assert vocab.words == ["money", "song"]


def test_vocab_without_dictionary_keeps_unknown_words():
    tokens = ["zorblax", "money", "##x"]
    assert AnswerVocab.from_tokens(tokens).words == ["money"]
    assert AnswerVocab.from_tokens(tokens, use_dictionary=False).words == ["zorblax", "money"]


# --------------------------------------------------------------------------- index
def _random_answers(draw_rows, n_words, k):
    ids = np.full((len(draw_rows), k), -1, dtype=np.int32)
    for i, row in enumerate(draw_rows):
        ids[i, : len(row)] = row
    return ids


@st.composite
def answer_tables(draw):
    n_words = draw(st.integers(1, 12))
    k = draw(st.integers(1, 5))
    n = draw(st.integers(0, 30))
    rows = [
        draw(st.lists(st.integers(0, n_words - 1), max_size=min(k, n_words), unique=True))
        for _ in range(n)
    ]
    query = draw(st.lists(st.integers(0, n_words + 2), max_size=4))
    kk = draw(st.one_of(st.none(), st.integers(1, k)))
    return n_words, k, rows, query, kk


@settings(max_examples=150, deadline=None)
@given(answer_tables())
def test_lookup_equals_brute_force(table):
    n_words, k, rows, query, kk = table
    words = [f"w{i}" for i in range(n_words)]
    index = AnswerIndex(words, len(rows), k)
    index.add("t", _random_answers(rows, n_words, k))
    qwords = [f"W{q}" for q in query]  # case-insensitive; ids >= n_words are unknown words
    limit = k if kk is None else kk
    expected = [
        i for i, row in enumerate(rows) if any(f"w{q}" in words and q in row[:limit] for q in query)
    ]
    got = index.lookup("t", qwords, k=kk)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    for i, row in enumerate(rows):
        assert index.topk("t", i) == [words[j] for j in row]


def test_rank_limited_lookup_over_a_large_index_without_hits():
    ids = np.full((100, 3), -1, dtype=np.int32)
    ids[0], ids[1] = [0, 1, 2], [2, 1, 0]
    index = AnswerIndex(["a", "b", "c"], 100, 3)
    index.add("t", ids)
    assert index.lookup("t", ["b", "c"], k=1).tolist() == [1]
    assert index.lookup("t", ["a", "c"], k=1).tolist() == [0, 1]
    assert index.lookup("t", ["b"], k=1).tolist() == []
    assert index.lookup("t", ["b", "b"], k=1).tolist() == []


def test_dense_union_path_matches_sorted_union():
    rng = np.random.default_rng(0)
    n, k, w = 2000, 4, 6
    ids = np.stack([rng.permutation(w)[:k] for _ in range(n)]).astype(np.int32)
    index = AnswerIndex([f"w{i}" for i in range(w)], n, k)
    index.add("t", ids)
    got = index.lookup("t", ["w0", "w1", "w2"])  # most rows: the mask path
    expected = np.flatnonzero(np.isin(ids, [0, 1, 2]).any(axis=1))
    assert np.array_equal(got, expected)


def test_index_save_load_round_trip(tmp_path):
    tpl = Template("tc-x", "{text}\nThis is about")
    index = AnswerIndex(["money", "song", "love"], 3, 2, model_id="m", templates=[tpl])
    index.add(tpl, np.array([[0, 1], [2, -1], [1, 0]]), np.full((3, 2), 0.5, np.float32))
    path = tmp_path / "sub" / "answers.npz"
    index.save(path)
    back = AnswerIndex.load(path)
    assert back.template_ids == ["tc-x"] and back.templates["tc-x"] == tpl
    assert back.model_id == "m" and back.n == 3 and back.k == 2
    assert back.lookup("tc-x", ["money"]).tolist() == [0, 2]
    assert back.topk("tc-x", 1) == ["love"]
    assert np.array_equal(back.topk_probs("tc-x"), index.topk_probs("tc-x"))


def test_index_round_trips_through_a_shared_cache_store():
    """A whole index as named arrays in an ArrayCache (e.g. object storage several hosts share):
    what a worker on another host reads back answers like the original."""
    from models.cache import ArrayCache
    from tests.models.test_lm import DictStore

    tpl = Template("tc-x", "{text}\nThis is about")
    index = AnswerIndex(["money", "song", "love"], 3, 2, model_id="m", templates=[tpl])
    index.add(tpl, np.array([[0, 1], [2, -1], [1, 0]]), np.full((3, 2), 0.5, np.float32))
    store = DictStore()
    ArrayCache(store, "project-answer-index").put_many("ab" * 20, index.to_arrays())
    arrays = ArrayCache(store, "project-answer-index").get_many("ab" * 20)
    back = AnswerIndex.from_arrays(arrays)
    assert back.template_ids == ["tc-x"] and back.model_id == "m"
    assert back.lookup("tc-x", ["money"]).tolist() == [0, 2]
    assert np.array_equal(back.topk_ids("tc-x"), index.topk_ids("tc-x"))
    with pytest.raises(ValueError, match="unknown answer index format"):
        AnswerIndex.from_arrays({**arrays, "meta": np.array('{"format": 2}')})


def test_unknown_template_is_a_clear_error():
    index = AnswerIndex(["a"], 1, 1)
    with pytest.raises(KeyError, match="no LM answers for template 'nope'"):
        index.lookup("nope", ["a"])


def test_bad_answer_table_is_rejected():
    index = AnswerIndex(["a", "b"], 2, 2)
    with pytest.raises(ValueError, match="word ids outside"):
        index.add("t", np.array([[0, 5], [1, -1]]))
    with pytest.raises(ValueError, match="expected"):
        index.add("t", np.array([[0, 1]]))


def test_index_set_routes_each_template_to_its_index():
    a = AnswerIndex(["money"], 2, 1)
    a.add("causal", np.array([[0], [-1]]))
    b = AnswerIndex(["love", "song"], 2, 1)
    b.add("masked", np.array([[-1], [1]]))
    both = AnswerIndexSet(a, b)
    assert both.lookup("causal", ["money"]).tolist() == [0]
    assert both.lookup("masked", ["song"]).tolist() == [1]
    assert set(both.template_ids) == {"causal", "masked"}
    with pytest.raises(ValueError, match="different numbers"):
        AnswerIndexSet(a, AnswerIndex(["x"], 3, 1))


# --------------------------------------------------------------------------- the LM pass
MASK_TPL = Template("tc-mask", "{text} This text is about {mask}.", style="mask")


def test_masked_lm_pass_gives_vocabulary_words(tiny_mlm, tmp_path):
    texts = ["free money , click the prize", "I love this song", "a video of music"]
    index = compute_answer_index(tiny_mlm, texts, [MASK_TPL], k=5, cache_dir=tmp_path)
    vocab = answer_vocab_for(tiny_mlm)
    assert index.n == 3 and index.k == 5
    ids = index.topk_ids("tc-mask")
    assert ids.shape == (3, 5) and (ids >= 0).all()
    for i in range(3):
        words = index.topk("tc-mask", i)
        assert len(set(words)) == 5
        assert all(w in vocab.words and w not in STOP_WORDS and w.isalpha() for w in words)
    probs = index.topk_probs("tc-mask")
    assert (np.diff(probs, axis=1) <= 1e-6).all()  # best first


def test_second_pass_reads_the_cache_without_the_model(tiny_mlm, tmp_path, monkeypatch):
    texts = [f"message {i} about money" for i in range(5)]
    first = compute_answer_index(tiny_mlm, texts, [MASK_TPL], k=3, cache_dir=tmp_path)

    def boom(*a, **k):
        raise AssertionError("the model ran although the answers are cached")

    monkeypatch.setattr(MaskedLM, "mask_topk", boom)
    monkeypatch.setattr(MaskedLM, "next_token_topk", boom)
    second = compute_answer_index(tiny_mlm, texts, [MASK_TPL], k=3, cache_dir=tmp_path)
    assert np.array_equal(first.topk_ids("tc-mask"), second.topk_ids("tc-mask"))


def test_lm_pass_resumes_per_chunk(tiny_mlm, tmp_path, monkeypatch):
    from models.prboost import answers

    monkeypatch.setattr(answers, "ANSWER_CHUNK", 2)
    texts = [f"song {i}" for i in range(5)]
    compute_answer_index(tiny_mlm, texts[:4], [MASK_TPL], k=3, cache_dir=tmp_path)
    seen = []
    real = MaskedLM.next_token_topk

    def counting(self, prompts, *a, **k):
        seen.append(len(prompts))
        return real(self, prompts, *a, **k)

    monkeypatch.setattr(MaskedLM, "next_token_topk", counting)
    compute_answer_index(tiny_mlm, texts, [MASK_TPL], k=3, cache_dir=tmp_path)
    assert seen == [1]  # the two finished chunks were read back


def test_masked_lm_needs_a_mask_template(tiny_mlm):
    plain = Template("tc-plain", "{text}\nThis is about")
    with pytest.raises(TemplateError, match="needs a masked LM|mask-style"):
        compute_answer_index(tiny_mlm, ["x"], [plain], use_cache=False)


def test_truncated_mask_slot_gives_no_answers(tiny_mlm):
    tiny_mlm.max_length = 16
    try:
        tpl = Template("tc-late-mask", "{text} it is {mask}", style="mask")
        index = compute_answer_index(tiny_mlm, ["song " * 40, "love"], [tpl], k=3, use_cache=False)
    finally:
        tiny_mlm.max_length = 512
    assert index.topk("tc-late-mask", 0) == []
    assert len(index.topk("tc-late-mask", 1)) == 3


def test_relation_template_pass_fills_entities(tiny_mlm):
    tpl = Template(
        "re-mask", '{text} "{e1}" is the {mask} of "{e2}".', "relation_extraction", "mask"
    )
    texts = ["the song caused the love", "money in the container"]
    ents = [(("song", 4, 8), ("love", 20, 24)), (("money", 0, 5), ("container", 13, 22))]
    index = compute_answer_index(tiny_mlm, texts, [tpl], k=2, entities=ents, use_cache=False)
    assert index.topk_ids("re-mask").shape == (2, 2)
    with pytest.raises(TemplateError, match="entities"):
        compute_answer_index(tiny_mlm, texts, [tpl], k=2, use_cache=False)


# --------------------------------------------------------------------------- causal LM path


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    from models.lm import load_causal_lm
    from tests.models.lm_fixtures import make_tiny_causal_lm

    folder = make_tiny_causal_lm(tmp_path_factory.mktemp("causal"))
    return load_causal_lm(str(folder), device="cpu", dtype="float32")


TEXTS = [
    "free money , click the prize winner",
    "I love this song",
    "a video of music about people and the company",
    "effect",
    "",
]


def test_bpe_answer_vocab_of_a_real_tokenizer_has_whole_words(tiny_causal):
    vocab = answer_vocab_for(tiny_causal)
    tokens = tiny_causal.vocab_tokens()
    assert "company" in vocab.words and "the" not in vocab.words
    assert all(tokens[t].startswith("Ġ") for t in vocab.token_ids)


def test_left_padding_does_not_change_the_answers(tiny_causal):
    vocab = answer_vocab_for(tiny_causal)
    prompts = [t + "\nThis text is about" for t in TEXTS]
    one, p1 = tiny_causal.next_token_topk(prompts, 4, vocab, batch_size=1)
    many, p8 = tiny_causal.next_token_topk(prompts, 4, vocab, batch_size=8)
    assert np.array_equal(one, many)
    assert np.allclose(p1, p8, atol=1e-5)


def test_templates_starting_with_the_text_share_one_prefix_pass(tiny_causal, monkeypatch):
    from models.lm import CausalLM

    a = Template("tc-a", "{text}\nThis text is about")
    b = Template("tc-b", "{text}\nThe answer to this is a")
    alone = {
        t.id: compute_answer_index(tiny_causal, TEXTS, [t], k=4, use_cache=False).topk_ids(t.id)
        for t in (a, b)
    }
    calls = []
    real = CausalLM.next_token_topk_suffixes

    def spy(self, prefixes, suffixes, *args, **kw):
        calls.append((list(prefixes), list(suffixes)))
        return real(self, prefixes, suffixes, *args, **kw)

    monkeypatch.setattr(CausalLM, "next_token_topk_suffixes", spy)
    both = compute_answer_index(tiny_causal, TEXTS, [a, b], k=4, use_cache=False)
    assert len(calls) == 1 and calls[0][1] == ["\nThis text is about", "\nThe answer to this is a"]
    assert calls[0][0][1] == "I love this song"
    for t in (a, b):
        assert np.array_equal(both.topk_ids(t.id), alone[t.id])


def test_chat_templates_wrap_the_question_in_the_chat_markup(tiny_causal):
    from models.prboost.templates import build_prompts

    chat = Template("tc-chat", 'Text: "{text}"\nWhat is it about? One word.', style="chat")
    (prompt,) = build_prompts(tiny_causal, chat, ["I love this song"])
    assert prompt.startswith('<|im_start|>user\nText: "I love this song"')
    assert prompt.endswith("<|im_start|>assistant\n")
    index = compute_answer_index(tiny_causal, TEXTS, [chat], k=3, use_cache=False)
    assert index.topk_ids("tc-chat").shape == (5, 3)
