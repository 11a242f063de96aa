"""The prompt proposer's path through the web app: the LM answer index read from the cache (here
written by the test, so no language model runs), prompt rules proposed, stored and matched."""

import numpy as np
import pytest

from apps.rules.models import Rule
from apps.rules.services import decide
from apps.training import services
from apps.training.data import AnswerIndexView, answer_index_for_examples, answer_index_plan
from apps.training.prboost_settings import prboost_settings

pytestmark = [pytest.mark.django_db, pytest.mark.needs_data]

WORDS = ["spam", "music", "video", "channel"]


@pytest.fixture
def cached_answers(youtube_project):
    """A fake LM's answers: 'spam' first for texts that ask for clicks, else 'music'."""
    from models.prboost.answers import AnswerIndex

    youtube_project.settings["prboost"].update(
        proposer="causal",
        language_model="fake-lm-for-tests",
        use_imported_votes=False,
        add_ngrams=False,
    )
    youtube_project.save(update_fields=["settings"])
    plan = answer_index_plan(youtube_project, prboost_settings(youtube_project))
    index = AnswerIndex(WORDS, len(plan.ids), 2, model_id="fake", templates=plan.templates)
    pushy = [any(w in t.lower() for w in ("check", "subscribe", "http")) for t in plan.texts]
    ids = np.asarray([[0, 3] if p else [1, 2] for p in pushy], dtype=np.int32)
    for template in plan.templates:
        index.add(template, ids)
    index.save(plan.path)
    yield plan
    plan.path.unlink(missing_ok=True)


def test_a_round_proposes_prompt_rules_from_the_cached_answers(youtube_project, cached_answers):
    rnd = services.run_round(project=youtube_project)
    rules = list(Rule.objects.filter(project=youtube_project, round_number=rnd.number))
    assert rules and {r.kind for r in rules} == {"prompt"}
    words = {w for r in rules for w in r.definition["answer_words"]}
    assert words <= set(WORDS)
    assert all("language model" in r.description for r in rules)


def test_with_ngrams_added_a_round_ranks_prompt_and_ngram_rules_together(
    youtube_project, cached_answers
):
    youtube_project.settings["prboost"]["add_ngrams"] = True
    youtube_project.save(update_fields=["settings"])
    rnd = services.run_round(project=youtube_project)
    rules = list(Rule.objects.filter(project=youtube_project, round_number=rnd.number))
    kinds = {r.kind for r in rules}
    assert "prompt" in kinds and kinds & {"keyword", "regex"}, kinds
    assert len(rules) <= prboost_settings(youtube_project)["candidates_per_round"]


def test_accepted_prompt_rules_label_the_pool_from_the_cache(
    youtube_project, cached_answers, admin_user
):
    services.run_round(project=youtube_project)
    spam = Rule.objects.filter(
        project=youtube_project, definition__answer_words=["spam"], label=1
    ).first()
    if spam is None:
        pytest.skip("the ranking kept no 'spam' rule for SPAM in this subset")
    decide(rule=spam, user=admin_user, action="accept", expected_version=spam.version)
    result = services.refresh_labels(project=youtube_project)
    assert result["covered"] > 0
    second = services.run_round(project=youtube_project)
    assert second.metrics["n_rules"] == 1 and second.metrics["coverage"] > 0


def test_the_rules_preview_gets_the_cached_answers_for_any_examples(
    youtube_project, cached_answers
):
    test_ids = list(youtube_project.examples.filter(split="test").values_list("id", flat=True))
    ids = np.asarray([*cached_answers.ids[:5], *test_ids[:2]])
    view = answer_index_for_examples(youtube_project, ids)
    assert isinstance(view, AnswerIndexView)
    template = cached_answers.templates[0].id
    assert view.topk(template, 0) in (["spam", "channel"], ["music", "video"])
    assert view.topk(template, 5) == []  # test examples hold no answers
    hits = view.lookup(template, ["spam", "music"])
    assert set(hits.tolist()) == set(range(5))
