"""Pages and API of preference projects: who may see and do what (non-members get 404, members
read, admins launch and import), bad requests get clear messages."""

import pytest
from django.urls import reverse

from apps.accounts.services import create_api_token
from apps.alignment import services
from apps.alignment.models import PreferencePair
from apps.jobs.models import Job
from tests.alignment.conftest import make_pairs

pytestmark = pytest.mark.django_db

PAGES = ["weights", "rejudge", "annotate", "agreement", "export"]
API = ["pairs/", "pairs/top/", "pairs/export/", "reward-model/"]


def page_urls(project):
    return [reverse(f"alignment:{name}", args=[project.pk]) for name in PAGES] + [
        reverse("projects:dashboard", args=[project.pk])
    ]


def test_permission_walk(client, pref_project, pairs, pref_admin, pref_annotator, outsider):
    urls = page_urls(pref_project)
    api = [f"/api/v1/projects/{pref_project.pk}/{p}" for p in API]
    score = f"/api/v1/projects/{pref_project.pk}/reward-model/score/"
    before = list(PreferencePair.objects.values_list("id", "chosen", "split", "status"))

    # anonymous: pages go to login, the API refuses
    for url in urls:
        assert client.get(url).status_code == 302
    for url in api:
        assert client.get(url).status_code in (401, 403)
    assert client.post(score, {}, content_type="application/json").status_code in (401, 403)

    # a stranger: 404 everywhere, also for writes
    client.force_login(outsider)
    for url in urls + api:
        assert client.get(url).status_code == 404, url
    for name in ("launch", "import", "rejudge", "annotate"):
        url = reverse(f"alignment:{name}", args=[pref_project.pk])
        assert (
            client.post(
                url,
                {"action": "weights", "decision": "flip", "pair_id": pairs[0].pk, "side": "left"},
            ).status_code
            == 404
        )
    assert (
        client.post(
            score, {"prompts": ["a"], "responses": ["b"]}, content_type="application/json"
        ).status_code
        == 404
    )
    assert list(PreferencePair.objects.values_list("id", "chosen", "split", "status")) == before
    assert not Job.objects.exists()

    # an annotator: reads everything, may not launch or import
    client.force_login(pref_annotator)
    for url in urls:
        assert client.get(url).status_code == 200, url
    for url in api[:3]:
        assert client.get(url).status_code == 200, url
    assert client.get(api[3]).status_code == 409  # no model yet: said so
    assert (
        client.post(
            reverse("alignment:launch", args=[pref_project.pk]), {"action": "weights"}
        ).status_code
        == 403
    )
    assert client.get(reverse("alignment:import", args=[pref_project.pk])).status_code == 403
    assert not Job.objects.exists()


def test_other_project_types_show_an_empty_state_and_refuse_writes(client, project, admin_user):
    client.force_login(admin_user)
    page = client.get(reverse("alignment:weights", args=[project.pk]))
    assert page.status_code == 200 and "not a preference project" in page.content.decode()
    assert client.get(f"/api/v1/projects/{project.pk}/pairs/").json()["count"] == 0
    launch = reverse("alignment:launch", args=[project.pk])
    assert client.post(launch, {"action": "weights"}).status_code == 404
    rejudge = reverse("alignment:rejudge", args=[project.pk])
    assert client.post(rejudge, {"decision": "flip", "pair_id": 1}).status_code == 404
    score = f"/api/v1/projects/{project.pk}/reward-model/score/"
    body = {"prompts": ["a"], "responses": ["b"]}
    assert client.post(score, body, content_type="application/json").status_code == 404


def test_admin_launches_weight_and_training_jobs(client, pref_project, pairs, pref_admin, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # only the job rows are under test here
    client.force_login(pref_admin)
    url = reverse("alignment:launch", args=[pref_project.pk])
    from unittest import mock

    with mock.patch("apps.jobs.services.enqueue_job"):
        r = client.post(
            url, {"action": "weights", "weights": "free", "method": "lookahead", "stage2": "on"}
        )
        assert r.status_code == 302
        r = client.post(url, {"action": "train", "fraction": "0.25", "weighted": "on"})
        r = client.post(url, {"action": "weights"})  # boxes unchecked: stage 1 only
        r = client.post(url, {"action": "train", "fraction": "7"})
    jobs = list(Job.objects.order_by("id"))
    kinds = [j.kind for j in jobs]
    assert kinds == ["dorm_compute_weights", "dorm_train_reward_model", "dorm_compute_weights"]
    assert jobs[0].params["stage2"] is True and jobs[2].params["stage2"] is False
    assert jobs[0].params["weights"] == "free" and jobs[0].params["method"] == "lookahead"
    assert jobs[1].params["fraction"] == 0.25
    assert jobs[0].queue in ("cpu", "gpu")
    page = client.get(reverse("alignment:weights", args=[pref_project.pk]))
    assert "must be a number above 0 and at most 1" in page.content.decode()


def test_import_page_shows_problems_and_imports_nothing(client, pref_project, pref_admin):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(pref_admin)
    url = reverse("alignment:import", args=[pref_project.pk])
    bad = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "p", "chosen": "a"}\n')
    r = client.post(url, {"file": bad, "split": "pool"})
    assert r.status_code == 400
    assert (
        "pairs.jsonl, line 1, column &#x27;rejected&#x27;: the rejected is missing or empty"
        in r.content.decode()
    )
    assert not PreferencePair.objects.exists()
    good = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    r = client.post(url, {"file": good, "split": "dev"})
    assert r.status_code == 302
    assert PreferencePair.objects.get().split == "dev"


