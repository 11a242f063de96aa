"""The gold labeling page: label, skip and undo with and without htmx, labeling pool examples
into dev, progress, and the message a second annotator gets instead of an overwrite."""

import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from apps.datasets import services
from apps.datasets.models import Example
from apps.projects.models import Membership, Role

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def clear_claims():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def dev(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"d{i}", text=f"dev text <{i}>", split="dev")
        for i in range(3)
    )
    return list(Example.objects.filter(project=project, split="dev"))


@pytest.fixture
def url(project):
    return reverse("datasets:label", args=[project.pk])


def shown_example(response) -> Example | None:
    """The example on the card, read from the HTML (fragments carry no test context)."""
    match = re.search(r'data-example-id="(\d+)"', response.content.decode())
    return Example.objects.get(pk=int(match.group(1))) if match else None


def progress(response) -> tuple[int, int]:
    body = response.content.decode()
    labeled = re.search(r'id="progress-labeled">(\d+)<', body).group(1)
    total = re.search(r'id="progress-total">(\d+)<', body).group(1)
    return int(labeled), int(total)


@pytest.mark.django_db
def test_page_shows_an_unlabeled_dev_example_with_label_buttons_and_progress(
    client, annotator, dev, url
):
    client.force_login(annotator)
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    assert shown_example(response) in dev
    assert 'data-key="1"' in body and "HAM" in body and 'data-key="2"' in body and "SPAM" in body
    assert "&lt;" in body  # the text is escaped
    assert response.context["progress"] == {
        "labeled": 0,
        "total": 3,
        "remaining": 3,
        "percent": 0,
    }
    # A reload shows the same example (it is claimed for this user).
    assert shown_example(client.get(url)).pk == shown_example(response).pk


