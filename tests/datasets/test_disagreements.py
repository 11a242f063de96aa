"""Results back into labeling: the "where it disagrees" page (what it lists, in which order, who
may see it) and the accepted rules that fired on an example's detail page."""

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from apps.datasets import selectors
from apps.datasets.models import Example
from apps.rules import selectors as rule_selectors
from apps.rules import services as rule_services
from apps.rules.models import Rule, RuleStatus
from models.prboost.propose import rule_key
from models.prboost.rules import SimilarityRule

HAM, SPAM = 0, 1


def make(project, external_id, *, split="pool", gold=None, label=None, confidence=None, text=None):
    return Example.objects.create(
        project=project,
        external_id=external_id,
        split=split,
        text=text or f"text of {external_id}",
        gold_label=gold,
        label=label,
        confidence=confidence,
        label_source="model" if label is not None else "",
    )


@pytest.fixture
def examples(project):
    """Named examples: which ones the page must list, and which it must leave out."""
    return {
        # Listed: dev/test without gold, unsure (least sure first).
        "unsure_dev_030": make(project, "u1", split="dev", label=SPAM, confidence=0.30),
        "unsure_test_055": make(project, "u2", split="test", label=HAM, confidence=0.55),
        # Listed: current label differs from gold (most confident first).
        "wrong_090": make(project, "w1", split="dev", gold=HAM, label=SPAM, confidence=0.90),
        "wrong_070": make(project, "w2", split="pool", gold=SPAM, label=HAM, confidence=0.70),
        "wrong_020": make(project, "w3", split="test", gold=SPAM, label=HAM, confidence=0.20),
        # Left out: agreeing, sure enough, unsure but in the pool, no label at all.
        "agrees": make(project, "a1", split="dev", gold=SPAM, label=SPAM, confidence=0.4),
        "sure_no_gold": make(project, "s1", split="dev", label=SPAM, confidence=0.95),
        "unsure_pool": make(project, "p1", split="pool", label=SPAM, confidence=0.1),
        "unlabeled_dev": make(project, "n1", split="dev"),
        "gold_only": make(project, "g1", split="dev", gold=HAM),
    }


EXPECTED_ORDER = ["unsure_dev_030", "unsure_test_055", "wrong_090", "wrong_070", "wrong_020"]


def listed_ids(response) -> list[int]:
    return [
        int(pk) for pk in re.findall(r'<tr><td><a href="[^"]*/(\d+)/">', response.content.decode())
    ]


def url(project):
    return reverse("datasets:disagreements", args=[project.pk])


def test_lists_exactly_the_unsure_and_disagreeing_examples_most_helpful_first(
    client, project, annotator, examples
):
    client.force_login(annotator)
    response = client.get(url(project))
    assert response.status_code == 200
    assert listed_ids(response) == [examples[name].pk for name in EXPECTED_ORDER]


def test_each_row_links_to_the_example_page_where_gold_is_set(client, project, annotator, examples):
    client.force_login(annotator)
    html = client.get(url(project)).content.decode()
    detail = reverse("datasets:example_detail", args=[project.pk, examples["wrong_090"].pk])
    assert f'class="label-link" href="{detail}"' in html


def test_keyset_pages_walk_forward_and_back_in_the_same_order(project, examples):
    queryset = selectors.disagreements_for_project(project=project)
    first = selectors.disagreement_page(queryset, size=2)
    second = selectors.disagreement_page(queryset, after=first.next_after, size=2)
    third = selectors.disagreement_page(queryset, after=second.next_after, size=2)
    walked = [e.pk for page in (first, second, third) for e in page.items]
    assert walked == [examples[name].pk for name in EXPECTED_ORDER]
    assert not third.has_next
    back = selectors.disagreement_page(queryset, before=third.prev_before, size=2)
    assert [e.pk for e in back.items] == [e.pk for e in second.items]
    cursor = selectors.DisagreementCursor.decode(second.next_after.encode())
    assert cursor == second.next_after


def test_paging_links_and_a_bad_cursor_fall_back_to_the_first_page(
    client, project, annotator, examples, monkeypatch
):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    client.force_login(annotator)
    first = client.get(url(project))
    next_url = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1)
    second = client.get(next_url.replace("&amp;", "&"))
    assert listed_ids(second) == [examples["wrong_090"].pk, examples["wrong_070"].pk]
    bad = client.get(url(project), {"after": "not-a-cursor"})
    assert bad.status_code == 200
    assert "not valid" in bad.content.decode()
    assert listed_ids(bad) == listed_ids(first)


def test_htmx_gets_only_the_results_region(client, project, annotator, examples):
    client.force_login(annotator)
    response = client.get(url(project), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="examples-results"')
    assert '<nav class="projectnav"' not in html


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(url(project))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_outsider_gets_404_and_sees_nothing(client, project, outsider, examples):
    client.force_login(outsider)
    assert client.get(url(project)).status_code == 404


def test_project_nav_links_to_the_page(client, project, annotator):
    client.force_login(annotator)
    html = client.get(reverse("datasets:examples", args=[project.pk])).content.decode()
    assert f'href="{url(project)}"' in html


# --- rules that fired on the example page ------------------------------------------------------


@pytest.fixture
def keyword_rules(project, admin_user):
    fires = rule_services.create_manual_rule(
        project=project, user=admin_user, kind="keyword", label="SPAM", words=["subscribe"]
    )
    quiet = rule_services.create_manual_rule(
        project=project, user=admin_user, kind="keyword", label="HAM", words=["lovely"]
    )
    suggested = rule_services.create_manual_rule(
        project=project, user=admin_user, kind="regex", label="HAM", pattern=r"my\s+channel"
    )
    Rule.objects.filter(pk=suggested.pk).update(status=RuleStatus.SUGGESTED)
    return fires, quiet, suggested


def test_detail_page_shows_the_accepted_rule_that_fired_and_not_the_others(
    client, project, annotator, keyword_rules
):
    fires, quiet, suggested = keyword_rules
    example = make(project, "e1", text="Please SUBSCRIBE to my channel!")
    client.force_login(annotator)
    response = client.get(reverse("datasets:example_detail", args=[project.pk, example.pk]))
    assert response.status_code == 200
    fired = response.context["fired_rules"]
    assert [rule.id for rule in fired] == [fires.pk]
    assert fired[0].label == "SPAM"
    html = response.content.decode()
    section = html[html.index("Rules that fired") : html.index("Rule votes")]
    assert escape(fires.description) in section
    assert escape(quiet.description) not in section
    assert "1 other accepted rule did not match" in section
    assert suggested.pk not in [rule.id for rule in response.context["unevaluated_rules"]]


def test_detail_page_says_when_no_accepted_rule_matches(client, project, annotator, keyword_rules):
    example = make(project, "e2", text="nothing relevant here")
    client.force_login(annotator)
    response = client.get(reverse("datasets:example_detail", args=[project.pk, example.pk]))
    assert response.context["fired_rules"] == []
    assert "No accepted rule matches this example." in response.content.decode()


def test_similarity_rules_are_listed_as_not_evaluated(project):
    rule = SimilarityRule(anchor_index=0, threshold=0.8, label=SPAM)
    key = rule_key(rule)
    Rule.objects.create(
        project=project,
        kind="similarity",
        definition=rule.to_dict(),
        key=key,
        key_hash=rule_services.key_hash(key),
        label=SPAM,
        status=RuleStatus.ACCEPTED,
    )
    example = make(project, "e3", text="anything")
    (item,) = rule_selectors.rules_for_example(project=project, example=example)
    assert item.fired is None
    assert "embeddings" in item.reason
