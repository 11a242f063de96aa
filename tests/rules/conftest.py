"""A small spam project with pool/dev/test examples and a round of suggested keyword rules."""

import numpy as np
import pytest

from apps.datasets.models import Example
from apps.projects.models import Membership, Role
from models.prboost.propose import Candidate
from models.prboost.rules import KeywordRule
from tests.browser.conftest import browser, login, page, screenshot  # noqa: F401 - browser tests

POOL = [
    "subscribe to my channel please",
    "check out my channel for more",
    "I love this song so much",
    "great video, subscribe now",
    "free gift card at <b>example.com</b>",
    "this song reminds me of summer",
    "please subscribe and like",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
]
DEV = [
    ("subscribe for free stuff", 1),
    ("nice song", 0),
    ("check out my page", 1),
    ("love it", 0),
]
TEST = [("subscribe pls", 1), ("beautiful voice", 0)]


@pytest.fixture
def examples(project):
    rows = [
        Example(project=project, external_id=f"p{i}", split="pool", text=t)
        for i, t in enumerate(POOL)
    ]
    rows += [
        Example(project=project, external_id=f"d{i}", split="dev", text=t, gold_label=y)
        for i, (t, y) in enumerate(DEV)
    ]
    rows += [
        Example(project=project, external_id=f"t{i}", split="test", text=t, gold_label=y)
        for i, (t, y) in enumerate(TEST)
    ]
    Example.objects.bulk_create(rows)
    ordered = list(Example.objects.filter(project=project).order_by("id"))
    return {
        "pool": [e.pk for e in ordered if e.split == "pool"],
        "dev": [e.pk for e in ordered if e.split == "dev"],
        "test": [e.pk for e in ordered if e.split == "test"],
    }


def candidate(words, label, *, source_index=0, matches=(0,), score=1.0, novelty=1.0):
    return Candidate(
        rule=KeywordRule(words=tuple(words), label=label),
        source_index=source_index,
        answer_word=words[0],
        matches=np.asarray(matches, dtype=np.int64),
        coverage=len(matches) / len(POOL),
        dev_precision=0.75,
        novelty=novelty,
        score=score,
        sample_indices=list(matches),
        dev_matches=2,
        dev_correct=1,
    )


@pytest.fixture
def suggestions(project, examples):
    """Round 1: four suggested keyword rules, best first."""
    from apps.rules.services import store_suggestions

    candidates = [
        candidate(["subscribe"], 1, matches=(0, 3, 6), score=3.0),
        candidate(["channel"], 1, source_index=2, matches=(0, 1), score=2.0),
        candidate(["song"], 0, source_index=1, matches=(2, 5), score=1.5),
        candidate(["free"], 1, matches=(4,), score=1.0),
    ]
    return store_suggestions(
        project=project,
        round_number=1,
        candidates=candidates,
        dev_ids=examples["dev"],
        pool_ids=examples["pool"],
    )


@pytest.fixture
def second_annotator(project, make_user):
    user = make_user("bob")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture(autouse=True)
def fresh_text_cache():
    """Test databases reuse ids; the per-process corpus cache must not outlive a test."""
    from apps.rules.services import forget_project_texts

    forget_project_texts()
    yield
    forget_project_texts()
