"""Examples API: filters, cursor pages, one example, setting gold labels, and who may do what."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.datasets.models import Example
from apps.projects.models import Membership, Project, Role


@pytest.fixture(autouse=True)
def clear_claims():
    cache.clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def examples(project):
    rows = [
        Example(
            project=project,
            external_id=f"e{i}",
            text=("free money " if i % 3 == 0 else "nice song ") + str(i),
            split="dev" if i < 6 else "pool",
            gold_label=(i % 2) if i < 3 else None,
            label=i % 2,
            confidence=i / 30,
            label_source="rules" if i % 2 else "model",
            votes={"external": [i % 2, -1]},
        )
        for i in range(30)
    ]
    Example.objects.bulk_create(rows)
    return list(Example.objects.filter(project=project).order_by("id"))


def list_url(project):
    return f"/api/v1/projects/{project.pk}/examples/"


def detail_url(project, example):
    return f"/api/v1/projects/{project.pk}/examples/{example.pk}/"


def walk(api, url, **params):
    """Every row of every cursor page."""
    rows, response = [], api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        rows.extend(response.json()["results"])
        if not response.json()["next"]:
            return rows
        response = api.get(response.json()["next"])


@pytest.mark.django_db
def test_cursor_pages_return_every_example_once_in_id_order(api, project, annotator, examples):
    api.force_authenticate(annotator)
    rows = walk(api, list_url(project), page_size=7)
    assert [row["id"] for row in rows] == [e.pk for e in examples]
    first = rows[0]
    assert first["text"] == "free money 0" and first["gold_label_name"] == "HAM"
    assert first["votes"] == {"external": [0, -1]}
    assert set(first) >= {"entities", "confidence", "label_source", "gold_labeled_by"}


@pytest.mark.django_db
def test_list_filters_match_the_browser_filters(api, project, annotator, examples):
    api.force_authenticate(annotator)

    def ids(**params):
        return [row["external_id"] for row in walk(api, list_url(project), **params)]

    assert ids(split="dev") == [f"e{i}" for i in range(6)]
    assert ids(gold_label="none", split="dev") == ["e3", "e4", "e5"]
    assert ids(gold_label="1") == ["e1"]
    assert ids(label_source="rules", min_confidence="0.8") == ["e25", "e27", "e29"]
    assert ids(max_confidence="0.05") == ["e0", "e1"]
    assert ids(search="money", split="pool") == [
        "e6",
        "e9",
        "e12",
        "e15",
        "e18",
        "e21",
        "e24",
        "e27",
    ]


@pytest.mark.django_db
def test_bad_filters_get_400_with_the_reason(api, project, annotator, examples):
    api.force_authenticate(annotator)
    response = api.get(list_url(project), {"split": "everything"})
    assert response.status_code == 400
    assert "split" in response.json()["error"]["details"]
    response = api.get(list_url(project), {"min_confidence": "2"})
    assert response.status_code == 400


@pytest.mark.django_db
def test_annotator_reads_one_example_and_sets_its_gold_label(api, project, annotator, examples):
    target = examples[4]
    api.force_authenticate(annotator)
    response = api.get(detail_url(project, target))
    assert response.status_code == 200 and response.json()["external_id"] == "e4"
    response = api.patch(detail_url(project, target), {"gold_label": 1}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["gold_label"] == 1
    assert response.json()["gold_labeled_by"] == "annie"
    target.refresh_from_db()
    assert target.gold_label == 1


@pytest.mark.django_db
def test_patch_moves_a_pool_example_into_dev(api, project, annotator, examples):
    target = examples[10]
    api.force_authenticate(annotator)
    response = api.patch(
        detail_url(project, target), {"gold_label": 0, "split": "dev"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["split"] == "dev"


@pytest.mark.django_db
def test_patch_refuses_bad_labels_and_other_fields(api, project, annotator, examples):
    target = examples[4]
    api.force_authenticate(annotator)
    for body in ({"gold_label": 2}, {"gold_label": "x"}, {"gold_label": 0, "text": "new text"}):
        response = api.patch(detail_url(project, target), body, format="json")
        assert response.status_code == 400, body
    target.refresh_from_db()
    assert target.gold_label is None and target.text == "nice song 4"


@pytest.mark.django_db
def test_someone_elses_label_gives_409_and_only_admins_may_overwrite(
    api, project, annotator, admin_user, examples
):
    target = examples[1]  # imported gold label 1
    api.force_authenticate(annotator)
    response = api.patch(detail_url(project, target), {"gold_label": 0}, format="json")
    assert response.status_code == 409
    assert "already has the gold label" in response.json()["error"]["message"]
    response = api.patch(
        detail_url(project, target), {"gold_label": 0, "overwrite": True}, format="json"
    )
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.gold_label == 1
    api.force_authenticate(admin_user)
    response = api.patch(
        detail_url(project, target), {"gold_label": 0, "overwrite": True}, format="json"
    )
    assert response.status_code == 200
    target.refresh_from_db()
    assert target.gold_label == 0


@pytest.mark.django_db
def test_anonymous_gets_401_everywhere(api, project, examples):
    assert api.get(list_url(project)).status_code == 401
    assert api.get(detail_url(project, examples[0])).status_code == 401
    response = api.patch(detail_url(project, examples[0]), {"gold_label": 0}, format="json")
    assert response.status_code == 401


@pytest.mark.django_db
def test_outsider_gets_404_and_cannot_label(api, project, outsider, examples):
    api.force_authenticate(outsider)
    assert api.get(list_url(project)).status_code == 404
    assert api.get(detail_url(project, examples[0])).status_code == 404
    response = api.patch(detail_url(project, examples[4]), {"gold_label": 0}, format="json")
    assert response.status_code == 404
    examples[4].refresh_from_db()
    assert examples[4].gold_label is None


@pytest.mark.django_db
def test_example_of_another_project_is_404(api, project, annotator, examples):
    other = Project.objects.create(name="Other", labels=["A"])
    Membership.objects.create(project=other, user=annotator, role=Role.ANNOTATOR)
    api.force_authenticate(annotator)
    assert api.get(f"/api/v1/projects/{other.pk}/examples/{examples[0].pk}/").status_code == 404
    assert api.get(f"/api/v1/projects/{other.pk}/examples/").json()["results"] == []


@pytest.mark.django_db
def test_examples_cannot_be_deleted_or_replaced_by_anyone(
    api, project, annotator, admin_user, examples
):
    for user in (annotator, admin_user):
        api.force_authenticate(user)
        assert api.delete(detail_url(project, examples[0])).status_code == 405
        assert api.put(detail_url(project, examples[0]), {}, format="json").status_code == 405
        assert api.post(list_url(project), {}, format="json").status_code == 405
    assert Example.objects.filter(pk=examples[0].pk).exists()


@pytest.mark.django_db
def test_token_authentication_reads_examples(api, project, annotator, examples):
    from apps.accounts.services import create_api_token

    _, secret = create_api_token(user=annotator, name="script")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api.get(list_url(project), {"page_size": 5})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 5


@pytest.mark.django_db
def test_search_cursor_pages_go_forwards_and_back_without_gaps(api, project, annotator, examples):
    api.force_authenticate(annotator)
    expected = [e.external_id for e in examples if e.text.startswith("free money")]
    rows = walk(api, list_url(project), search="money", page_size=3)
    assert [row["external_id"] for row in rows] == expected
    # From the last page back to the first through the "previous" links.
    response = api.get(list_url(project), {"search": "money", "page_size": 3})
    while response.json()["next"]:
        response = api.get(response.json()["next"])
    back = [row["external_id"] for row in response.json()["results"]]
    while response.json()["previous"]:
        response = api.get(response.json()["previous"])
        back = [row["external_id"] for row in response.json()["results"]] + back
    assert back == expected
