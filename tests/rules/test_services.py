"""Review services: leases, decisions, conflicts, undo, edits, manual rules, previews."""

import time

import numpy as np
import pytest

from apps.rules import services
from apps.rules.models import DecisionAction, Rule, RuleDecision, RuleOrigin, RuleStatus
from models.prboost.matching import Corpus, match_rule
from models.prboost.rules import KeywordRule, RegexRule

pytestmark = pytest.mark.django_db


def test_store_suggestions_keeps_evidence_and_stats(project, examples, suggestions):
    assert [r.definition["words"] for r in suggestions] == [
        ["subscribe"],
        ["channel"],
        ["song"],
        ["free"],
    ]
    top = suggestions[0]
    assert top.status == RuleStatus.SUGGESTED and top.origin == RuleOrigin.PROPOSED
    assert top.round_number == 1 and top.decisions_needed == 1
    assert top.evidence["source_example_id"] == examples["dev"][0]
    assert top.evidence["source_text"] == "subscribe for free stuff"
    assert top.evidence["sample_example_ids"] == [examples["pool"][i] for i in (0, 3, 6)]
    assert top.stats["pool_matches"] == 3
    # Shown: the one smoothed definition of the counts (1 of 2 dev: (1 + 1) / (2 + 2)); the
    # proposer's own ranking posterior is kept apart.
    assert top.stats["dev_precision"] == 0.5 and top.stats["ranked_precision"] == 0.75
    assert top.description.startswith("SPAM when the text contains")


def test_store_suggestions_skips_judged_keys_and_moves_pending_ones(
    project, examples, suggestions, annotator
):
    from tests.rules.conftest import candidate

    services.decide(rule=suggestions[0], user=annotator, action="reject", expected_version=1)
    stored = services.store_suggestions(
        project=project,
        round_number=2,
        candidates=[candidate(["Subscribe"], 1), candidate(["song"], 0, score=9.0)],
        dev_ids=examples["dev"],
        pool_ids=examples["pool"],
    )
    assert [r.pk for r in stored] == [suggestions[2].pk]  # "Subscribe" = judged "subscribe"
    assert Rule.objects.get(pk=suggestions[2].pk).round_number == 2
    assert Rule.objects.filter(project=project).count() == 4
    assert services.judged_keys(project=project) == {suggestions[0].key}


def test_store_suggestions_measures_overlap_and_conflict_with_accepted_rules(
    project, examples, suggestions, annotator
):
    from tests.rules.conftest import candidate

    accepted = services.decide(
        rule=suggestions[1], user=annotator, action="accept", expected_version=1
    )  # "channel" -> SPAM matches pool 0, 1
    stored = services.store_suggestions(
        project=project,
        round_number=2,
        candidates=[candidate(["my"], 0, matches=(0, 1, 2, 3))],
        dev_ids=examples["dev"],
        pool_ids=examples["pool"],
        accepted_matches={accepted.pk: np.array([0, 1])},
    )
    assert stored[0].stats["overlap"] == 0.5 and stored[0].stats["conflict"] == 0.5


def test_two_annotators_are_handed_different_suggestions(
    project, suggestions, annotator, second_annotator
):
    first = services.next_suggestion_for(project=project, user=annotator)
    second = services.next_suggestion_for(project=project, user=second_annotator)
    assert first.pk == suggestions[0].pk
    assert second.pk == suggestions[1].pk
    # Asking again keeps your own suggestion (a reload shows the same rule).
    assert services.next_suggestion_for(project=project, user=annotator).pk == first.pk


def test_an_expired_lease_frees_the_suggestion(project, suggestions, annotator, second_annotator):
    first = services.next_suggestion_for(project=project, user=annotator)
    Rule.objects.filter(pk=first.pk).update(claimed_until=None)
    assert services.next_suggestion_for(project=project, user=second_annotator).pk == first.pk


