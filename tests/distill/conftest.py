"""Fixtures for the distillation tests: a tiny BERT encoder (built from a config, no download)
and a small synthetic spam project whose pool carries labels (as after PRBoost's finalize)."""

import random

import pytest

from apps.datasets.models import Example

SPAM = [
    "buy cheap pills now",
    "free money click here",
    "win a prize today",
    "subscribe to my channel",
]
HAM = ["great song love it", "this video is so funny", "nice guitar solo", "best movie scene ever"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.lm import default_encoder

    folder = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(default_encoder())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _texts(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        base = rng.choice(SPAM if label else HAM)
        out.append((f"{base} {rng.choice(['!', 'ok', 'wow', 'yes'])} {i}", label))
    return out


@pytest.fixture
def spam_project(project):
    """The shared ``project`` (HAM, SPAM): 40 labeled pool rows (rules), 8 unlabeled pool rows,
    12 gold dev and 12 gold test rows."""
    rows = []
    for i, (text, y) in enumerate(_texts(48, 0)):
        labeled = i < 40
        rows.append(
            Example(
                project=project,
                external_id=f"pool-{i}",
                split="pool",
                text=text,
                label=y if labeled else None,
                confidence=0.9 if labeled else None,
                label_source="rules" if labeled else "",
            )
        )
    for split, seed in (("dev", 1), ("test", 2)):
        for i, (text, y) in enumerate(_texts(12, seed)):
            rows.append(
                Example(
                    project=project,
                    external_id=f"{split}-{i}",
                    split=split,
                    text=text,
                    gold_label=y,
                )
            )
    Example.objects.bulk_create(rows)
    return project


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path, monkeypatch):
    """Students go to a fresh artifacts folder per test (and for the workers it starts); the
    model cache too."""
    folder = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    settings.FRUGAL_MODEL_CACHE_DIR = tmp_path / "model-cache"
    monkeypatch.setenv("FRUGAL_ARTIFACT_ROOT", str(folder))
    monkeypatch.setenv("FRUGAL_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    return folder


@pytest.fixture
def fast_params(tiny_encoder) -> dict:
    """Distillation settings that run in seconds on the tiny encoder."""
    return {
        "encoder": tiny_encoder,
        "layers": 1,
        "epochs": 2,
        "teacher_epochs": 1,
        "folds": 2,
        "candidates": 4,
        "max_length": 24,
    }


@pytest.fixture
def wait_for_status():
    import time

    def wait(job, *statuses, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status in statuses:
                return job
            time.sleep(0.2)
        pytest.fail(f"job {job.pk} not {'/'.join(statuses)} after {timeout} s: {job.status}")

    return wait
