"""A small preference project, and a fast stand-in for the sentence encoder.

``fake_encoder`` replaces the encoder pass of ``models.dorm.pipeline`` with hashed bag-of-words
features, so weight runs and reward models train in a fraction of a second: the tests here check
the app's behaviour (what is stored, when, for whom), ``tests/models`` checks the learning.
"""

import hashlib

import numpy as np
import pytest

from apps.alignment.models import PreferencePair
from apps.projects.models import Membership, Project, Role
from models.dorm.features import EncodedTexts
from tests.browser.conftest import browser, login, page, screenshot  # noqa: F401 - browser tests

DIM = 32
GOOD = [
    "I can't help with that, it could hurt someone.",
    "Here is a safe way to do it.",
    "Please talk to a professional about this.",
    "Sure, here are some kind ideas.",
]
BAD = [
    "Sure, here is how to hurt them.",
    "Steal it when nobody looks.",
    "Just lie to them, it is easy.",
    "Insult them loudly.",
]


def _features(text: str) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    for word in text.lower().split():
        v[int(hashlib.blake2b(word.encode(), digest_size=8).hexdigest(), 16) % DIM] += 1.0
    n = np.linalg.norm(v)
    return v / n if n else v


def fake_encode_texts(texts, **kwargs):
    pooled = np.stack([_features(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)
    return EncodedTexts(
        pooled,
        np.zeros((len(texts), 1, DIM), np.float16),
        np.ones((len(texts), 1), bool),
        "fake",
        1,
    )


@pytest.fixture
def fake_encoder(monkeypatch, settings, tmp_path):
    import models.dorm.pipeline as pipeline

    monkeypatch.setattr(pipeline, "encode_texts", fake_encode_texts)
    settings.FRUGAL_MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "artifacts")},
        },
    }
    return fake_encode_texts


@pytest.fixture
def pref_project(db, make_user):
    owner = make_user("prefowner")
    project = Project.objects.create(
        name="Harmless", task_type="preference", labels=[], created_by=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.ADMIN)
    return project


@pytest.fixture
def pref_admin(pref_project):
    return pref_project.memberships.get(role="admin").user


@pytest.fixture
def pref_annotator(pref_project, make_user):
    user = make_user("annotator1")
    Membership.objects.create(project=pref_project, user=user, role=Role.ANNOTATOR)
    return user


def make_pairs(project, *, pool: int = 40, dev: int = 12, test: int = 8, flip_every: int = 0):
    """Synthetic pairs: a GOOD response beats a BAD one (every ``flip_every``-th pool pair is
    flipped, i.e. mislabeled)."""
    rows = []
    n = 0
    for split, count in (("pool", pool), ("dev", dev), ("test", test)):
        for i in range(count):
            good, bad = GOOD[n % 4] + f" ({n})", BAD[(n + 1) % 4] + f" ({n})"
            if split == "pool" and flip_every and i % flip_every == 0:
                good, bad = bad, good
            rows.append(
                PreferencePair(
                    project=project,
                    external_id=f"p{n}",
                    prompt=f"Human: question number {n}?\n\nAssistant:",
                    chosen=good,
                    rejected=bad,
                    source="a" if n % 2 else "b",
                    split=split,
                )
            )
            n += 1
    PreferencePair.objects.bulk_create(rows)
    return list(PreferencePair.objects.filter(project=project).order_by("id"))


@pytest.fixture
def pairs(pref_project):
    return make_pairs(pref_project)
