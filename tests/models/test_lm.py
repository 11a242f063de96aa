"""Model access and the disk cache: loaders, embeddings, cache hits without model calls."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from models import lm as lm_mod
from models.cache import ArrayCache, CacheStore, hash_texts, make_key
from models.lm import (
    Encoder,
    ModelLoadError,
    default_causal_lm,
    default_encoder,
    embed_texts,
    load_encoder,
    load_masked_lm,
)
from tests.models.lm_fixtures import make_tiny_encoder, make_tiny_masked_lm


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    return str(make_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder")))


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> str:
    return str(make_tiny_masked_lm(tmp_path_factory.mktemp("tiny-mlm")))


# --------------------------------------------------------------------------- cache
def test_array_cache_round_trip_and_miss(tmp_path):
    cache = ArrayCache(tmp_path, "x")
    key = make_key("a", 1)
    assert cache.get(key) is None
    cache.put(key, np.arange(6).reshape(2, 3))
    assert np.array_equal(cache.get(key), np.arange(6).reshape(2, 3))
    cache.put_many(key, {"ids": np.ones(3), "probs": np.zeros(3)})
    got = cache.get_many(key, ("ids", "probs"))
    assert got is not None and got["ids"].sum() == 3
    assert cache.get_many(key, ("ids", "other")) is None
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))


def test_array_cache_treats_a_corrupt_entry_as_a_miss(tmp_path):
    cache = ArrayCache(tmp_path, "x")
    cache.put("ab" * 20, np.ones(4))
    path = next(tmp_path.rglob("*.npy"))
    path.write_bytes(b"not a numpy file")
    assert cache.get("ab" * 20) is None


def test_disabled_cache_stores_nothing(tmp_path):
    cache = ArrayCache(tmp_path, "x", enabled=False)
    cache.put("k" * 40, np.ones(2))
    assert cache.get("k" * 40) is None
    assert not any(tmp_path.iterdir())


class DictStore:
    """A CacheStore in memory: what object storage shared by several hosts looks like."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.saves = 0

    def open(self, name):
        import io

        if name not in self.files:
            raise FileNotFoundError(name)
        return io.BytesIO(self.files[name])

    def save(self, name, fileobj):
        self.saves += 1
        self.files[name] = fileobj.read()

    def exists(self, name):
        return name in self.files


def test_array_cache_in_a_store_round_trips_and_is_seen_by_another_instance():
    store = DictStore()
    assert isinstance(store, CacheStore) and not isinstance(Path("x"), CacheStore)
    writer = ArrayCache(store, "embeddings")
    key = make_key("model", "texts")
    assert writer.get(key) is None and key not in writer
    writer.put(key, np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.put_many(key, {"ids": np.arange(3), "probs": np.full(3, 0.5)})
    assert sorted(store.files) == [
        f"embeddings/{key[:2]}/{key}.npy",
        f"embeddings/{key[:2]}/{key}.npz",
    ]
    reader = ArrayCache(store, "embeddings")  # e.g. a worker on another host
    assert key in reader
    assert np.array_equal(reader.get(key), np.arange(6, dtype=np.float32).reshape(2, 3))
    got = reader.get_many(key, ("ids", "probs"))
    assert got is not None and got["ids"].tolist() == [0, 1, 2] and got["probs"].sum() == 1.5
    assert reader.get_many(key, ("ids", "missing")) is None
    assert ArrayCache(store, "other").get(key) is None  # namespaces stay apart


def test_a_corrupt_or_disabled_store_entry_is_a_miss():
    store = DictStore()
    cache = ArrayCache(store, "x")
    cache.put("ab" * 20, np.ones(4))
    store.files[next(iter(store.files))] = b"not a numpy file"
    assert cache.get("ab" * 20) is None
    off = ArrayCache(store, "y", enabled=False)
    off.put("cd" * 20, np.ones(2))
    assert off.get("cd" * 20) is None and store.saves == 1


def test_second_embed_call_on_another_host_reads_the_shared_store(tiny_encoder, monkeypatch):
    store = DictStore()
    texts = [f"shared text {i}" for i in range(5)]
    first = embed_texts(texts, tiny_encoder, cache_dir=store, device="cpu")
    assert store.saves >= 1

    def boom(*a, **k):
        raise AssertionError("the model was called although the shared cache holds the answer")

    monkeypatch.setattr(lm_mod, "load_encoder", boom)
    monkeypatch.setattr(Encoder, "encode", boom)
    second = embed_texts(texts, tiny_encoder, cache_dir=store, device="cpu")
    assert np.array_equal(first, second)


def test_hash_texts_depends_on_order_and_boundaries():
    assert hash_texts(["ab", "c"]) != hash_texts(["a", "bc"])
    assert hash_texts(["a", "b"]) != hash_texts(["b", "a"])
    assert hash_texts(["a", "b"]) == hash_texts(["a", "b"])


# --------------------------------------------------------------------------- defaults, errors
def test_default_models_are_local_folders():
    folder = Path(default_causal_lm())
    assert any(p.suffix == ".gguf" for p in folder.iterdir())
    assert (Path(default_encoder()) / "config.json").exists()


def test_missing_model_path_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_encoder(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="could not load a masked LM"):
        load_masked_lm(str(tmp_path))  # exists, but holds no model


def test_offline_mode_is_on():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


# --------------------------------------------------------------------------- embeddings
def test_embeddings_are_normalized_and_independent_of_batching(tiny_encoder, tmp_path):
    texts = ["free money now", "I love this song", "", "a much longer text " * 20, "click"]
    a = embed_texts(texts, tiny_encoder, batch_size=2, cache_dir=tmp_path, device="cpu")
    b = embed_texts(texts, tiny_encoder, batch_size=64, use_cache=False, device="cpu")
    assert a.shape == (5, 32) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-5)


