"""POST /api/v1/projects/{id}/predict: members get the serving student's labels; everyone else
and every malformed batch gets a clear refusal."""

import pytest

from apps.distill import services
from apps.distill.api import MAX_ITEMS
from apps.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def served(spam_project, fast_params):
    services.run_distillation(project=spam_project, params={**fast_params, "losses": ["kd"]})
    return spam_project


def _url(project) -> str:
    return f"/api/v1/projects/{project.pk}/predict"


def _post(client, project, body):
    return client.post(_url(project), body, content_type="application/json")


def test_the_permission_walk(client, served, admin_user, annotator, outsider):
    body = {"texts": ["free money click here"]}
    assert _post(client, served, body).status_code in (401, 403)  # anonymous
    client.force_login(outsider)
    assert _post(client, served, body).status_code == 404  # the project does not leak
    assert _post(client, Project(pk=999_999), body).status_code == 404
    client.force_login(annotator)
    ok = _post(client, served, body)
    assert ok.status_code == 200
    client.force_login(admin_user)
    assert _post(client, served, body).status_code == 200
    assert client.get(_url(served)).status_code == 405


def test_members_get_labels_and_probabilities(client, served, annotator):
    client.force_login(annotator)
    data = _post(client, served, {"texts": ["free money click here", "nice guitar solo"]}).json()
    assert data["labels"] == ["HAM", "SPAM"]
    assert len(data["predictions"]) == 2
    for p in data["predictions"]:
        assert p["label"] in ("HAM", "SPAM")
        assert p["label"] == data["labels"][p["label_index"]]
        assert abs(sum(p["probabilities"]) - 1) < 1e-4
        assert p["confidence"] == pytest.approx(max(p["probabilities"]), abs=1e-5)
    assert data["student"]["loss"] == "kd"


def test_relation_examples_are_entity_marked(client, served, annotator):
    client.force_login(annotator)
    example = {
        "text": "the cat sat on the mat",
        "entities": [
            {"text": "cat", "start": 4, "end": 7},
            {"text": "mat", "start": 19, "end": 22},
        ],
    }
    ok = _post(client, served, {"examples": [example]})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
    bad = _post(client, served, {"examples": [{**example, "entities": example["entities"][:1]}]})
    assert bad.status_code == 400
    assert "two entity mentions" in bad.content.decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": []}, "empty"),
        ({"texts": ["a"] * (MAX_ITEMS + 1)}, f"at most {MAX_ITEMS}"),
        ({"sentences": ["a"]}, "Unknown field"),
        ({}, "exactly one"),
        ({"texts": ["a"], "examples": []}, "exactly one"),
        ({"texts": "free money"}, "list"),
        ({"texts": ["x" * 6000]}, "5000"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_batches_get_a_clear_400(client, served, annotator, body, message):
    client.force_login(annotator)
    response = _post(client, served, body)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_no_serving_student_is_a_409_with_a_reason(client, spam_project, annotator):
    client.force_login(annotator)
    response = _post(client, spam_project, {"texts": ["hello"]})
    assert response.status_code == 409
    assert "run a distillation" in response.json()["detail"]
