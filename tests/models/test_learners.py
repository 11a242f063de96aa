"""Weak learners: soft labels, sample weights, entity-aware features, persistence, fine-tuning."""

import numpy as np
import pytest

from models.prboost.learners import (
    EmbeddingClassifier,
    FineTunedEncoder,
    as_soft_labels,
    between_text,
    mark_entities,
    relation_features,
)


def _blobs(n=60, k=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_classifier_learns_separable_classes(head):
    X, y = _blobs()
    clf = EmbeddingClassifier(n_classes=3, head=head, C=10.0).fit(X, y)
    p = clf.predict_proba(X)
    assert p.shape == (60, 3)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (p.argmax(1) == y).mean() > 0.95


def test_soft_labels_equal_duplicated_hard_labels():
    # one row with target (0.75, 0.25) is the same loss as two hard rows weighted 0.75 and 0.25;
    # weights are normalized to mean 1 per row, so the duplicated fit counts each example twice:
    # it matches the soft fit with C doubled
    X, y = _blobs(n=40, k=2)
    soft = np.zeros((40, 2))
    soft[np.arange(40), y] = 0.75
    soft[np.arange(40), 1 - y] = 0.25
    a = EmbeddingClassifier(n_classes=2, C=2.0).fit(X, soft).predict_proba(X)
    Xd = np.concatenate([X, X])
    yd = np.concatenate([y, 1 - y])
    wd = np.concatenate([np.full(40, 0.75), np.full(40, 0.25)])
    b = EmbeddingClassifier(n_classes=2, C=1.0).fit(Xd, yd, sample_weight=wd).predict_proba(X)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_zero_weight_examples_do_not_matter():
    X, y = _blobs(n=50, k=2, seed=1)
    w = np.ones(50)
    w[:10] = 0.0
    a = EmbeddingClassifier(n_classes=2).fit(X, y, sample_weight=w).predict_proba(X)
    b = EmbeddingClassifier(n_classes=2).fit(X[10:], y[10:]).predict_proba(X)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_missing_classes_get_near_zero_probability():
    X, y = _blobs(n=30, k=2)
    clf = EmbeddingClassifier(n_classes=4).fit(X, y)
    p = clf.predict_proba(X)
    assert p.shape == (30, 4) and p[:, 2:].max() < 1e-6
    single = EmbeddingClassifier(n_classes=3).fit(X, np.full(30, 2))
    assert np.all(single.predict(X) == 2)


def test_state_round_trip_gives_identical_predictions():
    X, y = _blobs()
    for head in ("logreg", "mlp"):
        clf = EmbeddingClassifier(n_classes=3, head=head, epochs=20).fit(X, y)
        again = EmbeddingClassifier.from_state(clf.state())
        assert again.head == head
        np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))


def test_bad_labels_and_weights_are_rejected():
    X, y = _blobs(n=10, k=2)
    clf = EmbeddingClassifier(n_classes=2)
    with pytest.raises(ValueError, match="0..1"):
        clf.fit(X, np.full(10, 5))
    with pytest.raises(ValueError, match="shape"):
        clf.fit(X, np.ones((10, 3)) / 3)
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="not fitted"):
        clf.predict_proba(X)
    with pytest.raises(ValueError, match="positive sum"):
        as_soft_labels(np.zeros((2, 2)), 2)


def test_entity_markers_and_between_span():
    text = "The cast of adorable ferrets ."
    head, tail = ("ferrets", 21, 28), ("cast", 4, 8)
    assert mark_entities(text, head, tail) == "The [E2] cast [/E2] of adorable [E1] ferrets [/E1] ."
    assert between_text(text, head, tail) == "of adorable"
    assert between_text("a b", ("a", 0, 1), ("b", 1, 1)) == "[none]"
    # overlapping spans fall back to appended mentions instead of garbling the text
    assert mark_entities("ab", ("ab", 0, 2), ("b", 1, 2)).endswith("[E2] b [/E2]")


def test_relation_features_concatenate_four_views():
    seen = []

    def embed(texts):
        seen.append(list(texts))
        return np.full((len(texts), 3), float(len(seen)), dtype=np.float32)

    texts = ["smoke from the fire", "a cup of tea"]
    ents = [(("smoke", 0, 5), ("fire", 15, 19)), (("cup", 2, 5), ("tea", 9, 12))]
    F = relation_features(texts, ents, embed=embed)
    assert F.shape == (2, 12)
    np.testing.assert_array_equal(F[0], [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    assert seen[1] == ["smoke", "cup"] and seen[2] == ["fire", "tea"]
    assert seen[3] == ["from the", "of"]


def _tiny_encoder(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "film", "the"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    cfg = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


def test_fine_tuned_encoder_learns_and_round_trips_on_cpu(tmp_path):
    import torch

    torch.set_num_threads(1)
    name = _tiny_encoder(tmp_path)
    texts = ["good movie", "good film", "the good film", "bad movie", "bad film", "the bad movie"]
    y = np.array([1, 1, 1, 0, 0, 0])
    ft = FineTunedEncoder(n_classes=2, model_name=name, epochs=30, batch_size=6, lr=1e-2)
    ft.fit(texts, y)
    p = ft.predict_proba(texts)
    assert p.shape == (6, 2)
    assert (p.argmax(1) == y).all()
    again = FineTunedEncoder(n_classes=2, model_name=name).load_state_bytes(ft.state_bytes())
    np.testing.assert_allclose(again.predict_proba(texts), p, atol=1e-5)