def test_second_embed_call_reads_the_cache_without_the_model(tiny_encoder, tmp_path, monkeypatch):
    texts = [f"text number {i}" for i in range(7)]
    first = embed_texts(texts, tiny_encoder, cache_dir=tmp_path, device="cpu")

    def boom(*a, **k):
        raise AssertionError("the model was called although the cache holds the answer")

    monkeypatch.setattr(lm_mod, "load_encoder", boom)
    monkeypatch.setattr(Encoder, "encode", boom)
    second = embed_texts(texts, tiny_encoder, cache_dir=tmp_path, device="cpu")
    assert np.array_equal(first, second)


def test_embedding_pass_resumes_per_chunk(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_mod, "EMBED_CHUNK", 3)
    texts = [f"doc {i}" for i in range(8)]  # chunks of 3, 3, 2
    embed_texts(texts[:6], tiny_encoder, cache_dir=tmp_path, device="cpu")  # a run that stopped
    calls = []
    real = Encoder.encode

    def counting(self, chunk, *a, **k):
        calls.append(list(chunk))
        return real(self, chunk, *a, **k)

    monkeypatch.setattr(Encoder, "encode", counting)
    out = embed_texts(texts, tiny_encoder, cache_dir=tmp_path, device="cpu")
    assert calls == [texts[6:]]  # only the missing chunk ran
    assert out.shape == (8, 32)


def test_embed_texts_of_nothing_has_the_model_width(tiny_encoder, tmp_path):
    assert embed_texts([], tiny_encoder, cache_dir=tmp_path, device="cpu").shape == (0, 32)


@pytest.mark.slow
def test_default_encoder_gives_similar_vectors_for_similar_texts(tmp_path):
    x = embed_texts(
        ["win a free prize now", "you won a free prize", "the weather is cold today"],
        cache_dir=tmp_path,
    )
    assert x.shape == (3, 384)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_a_prompt_longer_than_max_length_keeps_its_question(tmp_path):
    """Truncation must cut the start of the text, not the question at the answer slot."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer

    from models.lm import CausalLM
    from tests.models.lm_fixtures import _tokenizer

    _tokenizer(tmp_path).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    seen = {}

    def model(input_ids, attention_mask, position_ids, logits_to_keep):
        seen["ids"] = input_ids
        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], 1, len(tokenizer)))

    lm = CausalLM(model, tokenizer, "recorder", "cpu", max_length=8)
    question = "this is about"
    list(lm.next_token_logits(["free money " * 20 + question], batch_size=1))
    kept = tokenizer.decode(seen["ids"][0])
    assert seen["ids"].shape[1] == 8
    assert kept.endswith(question)