def test_accept_records_who_when_and_before_after(project, suggestions, annotator):
    rule = services.next_suggestion_for(project=project, user=annotator)
    decided = services.decide(rule=rule, user=annotator, action="accept", expected_version=1)
    assert decided.status == RuleStatus.ACCEPTED and decided.version == 2
    assert decided.decided_by == annotator and decided.claimed_by is None
    decision = RuleDecision.objects.get(rule=rule)
    assert decision.user == annotator and decision.action == DecisionAction.ACCEPT
    assert decision.before["status"] == "suggested" and decision.before["version"] == 1
    assert decision.after["status"] == "accepted" and decision.after["version"] == 2
    assert services.accepted_rules(project=project) == [KeywordRule(words=("subscribe",), label=1)]


def test_second_decision_on_a_stale_version_is_refused_with_who_and_when(
    project, suggestions, annotator, second_annotator
):
    rule = suggestions[0]
    services.decide(rule=rule, user=annotator, action="accept", expected_version=1)
    with pytest.raises(services.RuleConflict) as caught:
        services.decide(rule=rule, user=second_annotator, action="reject", expected_version=1)
    assert caught.value.message.startswith("annie already accepted this rule")
    assert caught.value.message.endswith("this rule just now.")
    rule.refresh_from_db()
    assert rule.status == RuleStatus.ACCEPTED and rule.version == 2
    assert RuleDecision.objects.filter(rule=rule).count() == 1


def test_skip_hands_out_the_next_one_and_comes_back_last(project, suggestions, annotator):
    first = services.next_suggestion_for(project=project, user=annotator)
    services.decide(rule=first, user=annotator, action="skip", expected_version=first.version)
    assert Rule.objects.get(pk=first.pk).status == RuleStatus.SUGGESTED
    nxt = services.next_suggestion_for(project=project, user=annotator)
    assert nxt.pk == suggestions[1].pk
    for rule in suggestions[1:]:
        services.decide(rule=rule, user=annotator, action="reject", expected_version=1)
    assert services.next_suggestion_for(project=project, user=annotator).pk == first.pk


def test_undo_restores_the_rule_and_gives_it_back(project, suggestions, annotator):
    rule = services.next_suggestion_for(project=project, user=annotator)
    services.decide(rule=rule, user=annotator, action="reject", expected_version=1)
    undone = services.undo_last_decision(project=project, user=annotator)
    assert undone.pk == rule.pk and undone.status == RuleStatus.SUGGESTED
    assert undone.version == 3 and undone.claimed_by == annotator
    assert services.next_suggestion_for(project=project, user=annotator).pk == rule.pk
    history = list(RuleDecision.objects.filter(rule=rule).order_by("id"))
    assert [(d.action, d.undone) for d in history] == [("reject", True), ("undo", False)]
    assert services.undo_last_decision(project=project, user=annotator) is None


def test_undo_is_refused_when_someone_changed_the_rule_since(
    project, suggestions, annotator, second_annotator
):
    rule = suggestions[0]
    services.decide(rule=rule, user=annotator, action="reject", expected_version=1)
    services.decide(rule=rule, user=second_annotator, action="accept", expected_version=2)
    with pytest.raises(services.RuleConflict, match="bob already accepted"):
        services.undo_last_decision(project=project, user=annotator)
    assert Rule.objects.get(pk=rule.pk).status == RuleStatus.ACCEPTED


def test_several_decisions_per_suggestion_take_the_majority(
    project, examples, make_user, annotator, second_annotator
):
    from apps.projects.models import Membership
    from tests.rules.conftest import candidate

    project.settings = {"decisions_per_suggestion": 3}
    project.save()
    carol = make_user("carol")
    Membership.objects.create(project=project, user=carol, role="annotator")
    [rule] = services.store_suggestions(
        project=project,
        round_number=1,
        candidates=[candidate(["subscribe"], 1)],
        dev_ids=examples["dev"],
        pool_ids=examples["pool"],
    )
    assert rule.decisions_needed == 3
    rule = services.decide(rule=rule, user=annotator, action="accept", expected_version=1)
    assert rule.status == RuleStatus.SUGGESTED
    # Who already voted is not handed the rule again; others are.
    assert services.next_suggestion_for(project=project, user=annotator) is None
    assert services.next_suggestion_for(project=project, user=second_annotator).pk == rule.pk
    rule = services.decide(rule=rule, user=second_annotator, action="reject", expected_version=2)
    assert rule.status == RuleStatus.SUGGESTED
    rule = services.decide(rule=rule, user=carol, action="accept", expected_version=3)
    assert rule.status == RuleStatus.ACCEPTED


