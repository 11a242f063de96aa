"""Rules API: list with filters, write, review with 409 on conflicts, detail, undo, delete."""

import time

import pytest
from rest_framework.test import APIClient

from apps.rules import services
from apps.rules.models import Rule, RuleStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def base(project):
    return f"/api/v1/projects/{project.pk}/rules/"


def test_list_filters_by_status_origin_and_round(api, project, suggestions, annotator):
    services.decide(rule=suggestions[0], user=annotator, action="accept", expected_version=1)
    api.force_authenticate(annotator)
    rows = api.get(base(project)).json()["results"]
    assert len(rows) == 4
    accepted = api.get(base(project), {"status": "accepted"}).json()["results"]
    assert [r["id"] for r in accepted] == [suggestions[0].pk]
    assert accepted[0]["decided_by"] == "annie" and accepted[0]["version"] == 2
    assert api.get(base(project), {"origin": "manual"}).json()["results"] == []
    assert len(api.get(base(project), {"round": 1}).json()["results"]) == 4
    assert api.get(base(project), {"status": "maybe"}).status_code == 400


def test_create_manual_rules_and_bad_regex_message(api, project, examples, annotator):
    api.force_authenticate(annotator)
    response = api.post(
        base(project), {"kind": "keyword", "words": ["subscribe"], "label": "SPAM"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["status"] == "accepted" and response.json()["origin"] == "manual"
    bad = api.post(base(project), {"kind": "regex", "pattern": "(a)\\1", "label": 1}, format="json")
    assert bad.status_code == 400
    assert "backreferences" in bad.json()["error"]["details"]["non_field_errors"][0]
    assert Rule.objects.count() == 1


def test_review_decision_and_409_when_someone_decided_first(
    api, project, suggestions, annotator, second_annotator
):
    url = f"{base(project)}{suggestions[0].pk}/decisions/"
    api.force_authenticate(annotator)
    first = api.post(url, {"action": "accept", "expected_version": 1}, format="json")
    assert first.status_code == 200
    assert first.json()["rule"]["status"] == "accepted"
    assert first.json()["decision"]["action"] == "accept"
    api.force_authenticate(second_annotator)
    second = api.post(url, {"action": "reject", "expected_version": 1}, format="json")
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "conflict" and error["message"].startswith("annie already accepted")
    assert error["details"]["rule"]["version"] == 2
    assert Rule.objects.get(pk=suggestions[0].pk).status == RuleStatus.ACCEPTED


def test_review_with_edits_and_detail_history(api, project, suggestions, annotator):
    api.force_authenticate(annotator)
    rule_url = f"{base(project)}{suggestions[0].pk}/"
    response = api.post(
        rule_url + "decisions/",
        {"action": "accept", "expected_version": 1, "edits": {"words": ["subscribe", "like"]}},
        format="json",
    )
    assert response.status_code == 200
    detail = api.get(rule_url).json()
    assert detail["definition"]["words"] == ["subscribe", "like"]
    [decision] = detail["decisions"]
    assert decision["user"] == "annie"
    assert decision["before"]["definition"]["words"] == ["subscribe"]
    assert decision["after"]["status"] == "accepted"


def test_next_claims_and_undo(api, project, suggestions, annotator, second_annotator):
    api.force_authenticate(annotator)
    mine = api.post(base(project) + "next/").json()
    api.force_authenticate(second_annotator)
    theirs = api.post(base(project) + "next/").json()
    assert mine["id"] != theirs["id"] and mine["claimed_by"] == "annie"
    api.force_authenticate(annotator)
    api.post(
        f"{base(project)}{mine['id']}/decisions/",
        {"action": "reject", "expected_version": mine["version"]},
        format="json",
    )
    undone = api.post(base(project) + "undo/")
    assert undone.status_code == 200 and undone.json()["status"] == "suggested"
    assert api.post(base(project) + "undo/").status_code == 204


def test_preview_endpoint(api, project, examples, annotator):
    api.force_authenticate(annotator)
    response = api.post(
        base(project) + "preview/",
        {"definition": {"kind": "keyword", "words": ["song"], "label": 0}},
        format="json",
    )
    data = response.json()
    assert data["pool_matches"] == 2 and data["dev_matches"] == 1 and data["error"] == ""
    assert "<mark>song</mark>" in data["samples"][0]["html"]
    bad = api.post(
        base(project) + "preview/", {"definition": {"kind": "nope"}}, format="json"
    ).json()
    assert "rule kind must be one of" in bad["error"]


def test_only_admins_delete_and_outsiders_see_nothing(
    api, project, suggestions, annotator, admin_user, outsider
):
    url = f"{base(project)}{suggestions[0].pk}/"
    api.force_authenticate(annotator)
    assert api.delete(url).status_code == 403
    api.force_authenticate(outsider)
    for method, path in [("get", url), ("get", base(project)), ("post", base(project) + "next/")]:
        assert getattr(api, method)(path).status_code == 404
    api.force_authenticate(admin_user)
    assert api.delete(url).status_code == 204
    assert not Rule.objects.filter(pk=suggestions[0].pk).exists()


def test_preview_endpoint_says_when_the_cap_stopped_it(
    api, project, examples, annotator, settings, monkeypatch
):
    settings.FRUGAL_PREVIEW_MAX_BYTES = 0
    monkeypatch.setattr("models.prboost.matching.PER_TEXT_BLOCK", 1)
    api.force_authenticate(annotator)
    data = api.post(
        base(project) + "preview/",
        {"definition": {"kind": "regex", "pattern": "(?s).*e", "flags": "", "label": 0}},
        format="json",
    ).json()
    assert data["stopped_after"] is not None
    assert data["notice"].startswith(f"stopped after {data['stopped_after']:,} examples")


def test_fifty_thousand_keywords_are_refused_at_once_with_a_clear_message(
    api, project, examples, annotator
):
    api.force_authenticate(annotator)
    words = [f"w{i}" for i in range(50_000)]
    started = time.perf_counter()
    data = api.post(
        base(project) + "preview/",
        {"definition": {"kind": "keyword", "words": words, "label": 0}},
        format="json",
    ).json()
    assert time.perf_counter() - started < 2.0
    assert "50,000 words" in data["error"] and "at most 100" in data["error"]
    # Duplicates count once (500 words as given, 2 different).
    data = api.post(
        base(project) + "preview/",
        {"definition": {"kind": "keyword", "words": ["song", "nice"] * 250, "label": 0}},
        format="json",
    ).json()
    assert data["error"] == "" and data["pool_matches"] >= 2


def test_a_decision_costs_a_bounded_number_of_queries(
    api, project, suggestions, annotator, django_assert_max_num_queries
):
    """The request annotators make most (issue 13 load check). Counted beyond authentication:
    the project with the caller's role (one query), the rule, the write (one statement on
    PostgreSQL, a transaction on SQLite); the automatic-next-round check reuses the project in
    hand instead of reading it again."""
    from django.db import connection

    budget = 4 if connection.vendor == "postgresql" else 7  # + BEGIN, SAVEPOINT, RELEASE
    api.force_authenticate(annotator)
    claimed = api.post(f"{base(project)}next/").json()
    url = f"{base(project)}{claimed['id']}/decisions/"
    with django_assert_max_num_queries(budget) as captured:
        response = api.post(
            url, {"action": "accept", "expected_version": claimed["version"]}, format="json"
        )
    assert response.status_code == 200 and response.json()["rule"]["status"] == "accepted"
    assert Rule.objects.get(pk=claimed["id"]).status == RuleStatus.ACCEPTED
    reads_of_the_project = [
        q["sql"] for q in captured.captured_queries if 'FROM "projects_project"' in q["sql"]
    ]
    assert len(reads_of_the_project) <= 2  # the archived check, the project with the role