@pytest.mark.django_db
def test_htmx_label_saves_and_swaps_in_the_next_example(client, annotator, dev, url):
    client.force_login(annotator)
    first = shown_example(client.get(url))
    response = client.post(
        url, {"example_id": first.pk, "label": "1", "split": "dev"}, headers=HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="label-card"')
    first.refresh_from_db()
    assert first.gold_label == 1 and first.gold_labeled_by == annotator
    following = shown_example(response)
    assert following is not None and following.pk != first.pk
    assert progress(response) == (1, 3)
    assert 'data-key="u" disabled' not in body


@pytest.mark.django_db
def test_undo_restores_the_last_label_and_shows_that_example_again(client, annotator, dev, url):
    client.force_login(annotator)
    first = shown_example(client.get(url))
    client.post(url, {"example_id": first.pk, "label": "0", "split": "dev"}, headers=HTMX)
    response = client.post(url, {"action": "undo", "split": "dev"}, headers=HTMX)
    first.refresh_from_db()
    assert first.gold_label is None
    assert shown_example(response).pk == first.pk
    assert "Undone" in response.content.decode()
    again = client.post(url, {"action": "undo", "split": "dev"}, headers=HTMX)
    assert "Nothing to undo" in again.content.decode()


@pytest.mark.django_db
def test_skip_moves_on_and_the_skipped_example_comes_back_on_request(client, annotator, dev, url):
    client.force_login(annotator)
    skipped = []
    response = client.get(url)
    for _ in range(3):
        example = shown_example(response)
        skipped.append(example.pk)
        response = client.post(
            url, {"example_id": example.pk, "action": "skip", "split": "dev"}, headers=HTMX
        )
    assert sorted(skipped) == sorted(e.pk for e in dev)
    assert shown_example(response) is None
    assert "except the 3 you skipped" in response.content.decode()
    response = client.post(
        url, {"example_id": "", "action": "reset_skips", "split": "dev"}, headers=HTMX
    )
    assert shown_example(response) is not None
    assert Example.objects.filter(gold_label__isnull=False).count() == 0


@pytest.mark.django_db
def test_without_javascript_a_post_redirects_back_to_the_page(client, annotator, dev, url):
    client.force_login(annotator)
    first = shown_example(client.get(url, {"split": "dev"}))
    response = client.post(url, {"example_id": first.pk, "label": "0", "split": "dev"})
    assert response.status_code == 303
    assert response["Location"] == f"{url}?split=dev"
    first.refresh_from_db()
    assert first.gold_label == 0
    # Undo without JS shows the undone example after the redirect.
    response = client.post(url, {"action": "undo", "split": "dev"}, follow=True)
    assert shown_example(response).pk == first.pk
    assert "Undone" in response.content.decode()


@pytest.mark.django_db
def test_pool_examples_are_labeled_into_the_chosen_split(client, project, annotator, url):
    Example.objects.create(project=project, external_id="p1", text="pool one")
    client.force_login(annotator)
    response = client.get(url, {"split": "test", "source": "pool"})
    example = shown_example(response)
    assert example.split == "pool"
    response = client.post(
        url,
        {"example_id": example.pk, "label": "1", "split": "test", "source": "pool"},
        headers=HTMX,
    )
    example.refresh_from_db()
    assert (example.split, example.gold_label) == ("test", 1)
    assert progress(response) == (1, 1)
    client.post(url, {"action": "undo", "split": "test", "source": "pool"}, headers=HTMX)
    example.refresh_from_db()
    assert (example.split, example.gold_label) == ("pool", None)


@pytest.mark.django_db
def test_second_annotator_is_told_the_example_was_already_labeled(
    client, project, annotator, make_user, dev, url
):
    bob = make_user("bob")
    Membership.objects.create(project=project, user=bob, role=Role.ANNOTATOR)
    target = dev[0]
    # Annie labels the example Bob has on screen.
    services.set_gold_label(example=target, label=1, user=annotator)
    client.force_login(bob)
    response = client.post(
        url, {"example_id": target.pk, "label": "0", "split": "dev"}, headers=HTMX
    )
    body = response.content.decode()
    assert "already has the gold label SPAM" in body and "annie" in body
    target.refresh_from_db()
    assert target.gold_label == 1 and target.gold_labeled_by == annotator


@pytest.mark.django_db
def test_out_of_range_label_is_refused_with_a_message(client, annotator, dev, url):
    client.force_login(annotator)
    example = shown_example(client.get(url))
    response = client.post(
        url, {"example_id": example.pk, "label": "5", "split": "dev"}, headers=HTMX
    )
    assert "out of range" in response.content.decode()
    example.refresh_from_db()
    assert example.gold_label is None
    assert shown_example(response).pk == example.pk


@pytest.mark.django_db
def test_labeling_needs_csrf_token(project, annotator, dev, url):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    response = client.post(url, {"example_id": dev[0].pk, "label": "0", "split": "dev"})
    assert response.status_code == 403
    dev[0].refresh_from_db()
    assert dev[0].gold_label is None


@pytest.mark.django_db
def test_outsider_cannot_label(client, outsider, dev, url):
    client.force_login(outsider)
    response = client.post(url, {"example_id": dev[0].pk, "label": "0", "split": "dev"})
    assert response.status_code == 404
    dev[0].refresh_from_db()
    assert dev[0].gold_label is None


@pytest.mark.django_db
def test_detail_page_labels_a_pool_example_into_test(client, project, annotator):
    example = Example.objects.create(project=project, external_id="p", text="pool text")
    client.force_login(annotator)
    url = reverse("datasets:example_detail", args=[project.pk, example.pk])
    response = client.post(url, {"label": "1", "split": "test"}, follow=True)
    assert "Gold label set to SPAM" in response.content.decode()
    example.refresh_from_db()
    assert (example.split, example.gold_label, example.gold_labeled_by) == ("test", 1, annotator)


@pytest.mark.django_db
def test_detail_page_does_not_overwrite_anothers_label(client, project, annotator, admin_user):
    example = Example.objects.create(
        project=project, external_id="g", text="t", split="dev", gold_label=0
    )
    client.force_login(annotator)
    url = reverse("datasets:example_detail", args=[project.pk, example.pk])
    response = client.post(url, {"label": "1"}, follow=True)
    assert "already has the gold label HAM" in response.content.decode()
    response = client.post(url, {"label": "1", "overwrite": "on"}, follow=True)
    assert "Only project admins" in response.content.decode()
    example.refresh_from_db()
    assert example.gold_label == 0
    client.force_login(admin_user)
    client.post(url, {"label": "1", "overwrite": "on"})
    example.refresh_from_db()
    assert example.gold_label == 1 and example.gold_labeled_by == admin_user


@pytest.mark.django_db
def test_detail_page_shows_the_current_gold_label_as_the_selected_button(
    client, project, annotator
):
    import re

    example = Example.objects.create(
        project=project, external_id="g", text="t", split="dev", gold_label=0
    )
    client.force_login(annotator)
    html = client.get(reverse("datasets:example_detail", args=[project.pk, example.pk])).content
    buttons = re.findall(r'<button type="submit" name="label" value="(\d)"([^>]*)>', html.decode())
    attrs = dict(buttons)
    # HAM (the gold label) is the filled, pressed button; SPAM is outlined.
    assert 'aria-pressed="true"' in attrs["0"] and "secondary" not in attrs["0"]
    assert 'aria-pressed="false"' in attrs["1"] and 'class="secondary"' in attrs["1"]


@pytest.mark.django_db
def test_u_after_a_skip_brings_the_skipped_example_back_as_in_review(client, annotator, dev, url):
    client.force_login(annotator)
    first = shown_example(client.get(url))
    response = client.post(
        url, {"example_id": first.pk, "label": "0", "split": "dev"}, headers=HTMX
    )
    second = shown_example(response)
    response = client.post(
        url, {"example_id": second.pk, "action": "skip", "split": "dev"}, headers=HTMX
    )
    assert shown_example(response).pk not in (first.pk, second.pk)
    # u undoes the skip (the label stays) ...
    response = client.post(url, {"action": "undo", "split": "dev"}, headers=HTMX)
    assert shown_example(response).pk == second.pk
    assert "Skip undone" in response.content.decode()
    first.refresh_from_db()
    assert first.gold_label == 0
    # ... and the next u undoes the label before it.
    response = client.post(url, {"action": "undo", "split": "dev"}, headers=HTMX)
    first.refresh_from_db()
    assert first.gold_label is None and shown_example(response).pk == first.pk


@pytest.fixture
def scored_pool(project):
    """Pool examples with a current label and margin, plus one never scored."""
    margins = [0.9, 0.02, 0.4, 0.15, 0.02]
    Example.objects.bulk_create(
        [
            Example(
                project=project,
                external_id=f"p{i}",
                text=f"pool text {i}",
                split="pool",
                label=1,
                confidence=(1 + m) / 2,
                margin=m,
                label_source="model",
            )
            for i, m in enumerate(margins)
        ]
        + [Example(project=project, external_id="unscored", text="no label yet", split="pool")]
    )
    return {e.external_id: e for e in Example.objects.filter(project=project)}


@pytest.mark.django_db
def test_least_sure_queue_hands_out_the_smallest_margin_first_and_shows_the_order(
    client, annotator, scored_pool, url
):
    client.force_login(annotator)
    query = {"split": "dev", "source": "least_sure"}
    response = client.get(url, query)
    body = response.content.decode()
    # p1 and p4 tie at margin 0.02: the lower id first
    assert shown_example(response) == scored_pool["p1"]
    assert 'id="queue-why"' in body and "0.020" in body and "SPAM" in body
    queue = re.search(r'<ol class="queue-next"[^>]*>(.*?)</ol>', body, re.S).group(1)
    assert re.findall(r">(p\d)</a>", queue) == ["p4", "p3", "p2", "p0"]
    assert "1 pool examples have no model or rule label yet" in body

    # labeling moves it into dev; the next least sure comes next, keyboard-first as ever
    response = client.post(
        url, {**query, "example_id": scored_pool["p1"].pk, "label": 0}, headers=HTMX
    )
    moved = Example.objects.get(pk=scored_pool["p1"].pk)
    assert moved.split == "dev" and moved.gold_label == 0
    assert shown_example(response) == scored_pool["p4"]
    assert 'name="source" value="least_sure"' in response.content.decode()

    # a skip goes on to the next in order, not back to a random pool example
    response = client.post(
        url, {**query, "example_id": scored_pool["p4"].pk, "action": "skip"}, headers=HTMX
    )
    assert shown_example(response) == scored_pool["p3"]


@pytest.mark.django_db
def test_least_sure_queue_passes_over_an_example_another_annotator_holds(
    client, project, annotator, admin_user, scored_pool
):
    services.claim_example(example_id=scored_pool["p1"].pk, user=admin_user)
    picked = services.next_example_to_label(
        project=project, user=annotator, split="dev", from_pool=True, least_sure=True
    )
    assert picked == scored_pool["p4"]


@pytest.mark.django_db
def test_least_sure_queue_says_when_nothing_is_scored(client, project, annotator, url):
    Example.objects.create(project=project, external_id="u", text="unscored", split="pool")
    client.force_login(annotator)
    body = client.get(url, {"split": "dev", "source": "least_sure"}).content.decode()
    assert 'id="label-done"' in body
    assert "The model has scored no pool example" in body
    assert "finalize or refresh labels to score them" in body


@pytest.mark.django_db
def test_labeling_from_the_pool_costs_a_bounded_number_of_queries(
    client, annotator, project, url, django_assert_max_num_queries
):
    """The busiest page of a labeling session (issue 13 load check): one label and the next
    card. The budget counts the session, the project with the role in one query, the overlap
    read once, the label's own transaction (no existence checks of the project and the
    labeler) and the progress in one pass; a regression adds queries to every label."""
    Example.objects.bulk_create(
        Example(project=project, external_id=f"p{i}", text=f"pool text {i}", split="pool")
        for i in range(30)
    )
    Example.objects.bulk_create(
        Example(project=project, external_id=f"d{i}", text=f"dev {i}", split="dev", gold_label=0)
        for i in range(4)
    )
    client.force_login(annotator)
    query = {"split": "dev", "source": "pool"}
    shown = shown_example(client.get(url, query, headers=HTMX))
    with django_assert_max_num_queries(18) as captured:
        response = client.post(url, {"example_id": shown.pk, "label": "1", **query}, headers=HTMX)
    sql = [q["sql"] for q in captured.captured_queries]
    assert response.status_code == 200
    shown.refresh_from_db()
    assert shown.split == "dev" and shown.gold_label == 1
    assert progress(response) == (5, 5)  # the counts see the label just made
    assert sum("COUNT(" in q.upper() for q in sql) == 2  # the progress, the pool left
    assert not any('FROM "projects_project" WHERE' in q and "SELECT 1" in q for q in sql)