def test_edit_changes_the_rule_and_accept_with_edits_records_both_versions(
    project, suggestions, annotator
):
    rule = suggestions[0]
    edited = services.decide(
        rule=rule,
        user=annotator,
        action="accept",
        expected_version=1,
        edits={"words": "subscribe, channel", "label": "1"},
    )
    assert edited.definition["words"] == ["subscribe", "channel"]
    assert edited.status == RuleStatus.ACCEPTED
    assert '"channel"' in edited.description
    decision = RuleDecision.objects.get(rule=rule)
    assert decision.before["definition"]["words"] == ["subscribe"]
    assert decision.after["definition"]["words"] == ["subscribe", "channel"]
    services.undo_last_decision(project=project, user=annotator)
    rule.refresh_from_db()
    assert rule.definition["words"] == ["subscribe"] and rule.status == RuleStatus.SUGGESTED


def test_an_edit_into_an_existing_rule_is_refused(project, suggestions, annotator):
    with pytest.raises(services.RuleInputError, match="identical rule already exists"):
        services.decide(
            rule=suggestions[0],
            user=annotator,
            action="edit",
            expected_version=1,
            edits={"words": "channel"},
        )
    assert Rule.objects.get(pk=suggestions[0].pk).version == 1


def test_edit_preview_is_recomputed_for_the_edited_rule(project, suggestions):
    definition = services.apply_edits(rule=suggestions[0], edits={"words": "song"})
    preview = services.preview_rule(project=project, definition=definition)
    assert preview.pool_matches == 2 and preview.test_matches == 0
    assert preview.dev_matches == 1 and preview.dev_correct == 0  # "nice song" is HAM
    assert all("<mark>song</mark>" in s.html for s in preview.samples)


def test_preview_counts_splits_precision_and_escapes_html(project, examples):
    definition = KeywordRule(words=("free",), label=1).to_dict()
    preview = services.preview_rule(project=project, definition=definition)
    assert (preview.pool_matches, preview.dev_matches, preview.test_matches) == (1, 1, 0)
    assert preview.dev_precision_raw == 1.0 and preview.pool_total == 8
    assert preview.dev_precision == 2 / 3  # smoothed: (1 + 1) / (1 + 2)
    assert preview.dev_precision_text == "66.7% (1 of 1 dev)"
    html = str(preview.samples[0].html)
    assert "&lt;b&gt;example.com&lt;/b&gt;" in html and "<mark>free</mark>" in html


def test_preview_keyword_fast_path_matches_the_engine(project, examples):
    from apps.datasets.models import Example

    texts = services.project_texts(project=project)
    weird = ["Ｆree ＳＴＵＦＦ", "freedom", "c++ rocks", "(Click here!)", "straße"]
    Example.objects.bulk_create(
        Example(project=project, external_id=f"w{i}", text=t) for i, t in enumerate(weird)
    )
    texts = services.project_texts(project=project)
    assert len(texts.ids) == 14 + len(weird)
    for rule in [
        KeywordRule(words=("free",), label=1),
        KeywordRule(words=("c++", "click here"), label=1),
        KeywordRule(words=("STRASSE",), label=0),
        KeywordRule(words=("my", "channel"), label=1, mode="all"),
        KeywordRule(words=("Song",), label=0, case_sensitive=True),
    ]:
        expected = match_rule(rule, Corpus(texts=list(texts.corpus.texts)))
        assert np.array_equal(texts.matcher.match(rule)[0], expected), rule


