"""Review screen, rules list, rule detail and "write a rule" pages, per role."""

import pytest
from django.urls import reverse

from apps.rules import services
from apps.rules.models import Rule, RuleDecision, RuleStatus

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def review_url(project):
    return reverse("rules:review", args=[project.pk])


def test_review_page_shows_the_suggestion_its_evidence_and_stats(
    client, project, suggestions, annotator
):
    client.force_login(annotator)
    page = client.get(review_url(project)).content.decode()
    assert "SPAM when the text contains &quot;subscribe&quot;" in page
    assert "<mark>subscribe</mark> for free stuff" in page  # the misclassified dev example
    assert "<mark>subscribe</mark> to my channel please" in page
    assert "Coverage" in page and "Dev precision" in page
    assert "50.0% (1 of 2 dev)" in page  # smoothed: (1 + 1) / (2 + 2)
    assert '0</strong> of <span id="review-total">4</span> reviewed' in page
    for key in ('data-key="a"', 'data-key="x"', 'data-key=" "', 'data-key="u"', 'data-key="e"'):
        assert key in page
    assert 'hx-trigger="input changed delay:150ms"' in page


def test_accepting_over_htmx_swaps_in_the_next_suggestion(client, project, suggestions, annotator):
    client.force_login(annotator)
    client.get(review_url(project))
    response = client.post(
        review_url(project),
        {
            "rule_id": suggestions[0].pk,
            "version": 1,
            "action": "accept",
            "words": "subscribe",
            "label": "1",
            "mode": "any",
        },
        **HTMX,
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert 'id="review-card"' in body and "Accepted:" in body
    assert f'name="rule_id" value="{suggestions[1].pk}"' in body
    assert '1</strong> of <span id="review-total">4</span> reviewed' in body
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.ACCEPTED


def test_buttons_work_without_javascript(client, project, suggestions, annotator):
    client.force_login(annotator)
    response = client.post(
        review_url(project), {"rule_id": suggestions[0].pk, "version": 1, "action": "reject"}
    )
    assert response.status_code == 302 and response["Location"] == review_url(project)
    page = client.get(review_url(project)).content.decode()
    assert "Rejected:" in page
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.REJECTED


def test_second_annotator_deciding_a_decided_rule_sees_who_did_it(
    client, project, suggestions, annotator, second_annotator
):
    services.decide(rule=suggestions[0], user=annotator, action="accept", expected_version=1)
    client.force_login(second_annotator)
    body = client.post(
        review_url(project),
        {"rule_id": suggestions[0].pk, "version": 1, "action": "reject"},
        **HTMX,
    ).content.decode()
    assert "annie already accepted this rule just now" in body
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.ACCEPTED


def test_undo_key_brings_the_last_decision_back(client, project, suggestions, annotator):
    client.force_login(annotator)
    client.post(
        review_url(project),
        {"rule_id": suggestions[0].pk, "version": 1, "action": "reject"},
        **HTMX,
    )
    body = client.post(review_url(project), {"action": "undo"}, **HTMX).content.decode()
    assert "Undone:" in body
    assert f'name="rule_id" value="{suggestions[0].pk}"' in body
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.SUGGESTED


def test_accept_with_edited_words_accepts_the_edited_rule(client, project, suggestions, annotator):
    client.force_login(annotator)
    client.post(
        review_url(project),
        {
            "rule_id": suggestions[0].pk,
            "version": 1,
            "action": "accept",
            "words": "subscribe, like",
            "label": "1",
            "mode": "any",
        },
        **HTMX,
    )
    rule = Rule.objects.get(pk=suggestions[0].pk)
    assert rule.status == RuleStatus.ACCEPTED and rule.definition["words"] == ["subscribe", "like"]
    decision = RuleDecision.objects.get(rule=rule)
    assert decision.before["definition"]["words"] == ["subscribe"]


def test_an_edit_shows_one_dev_precision_and_the_current_coverage_everywhere(
    client, project, suggestions, annotator
):
    client.force_login(annotator)
    rule = suggestions[0]  # "subscribe": 3 of 8 pool texts when proposed
    client.post(
        review_url(project),
        {
            "rule_id": rule.pk,
            "version": 1,
            "action": "accept",
            "words": "subscribe, check",
            "label": "1",
            "mode": "any",
        },
        **HTMX,
    )
    rule.refresh_from_db()
    # "subscribe" or "check": 4 of 8 pool texts; dev: 2 of 2 SPAM → smoothed (2 + 1) / (2 + 2).
    assert rule.stats["pool_matches"] == 4 and rule.stats["coverage"] == 0.5
    assert "novelty" not in rule.stats  # proposal-time figures no longer apply
    shown = "75.0% (2 of 2 dev)"
    listing = client.get(reverse("rules:list", args=[project.pk])).content.decode()
    assert "50.0%" in listing and shown in listing
    detail = client.get(reverse("rules:detail", args=[project.pk, rule.pk])).content.decode()
    assert shown in detail and "(when proposed)" not in detail
    preview_url = reverse("rules:rule_preview", args=[project.pk, rule.pk])
    preview = client.get(
        preview_url, {"words": "subscribe, check", "label": "1"}, **HTMX
    ).content.decode()
    assert shown in preview
    for page in (listing, detail, preview):
        assert "(correct + 1) / (matched gold dev examples + 2)" in page  # the tooltip


def test_edit_preview_recomputes_counts_and_samples(client, project, suggestions, annotator):
    client.force_login(annotator)
    url = reverse("rules:rule_preview", args=[project.pk, suggestions[0].pk])
    body = client.get(url, {"words": "song", "label": "0"}, **HTMX).content.decode()
    assert "<strong>2</strong> of 8" in body and "<mark>song</mark>" in body
    body = client.get(url, {"words": " , "}, **HTMX).content.decode()
    assert "at least one word" in body


def test_write_a_rule_previews_live_and_saves(client, project, examples, annotator):
    client.force_login(annotator)
    page = client.get(reverse("rules:new", args=[project.pk])).content.decode()
    assert "input changed delay:150ms" in page
    preview = client.get(
        reverse("rules:preview", args=[project.pk]),
        {"kind": "regex", "pattern": r"subscribe\s+\w+", "label": "1"},
        **HTMX,
    ).content.decode()
    assert "<mark>subscribe to</mark>" in preview
    bad = client.get(
        reverse("rules:preview", args=[project.pk]),
        {"kind": "regex", "pattern": r"(\w)\1", "label": "1"},
        **HTMX,
    ).content.decode()
    assert "backreferences" in bad
    response = client.post(
        reverse("rules:new", args=[project.pk]),
        {"kind": "keyword", "words": "subscribe", "label": "1", "mode": "any"},
    )
    rule = Rule.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse("rules:detail", args=[project.pk, rule.pk])
    assert rule.status == RuleStatus.ACCEPTED and rule.created_by == annotator


def test_write_a_rule_with_a_bad_regex_shows_why_and_saves_nothing(client, project, annotator):
    client.force_login(annotator)
    response = client.post(
        reverse("rules:new", args=[project.pk]),
        {"kind": "regex", "pattern": "(?<=x)y", "label": "1"},
    )
    assert response.status_code == 400 and "lookbehind" in response.content.decode()
    assert not Rule.objects.exists()


def test_rules_list_filters_and_shows_who_decided(client, project, suggestions, annotator):
    services.decide(rule=suggestions[0], user=annotator, action="accept", expected_version=1)
    client.force_login(annotator)
    url = reverse("rules:list", args=[project.pk])
    page = client.get(url).content.decode()
    assert page.count('class="badge rule-') == 4 and "annie" in page
    accepted = client.get(url, {"status": "accepted"}, **HTMX).content.decode()
    assert accepted.count('class="badge rule-') == 1 and "<html" not in accepted
    assert client.get(url, {"q": "channel"}).content.decode().count('class="badge rule-') == 1


def test_rules_list_shows_imported_rule_votes_as_seed_rules_with_stats(
    client, project, examples, annotator
):
    from apps.datasets.models import Example

    for example in Example.objects.filter(project=project).exclude(split="test"):
        text = example.text
        example.votes = {
            "external": [1 if "subscribe" in text else -1, 0 if "check" in text else -1]
        }
        example.save(update_fields=["votes"])
    client.force_login(annotator)
    page = client.get(reverse("rules:list", args=[project.pk])).content.decode()
    assert "Seed rules" in page and "Used as seed rules from the first boosting round." in page
    # Column 1 votes SPAM on 3 of 8 pool texts and is right on its 1 dev match (smoothed 2/3).
    assert "37.5%" in page and "66.7% (1 of 1 dev)" in page
    # Column 2 votes HAM on "check" texts: 1 pool match, wrong on its 1 dev match (1/3).
    assert "12.5%" in page and "33.3% (0 of 1 dev)" in page
    assert page.count('class="badge rule-seed"') == 3  # the heading's and one per seed rule
    assert "(correct + 1) / (matched gold dev examples + 2)" in page  # the tooltip


def test_rules_list_hides_seed_rules_without_imported_votes(client, project, examples, annotator):
    client.force_login(annotator)
    page = client.get(reverse("rules:list", args=[project.pk])).content.decode()
    assert "Seed rules" not in page


def test_rule_detail_shows_decision_history(client, project, suggestions, annotator):
    services.decide(rule=suggestions[0], user=annotator, action="reject", expected_version=1)
    client.force_login(annotator)
    page = client.get(reverse("rules:detail", args=[project.pk, suggestions[0].pk])).content
    page = page.decode()
    assert "Decision history" in page and "annie" in page and "Reject" in page
    assert "Delete (admins)" not in page


def test_detail_accept_with_a_stale_version_warns(
    client, project, suggestions, annotator, admin_user
):
    services.decide(rule=suggestions[0], user=annotator, action="reject", expected_version=1)
    client.force_login(admin_user)
    url = reverse("rules:decide", args=[project.pk, suggestions[0].pk])
    response = client.post(url, {"action": "accept", "version": 1}, follow=True)
    assert "annie already rejected this rule" in response.content.decode()
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.REJECTED


def test_only_admins_delete_rules(client, project, suggestions, annotator, admin_user):
    url = reverse("rules:delete", args=[project.pk, suggestions[0].pk])
    client.force_login(annotator)
    assert client.post(url).status_code == 403
    assert Rule.objects.filter(pk=suggestions[0].pk).exists()
    client.force_login(admin_user)
    assert client.post(url).status_code == 302
    assert not Rule.objects.filter(pk=suggestions[0].pk).exists()


@pytest.mark.parametrize(
    "name,args",
    [
        ("rules:list", []),
        ("rules:review", []),
        ("rules:new", []),
        ("rules:preview", []),
        ("rules:detail", ["rule"]),
        ("rules:rule_preview", ["rule"]),
    ],
)
def test_pages_are_for_members_only(client, project, suggestions, annotator, outsider, name, args):
    url = reverse(name, args=[project.pk] + [suggestions[0].pk for _ in args])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(annotator)
    assert client.get(url).status_code == 200


def test_a_rule_of_another_project_is_not_found(client, project, suggestions, make_user):
    from apps.projects.models import Membership, Project

    other = Project.objects.create(name="Other", labels=["A", "B"])
    user = make_user("other-admin")
    Membership.objects.create(project=other, user=user, role="admin")
    client.force_login(user)
    url = reverse("rules:detail", args=[other.pk, suggestions[0].pk])
    assert client.get(url).status_code == 404
    url = reverse("rules:delete", args=[other.pk, suggestions[0].pk])
    assert client.post(url).status_code == 404
    assert Rule.objects.filter(pk=suggestions[0].pk).exists()


def test_write_a_rule_preview_says_stopped_after_n_examples(
    client, project, examples, annotator, settings, monkeypatch
):
    settings.FRUGAL_PREVIEW_MAX_BYTES = 0
    monkeypatch.setattr("models.prboost.matching.PER_TEXT_BLOCK", 1)
    client.force_login(annotator)
    body = client.get(
        reverse("rules:preview", args=[project.pk]),
        {"kind": "regex", "pattern": "(?s).*e", "label": "1"},
        **HTMX,
    ).content.decode()
    assert "Preview stopped after" in body and "examples" in body


def test_review_edit_with_thirty_thousand_words_answers_fast_and_clearly(
    client, project, suggestions, annotator
):
    import time

    client.force_login(annotator)
    url = reverse("rules:rule_preview", args=[project.pk, suggestions[0].pk])
    started = time.perf_counter()
    body = client.get(url, {"words": ", ".join(f"w{i}" for i in range(30_000))}, **HTMX)
    assert time.perf_counter() - started < 2.0
    assert "30,000 words" in body.content.decode()
    # Under the cap, duplicates collapse to one word each (a set, no quadratic work).
    body = client.get(url, {"words": ", ".join(["song"] * 900)}, **HTMX).content.decode()
    assert "<strong>2</strong> of 8" in body


def test_the_last_suggestions_held_by_someone_else_are_named_not_nothing_left(
    client, project, suggestions, annotator, second_annotator
):
    # bob holds the last suggestion; annie decided the other three.
    for rule in suggestions[:3]:
        services.decide(rule=rule, user=annotator, action="reject", expected_version=1)
    held = services.next_suggestion_for(project=project, user=second_annotator)
    assert held.pk == suggestions[3].pk
    client.force_login(annotator)
    body = client.get(review_url(project)).content.decode()
    assert "1 suggestion is being reviewed by bob" in body
    assert "Nothing left to review" not in body
    # Once bob decides, it is over for everyone.
    services.decide(rule=held, user=second_annotator, action="accept", expected_version=1)
    body = client.get(review_url(project)).content.decode()
    assert "Nothing left to review in round 1" in body and "being reviewed by" not in body


def test_u_after_a_skip_in_review_brings_the_skipped_suggestion_back(
    client, project, suggestions, annotator
):
    client.force_login(annotator)
    first = services.next_suggestion_for(project=project, user=annotator)
    client.post(review_url(project), {"rule_id": first.pk, "version": 1, "action": "skip"}, **HTMX)
    body = client.post(review_url(project), {"action": "undo"}, **HTMX).content.decode()
    assert f'name="rule_id" value="{first.pk}"' in body