def test_token_api_pairs_top_export_and_score(client, pref_project, pref_annotator, fake_encoder):
    make_pairs(pref_project, flip_every=5)
    services.train_reward_model(
        project=pref_project, params={"fraction": 1.0, "weighted": False, "reward_model": "head"}
    )
    PreferencePair.objects.filter(split="pool").update(weight=0.5)
    PreferencePair.objects.filter(external_id="p3").update(weight=0.9)
    token = create_api_token(user=pref_annotator, name="t")[1]
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    base = f"/api/v1/projects/{pref_project.pk}"
    page = client.get(f"{base}/pairs/?page_size=10&split=pool", **auth).json()
    assert page["count"] == 40 and len(page["results"]) == 10
    top = client.get(f"{base}/pairs/top/?fraction=0.05", **auth).json()
    assert [p["id"] for p in top["results"]][0] == "p3" and top["count"] == 2
    assert client.get(f"{base}/pairs/top/?fraction=2", **auth).status_code == 400
    export = client.get(f"{base}/pairs/export/?layout=trl", **auth)
    body = b"".join(export.streaming_content).decode()
    assert body.count("\n") == 60 and '"weight"' in body
    assert client.get(f"{base}/pairs/export/?layout=xml", **auth).status_code == 400
    model = client.get(f"{base}/reward-model/", **auth)
    assert model.status_code == 200 and len(b"".join(model.streaming_content)) > 100
    ok = client.post(
        f"{base}/reward-model/score/",
        {
            "prompts": ["Human: hi?\n\nAssistant:", "Human: hi?\n\nAssistant:"],
            "responses": ["Please talk to a professional about this.", "Insult them loudly."],
        },
        content_type="application/json",
        **auth,
    )
    assert ok.status_code == 200 and len(ok.json()["rewards"]) == 2
    bad = client.post(
        f"{base}/reward-model/score/",
        {"prompts": ["a"], "responses": []},
        content_type="application/json",
        **auth,
    )
    assert bad.status_code == 400 and "same length" in bad.json()["detail"]
    bad = client.post(
        f"{base}/reward-model/score/", {"prompts": "a"}, content_type="application/json", **auth
    )
    assert bad.status_code == 400 and "must be lists" in bad.json()["detail"]


def test_score_without_a_model_is_a_conflict(client, pref_project, pref_annotator):
    client.force_login(pref_annotator)
    r = client.post(
        f"/api/v1/projects/{pref_project.pk}/reward-model/score/",
        {"prompts": ["a"], "responses": ["b"]},
        content_type="application/json",
    )
    assert r.status_code == 409 and "No reward model" in r.json()["detail"]


def test_admins_see_how_many_rejudged_pairs_were_flipped(
    client, pref_project, pairs, pref_admin, pref_annotator
):
    PreferencePair.objects.filter(split="pool").update(weight=0.5)
    services.rejudge(
        project=pref_project, pair_id=pairs[0].pk, user=pref_annotator, decision="flip"
    )
    services.rejudge(
        project=pref_project, pair_id=pairs[1].pk, user=pref_annotator, decision="confirm"
    )
    client.force_login(pref_annotator)
    page = client.get(reverse("alignment:rejudge", args=[pref_project.pk])).content.decode()
    assert 'id="rejudge-flipped"' not in page
    client.force_login(pref_admin)
    page = client.get(reverse("alignment:rejudge", args=[pref_project.pk])).content.decode()
    assert '<strong id="rejudge-flipped">1</strong>' in page
    dash = client.get(reverse("projects:dashboard", args=[pref_project.pk])).content.decode()
    assert "1 flipped" in dash and "Review rules" not in dash and "Gold labeling" not in dash


def test_preference_projects_need_no_labels(client, make_user):
    staff = make_user("staffer", is_staff=True)
    client.force_login(staff)
    r = client.post(
        "/api/v1/projects/",
        {"name": "Prefs", "task_type": "preference"},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    assert r.json()["labels"] == []
    r = client.post(
        "/api/v1/projects/",
        {"name": "Cls", "task_type": "text_classification"},
        content_type="application/json",
    )
    assert r.status_code == 400


def test_create_page_makes_a_preference_project_without_labels(client, make_user):
    staff = make_user("staffer2", is_staff=True)
    client.force_login(staff)
    r = client.post(reverse("projects:create"), {"name": "Pairs", "task_type": "preference"})
    assert r.status_code == 302, r.content.decode()[-2000:]
    dash = client.get(r["Location"]).content.decode()
    assert "Pairs &amp; weights" in dash and "Import pairs" in dash
    r = client.post(reverse("projects:create"), {"name": "Cls", "task_type": "text_classification"})
    assert r.status_code == 400 and "This field is required" in r.content.decode()