def test_bad_regex_gets_a_clear_message_and_changes_nothing(project, examples, annotator):
    with pytest.raises(services.RuleInputError, match="backreferences"):
        services.create_manual_rule(
            project=project, user=annotator, kind="regex", pattern=r"(a)\1", label=1
        )
    with pytest.raises(services.RuleInputError, match="invalid"):
        services.create_manual_rule(
            project=project, user=annotator, kind="regex", pattern="(unclosed", label=1
        )
    with pytest.raises(services.RuleInputError, match="limit is 500"):
        services.create_manual_rule(
            project=project, user=annotator, kind="regex", pattern="a" * 501, label=1
        )
    preview = services.preview_rule(
        project=project, definition={"kind": "regex", "pattern": "(?=x)", "label": 1}
    )
    assert "lookahead" in preview.error
    assert not Rule.objects.exists()


def test_catastrophic_regex_on_a_long_text_returns_fast(project, examples, annotator):
    from apps.datasets.models import Example

    Example.objects.create(project=project, external_id="long", text="a" * 200_000 + "!")
    started = time.perf_counter()
    preview = services.preview_rule(
        project=project, definition=RegexRule(pattern="(a+)+$", label=1).to_dict()
    )
    assert time.perf_counter() - started < 2.0
    assert preview.error == "" and preview.pool_matches == 0  # the "b" text: (a+)+$ fails
    rule = services.create_manual_rule(
        project=project, user=annotator, kind="regex", pattern="(a+)+b$", label=1
    )
    assert rule.stats["pool_matches"] == 1


def test_manual_keyword_rule_is_accepted_with_its_stats_and_history(project, examples, annotator):
    rule = services.create_manual_rule(
        project=project, user=annotator, kind="keyword", words="subscribe, check out", label="SPAM"
    )
    assert rule.status == RuleStatus.ACCEPTED and rule.origin == RuleOrigin.MANUAL
    assert rule.label == 1 and rule.created_by == annotator
    assert rule.stats["pool_matches"] == 4 and rule.stats["dev_correct"] == 2
    assert RuleDecision.objects.get(rule=rule).action == "accept"
    # Undo takes back review decisions, not the writing of a rule (admins delete rules).
    assert services.undo_last_decision(project=project, user=annotator) is None
    assert not services.can_undo(project=project, user=annotator)
    with pytest.raises(services.RuleInputError, match="identical rule"):
        services.create_manual_rule(
            project=project, user=annotator, kind="keyword", words="check out, Subscribe", label=1
        )
    with pytest.raises(services.RuleInputError, match="unknown label"):
        services.create_manual_rule(
            project=project, user=annotator, kind="keyword", words="x", label="EGGS"
        )
    with pytest.raises(services.RuleInputError, match="at least one word"):
        services.create_manual_rule(
            project=project, user=annotator, kind="keyword", words=" , ", label=1
        )


def test_review_progress_counts_the_round(project, suggestions, annotator):
    assert services.review_progress(project=project, round_number=1) == {
        "reviewed": 0,
        "total": 4,
        "left": 4,
    }
    services.decide(rule=suggestions[0], user=annotator, action="accept", expected_version=1)
    assert services.review_progress(project=project, round_number=1)["reviewed"] == 1


def test_preview_regex_search_matches_the_engine(project, examples):
    from apps.datasets.models import Example

    tricky = ["line one\nfree money", "ends with free", "free", "money first\nthen free", "é free"]
    tricky += [f"filler {i}" for i in range(600)] + ["A" * 50 + " ok"] * 3
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=t) for i, t in enumerate(tricky)
    )
    texts = services.project_texts(project=project)
    corpus = Corpus(texts=list(texts.corpus.texts))
    for pattern, flags in [
        ("free", "i"),
        ("^free", "i"),
        ("free$", "i"),
        ("^free$", "m"),
        (r"free\s+money", "i"),
        (r"money[^x]*free", "i"),  # would run over into the next text if allowed
        (r"\bfree\b", "i"),
        (r"\Afree", "i"),
        (r"filler \d+", "i"),  # dense: switches to the engine part way
        (r"A{10,}", ""),
        ("é", "i"),
    ]:
        rule = RegexRule(pattern=pattern, label=1, flags=flags)
        expected = match_rule(rule, corpus)
        found, looked = texts.matcher.match(rule)
        assert looked is None and np.array_equal(found, expected), pattern


