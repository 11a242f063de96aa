"""PTLoss students and the training loop on a tiny BERT built from a config (no download)."""

import numpy as np
import pytest
import torch

from models.ptloss.distill import TrainConfig, batch_order, predict_proba, train
from models.ptloss.students import (
    build_classifier,
    encode,
    load_student,
    save_student,
    spread_layers,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.lm import default_encoder

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_encoder())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_spread_layers_keep_the_last_block():
    assert spread_layers(6, 3) == [1, 3, 5]
    assert spread_layers(6, 2) == [2, 5]
    assert spread_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spread_layers(4, 5)


def test_students_copy_the_teachers_blocks(tiny):
    teacher, _ = build_classifier(tiny, n_classes=3)
    first, _ = build_classifier(tiny, n_classes=3, n_layers=2)
    spread, _ = build_classifier(tiny, n_classes=3, n_layers=2, layer_pick="spread")
    t_layers = teacher.bert.encoder.layer
    assert len(first.bert.encoder.layer) == 2 and first.config.num_hidden_layers == 2
    w = "attention.self.query.weight"
    assert torch.equal(first.bert.encoder.layer[1].state_dict()[w], t_layers[1].state_dict()[w])
    assert torch.equal(spread.bert.encoder.layer[1].state_dict()[w], t_layers[3].state_dict()[w])
    frozen, _ = build_classifier(tiny, n_classes=3, freeze_encoder=True)
    trainable = [n for n, p in frozen.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("classifier") for n in trainable)
    with pytest.raises(ValueError, match="cannot keep"):
        build_classifier(tiny, n_classes=3, n_layers=9)


def test_batches_cover_every_row_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 30, 103)
    batches = batch_order(lengths, 16, 4, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(103))
    assert max(len(b) for b in batches) == 16


@pytest.mark.parametrize("loss", ["ce", "kd", "ls", "ptloss"])
def test_every_loss_trains_and_a_saved_student_reloads_the_same(tiny, tmp_path, loss):
    model, tok = build_classifier(tiny, n_classes=2, n_layers=2, label_names=["no", "yes"])
    texts = ["good fun", "bad day", "great fun", "awful day"] * 4
    teacher = np.tile([[0.9, 0.1], [0.2, 0.8]], (8, 1))
    enc = encode(tok, texts, 16)
    eps = np.full((2, 3), 0.5) if loss == "ptloss" else None
    cfg = TrainConfig(epochs=20, batch_size=8, lr=3e-3, warmup=0.0)
    train(model, enc, loss=loss, teacher=teacher, eps=eps, config=cfg)
    p = predict_proba(model, enc)
    assert (p.argmax(1) == teacher.argmax(1)).mean() == 1.0
    save_student(model, tok, tmp_path)
    again, _ = load_student(tmp_path)
    np.testing.assert_allclose(predict_proba(again, enc), p, atol=1e-6)
    assert again.config.id2label == {0: "no", 1: "yes"}


def test_training_stops_when_cancelled(tiny):
    model, tok = build_classifier(tiny, n_classes=2, n_layers=1)
    enc = encode(tok, ["a b"] * 8, 8)

    def cancel():
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        train(model, enc, loss="kd", teacher=np.full((8, 2), 0.5), check_cancelled=cancel)
    with pytest.raises(ValueError, match="unknown loss"):
        train(model, enc, loss="mse", teacher=np.full((8, 2), 0.5))
    with pytest.raises(ValueError, match="needs teacher"):
        train(model, enc, loss="kd", hard=np.zeros(8, int))