def test_live_preview_of_a_dense_regex_is_estimated_on_a_sample_and_says_so(
    project, examples, monkeypatch
):
    from apps.datasets.models import Example

    Example.objects.bulk_create(
        Example(project=project, external_id=f"f{i}", text=f"filler {i}") for i in range(3000)
    )
    monkeypatch.setattr("apps.rules.services.preview.PREVIEW_DENSE_BUDGET", 300)
    definition = RegexRule(pattern=r"\w+", label=1).to_dict()
    live = services.preview_rule(project=project, definition=definition)
    exact = services.preview_rule(project=project, definition=definition, exact=True)
    assert live.estimated and 300 < live.looked_at < 3014 and not exact.estimated
    assert exact.pool_matches == 3008
    assert abs(live.pool_matches - exact.pool_matches) <= 30
    assert (live.dev_matches, live.dev_correct) == (exact.dev_matches, exact.dev_correct)


def test_every_decision_is_followed_by_the_next_round_check_once_it_commits(
    project, suggestions, annotator, monkeypatch, django_capture_on_commit_callbacks
):
    checked = []
    monkeypatch.setattr(
        "apps.training.services.maybe_start_next_round",
        lambda *, project: checked.append(project.pk),
    )
    with django_capture_on_commit_callbacks(execute=False) as pending:
        services.decide(rule=suggestions[0], user=annotator, action="accept", expected_version=1)
    assert checked == []  # nothing happens before the decision commits
    for callback in pending:
        callback()
    assert checked == [project.pk]
    with django_capture_on_commit_callbacks(execute=True):
        services.undo_last_decision(project=project, user=annotator)
        services.create_manual_rule(
            project=project, user=annotator, kind="keyword", words="zebra", label=1
        )
    assert checked == [project.pk] * 3


def test_a_failing_next_round_check_leaves_the_decision_in_place(
    project, suggestions, annotator, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(*, project):
        raise RuntimeError("boom")

    monkeypatch.setattr("apps.training.services.maybe_start_next_round", broken)
    with django_capture_on_commit_callbacks(execute=True):
        rule = services.decide(
            rule=suggestions[0], user=annotator, action="accept", expected_version=1
        )
    assert rule.status == RuleStatus.ACCEPTED
    assert RuleDecision.objects.filter(rule=rule, action="accept").count() == 1


def test_decisions_per_suggestion_comes_from_the_training_settings(project):
    from apps.rules.services import decisions_needed_for

    project.settings = {"prboost": {"decisions_per_suggestion": 3}}
    assert decisions_needed_for(project) == 3
    project.settings = {}
    assert decisions_needed_for(project) == 1


def test_a_preview_cut_short_by_the_time_cap_says_after_how_many_examples(
    project, examples, settings
):
    from apps.datasets.models import Example

    Example.objects.bulk_create(
        Example(project=project, external_id=f"f{i}", text=f"filler {i}") for i in range(3000)
    )
    settings.FRUGAL_PREVIEW_MAX_SECONDS = 0.0
    definition = RegexRule(pattern="(?s).*9", label=1, flags="").to_dict()
    for exact in (False, True):
        preview = services.preview_rule(project=project, definition=definition, exact=exact)
        assert preview.stopped_after is not None and 0 < preview.stopped_after < 3014
        assert preview.stopped_text.startswith(f"stopped after {preview.stopped_after:,} examples")
        assert preview.pool_total <= preview.stopped_after and not preview.estimated
    settings.FRUGAL_PREVIEW_MAX_SECONDS = 30.0
    whole = services.preview_rule(project=project, definition=definition, exact=True)
    assert whole.stopped_after is None and whole.stopped_text == ""


def test_keyword_lists_are_sized_first_and_deduplicated(project, examples):
    with pytest.raises(services.RuleInputError, match="1,001 words"):
        services.build_definition(
            project=project, kind="keyword", label=0, words=[f"w{i}" for i in range(1001)]
        )
    with pytest.raises(services.RuleInputError, match="characters long in all"):
        services.build_definition(project=project, kind="keyword", label=0, words=["a" * 150] * 200)
    definition = services.build_definition(
        project=project, kind="keyword", label=0, words="song, nice, song\nsong"
    )
    assert definition["words"] == ["song", "nice"]
