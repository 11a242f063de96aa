"""The examples browser: filters, search (PostgreSQL full text and SQLite), keyset pages,
escaping of highlighted text, the detail page and who may see them."""

import pytest
from django.db import connection
from django.urls import reverse

from apps.datasets import selectors
from apps.datasets.highlight import highlight_entities, highlight_terms
from apps.datasets.models import Example

TEXTS = [
    ("a", "pool", "Check out my channel for free videos", None, 1, 0.95, "rules"),
    ("b", "pool", "I love this song so much", None, 0, 0.80, "model"),
    ("c", "dev", "Subscribe to my channel please", 1, None, None, ""),
    ("d", "dev", "Great song, great memories", 0, 0, 0.55, "model"),
    ("e", "test", "Free iPhone giveaway, click the link", 1, 1, 0.99, "rules"),
    ("f", "pool", "The video was uploaded in 2014", None, None, None, ""),
]


@pytest.fixture
def examples(project):
    rows = [
        Example(
            project=project,
            external_id=ext,
            split=split,
            text=text,
            gold_label=gold,
            label=label,
            confidence=conf,
            label_source=source,
            votes={"external": [1, -1, 1]} if ext == "a" else None,
        )
        for ext, split, text, gold, label, conf, source in TEXTS
    ]
    Example.objects.bulk_create(rows)
    return {e.external_id: e for e in Example.objects.filter(project=project)}


def ids(queryset):
    return sorted(e.external_id for e in queryset)


@pytest.mark.django_db
def test_filters_narrow_by_split_gold_label_confidence_and_source(project, examples):
    def find(**kwargs):
        return ids(selectors.examples_for_project(project=project, **kwargs))

    assert find(split="dev") == ["c", "d"]
    assert find(gold_label=1) == ["c", "e"]
    assert find(gold_label="none") == ["a", "b", "f"]
    assert find(label="none") == ["c", "f"]
    assert find(label=1, split="pool") == ["a"]
    assert find(min_confidence=0.8) == ["a", "b", "e"]
    assert find(min_confidence=0.5, max_confidence=0.9) == ["b", "d"]
    assert find(label_source="rules") == ["a", "e"]
    assert find(label_source="none") == ["c", "f"]


@pytest.mark.django_db
def test_search_finds_words_phrases_and_excludes_negated_terms(project, examples):
    def find(search, **kwargs):
        return ids(selectors.examples_for_project(project=project, search=search, **kwargs))

    assert find("channel") == ["a", "c"]
    assert find("CHANNEL free") == ["a"]
    assert find('"great memories"') == ["d"]
    assert find("song -love") == ["d"]
    assert find("channel", split="dev") == ["c"]
    assert find("nothingmatchesthis") == []


@pytest.mark.django_db
def test_postgres_search_stems_words_and_uses_the_gin_index(project, examples):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL full-text search: run with DATABASE_URL=postgres://...")
    from apps.datasets import search_index

    search_index.index_project(project_id=project.pk)
    found = ids(selectors.examples_for_project(project=project, search="videos"))
    assert found == ["a", "f"]  # stemming: "videos" also finds "video"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'datasets_example'"
        )
        definitions = dict(cursor.fetchall())
    assert "gin (search_vector)" in definitions["example_search_vector_idx"]
    assert "WHERE (search_vector IS NULL)" in definitions["example_unindexed_idx"]
    assert "example_text_fts_idx" not in definitions  # the expression index is gone
    # The search condition alone, with scans that ignore it turned off: indexed rows come from
    # the GIN index, unindexed ones from the partial index, ORed.
    queryset = selectors._search_filter(Example.objects.order_by(), "channel")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_indexscan = off")
        plan = queryset.explain()
        cursor.execute("RESET enable_seqscan")
        cursor.execute("RESET enable_indexscan")
    assert "BitmapOr" in plan
    # The cheap NULL test guards the on-the-fly vector (OR terms are evaluated in order).
    sql = str(queryset.query)
    assert sql.index("IS NULL") < sql.index("to_tsvector")
    assert "example_search_vector_idx" in plan and "example_unindexed_idx" in plan


@pytest.mark.django_db
def test_keyset_pages_cover_every_example_once_in_both_directions(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=f"text {i}", split="pool")
        for i in range(23)
    )
    # Gaps in the ids, as after deletions.
    Example.objects.filter(external_id__in=["x3", "x4", "x17"]).delete()
    queryset = selectors.examples_for_project(project=project)
    expected = list(queryset.values_list("id", flat=True))

    seen, after, pages = [], None, []
    while True:
        page = selectors.keyset_page(queryset, after=after, size=5)
        pages.append(page)
        seen.extend(e.id for e in page.items)
        if not page.has_next:
            break
        after = page.next_after
    assert seen == expected
    assert len(seen) == len(set(seen)) == 20
    assert not pages[0].has_previous and pages[1].has_previous

    # Walking back from the last page gives the same pages in reverse.
    back, before = [], pages[-1].prev_before
    while before is not None:
        page = selectors.keyset_page(queryset, before=before, size=5)
        back = [e.id for e in page.items] + back
        before = page.prev_before
    assert back + [e.id for e in pages[-1].items] == expected


@pytest.mark.django_db
def test_keyset_page_after_a_deleted_row_neither_repeats_nor_skips(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text="t") for i in range(10)
    )
    queryset = selectors.examples_for_project(project=project)
    first = selectors.keyset_page(queryset, size=4)
    # The last row of the first page disappears before the next page is asked for.
    Example.objects.filter(pk=first.items[-1].pk).delete()
    second = selectors.keyset_page(queryset, after=first.next_after, size=4)
    all_ids = list(queryset.values_list("id", flat=True))
    assert [e.id for e in second.items] == all_ids[3:7]


@pytest.mark.django_db
def test_bounded_count_stops_at_the_cap(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text="t") for i in range(12)
    )
    queryset = selectors.examples_for_project(project=project)
    assert selectors.bounded_count(queryset, cap=20) == (12, True)
    assert selectors.bounded_count(queryset, cap=10) == (10, False)


def test_highlight_escapes_user_text_and_marks_terms():
    html = highlight_terms('<script>alert("x")</script> free <b>FREE</b>', ["free"])
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html
    assert "<mark>free</mark>" in html and "<mark>FREE</mark>" in html


def test_highlight_of_a_term_that_looks_like_markup_is_escaped_too():
    html = highlight_terms("a <img src=x onerror=alert(1)> b", ["<img"])
    assert "<img" not in html
    assert "<mark>&lt;img</mark>" in html


def test_highlight_cuts_long_text_around_the_first_match():
    text = "filler " * 100 + "needle here" + " tail" * 100
    html = highlight_terms(text, ["needle"], max_chars=80)
    assert "<mark>needle</mark>" in html
    assert html.startswith("…") and html.endswith("…")
    assert len(html) < 140


def test_entity_spans_are_marked_and_escaped():
    text = "<b>Aspirin</b> treats headache"
    html = highlight_entities(
        text,
        [{"text": "Aspirin", "start": 3, "end": 10}, {"text": "headache", "start": 22, "end": 30}],
    )
    assert '<mark class="entity entity-1" title="entity 1">Aspirin</mark>' in html
    assert '<mark class="entity entity-2" title="entity 2">headache</mark>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    # Spans outside the text are ignored, not an error.
    assert "mark" not in highlight_entities("short", [{"start": 3, "end": 99}])


@pytest.mark.django_db
def test_examples_page_shows_filtered_rows_with_escaped_highlights(client, project, annotator):
    Example.objects.create(
        project=project, external_id="evil", text="<script>alert(1)</script> free stuff"
    )
    Example.objects.create(project=project, external_id="ok", text="nothing to see")
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    page = client.get(url, {"search": "free"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)" not in body
    assert "<mark>free</mark>" in body
    assert "nothing to see" not in body
    assert 'id="example-filters"' in body  # the whole page, filter form included


@pytest.mark.django_db
def test_htmx_request_gets_only_the_results_fragment(client, project, annotator, examples):
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    response = client.get(url, {"split": "dev"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="examples-results"')
    assert "Subscribe to my channel" in body and "I love this song" not in body
    assert "HX-Request" in response["Vary"]
    # A history restore asks for the whole page.
    full = client.get(
        url,
        {"split": "dev"},
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert 'id="example-filters"' in full.content.decode()


@pytest.mark.django_db
def test_examples_page_links_to_next_page_keeping_filters(client, project, annotator):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=f"row {i}", split="pool")
        for i in range(60)
    )
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    first = client.get(url, {"split": "pool"})
    next_url = first.context["next_url"]
    assert "split=pool" in next_url and "after=" in next_url
    second = client.get(next_url)
    first_ids = {row["id"] for row in first.context["rows"]}
    second_ids = {row["id"] for row in second.context["rows"]}
    assert len(first_ids) == 50 and len(second_ids) == 10
    assert not first_ids & second_ids
    assert second.context["next_url"] is None and second.context["prev_url"]


@pytest.mark.django_db
def test_count_fragment_gives_the_exact_count_and_the_page_number(client, project, annotator):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=f"row {i}", split="pool")
        for i in range(1_120)
    )
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    first = client.get(url, {"split": "pool"})
    # The page itself stays cheap (capped count) and asks for the exact one after loading.
    assert "More than 1,000 examples" in first.content.decode()
    count_url = first.context["count_url"]
    assert 'hx-trigger="load"' in first.content.decode() and "split=pool" in count_url
    fragment = client.get(count_url).content.decode()
    assert "1,120 examples match these filters. Page 1 of 23." in fragment
    third = client.get(url, {"split": "pool", "page": "3"})
    assert [r["text"] for r in third.context["rows"]][:1] == ["row 100"]
    fragment = client.get(third.context["count_url"]).content.decode()
    assert "Page 3 of 23." in fragment
    assert 'name="split" value="pool"' in fragment  # the jump form keeps the filters
    last = client.get(first.context["last_url"])
    assert "page=last" in first.context["last_url"]
    assert [r["text"] for r in last.context["rows"]][-1] == "row 1119"
    assert last.context["next_url"] is None and last.context["prev_url"]


@pytest.mark.django_db
def test_jumping_past_the_last_page_says_so_and_shows_the_first(client, project, annotator):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=f"row {i}") for i in range(60)
    )
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    response = client.get(url, {"page": "9"})
    assert "There is no page 9." in response.content.decode()
    assert response.context["rows"][0]["text"] == "row 0"
    response = client.get(url, {"page": "100000"})
    assert "too deep to jump to" in response.content.decode()
    for odd in ("²", "-1", "x", "1e3"):  # not a page number: the first page, no error
        assert client.get(url, {"page": odd}).context["rows"][0]["text"] == "row 0"


@pytest.mark.django_db
def test_count_fragment_is_for_members_only(client, project, outsider, annotator):
    url = reverse("datasets:examples_count", args=[project.pk])
    assert client.get(url).status_code == 302
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(annotator)
    assert "0 examples" in client.get(url).content.decode()


@pytest.mark.django_db
def test_invalid_filters_show_a_message_and_no_rows(client, project, annotator, examples):
    client.force_login(annotator)
    url = reverse("datasets:examples", args=[project.pk])
    response = client.get(url, {"min_confidence": "0.9", "max_confidence": "0.1"})
    assert response.status_code == 200
    assert "The confidence range is empty" in response.content.decode()
    assert response.context["rows"] == []
    response = client.get(url, {"gold_label": "7"})
    assert "gold_label" in response.content.decode()


@pytest.mark.django_db
def test_detail_page_shows_entities_votes_and_who_labeled(client, project, annotator):
    example = Example.objects.create(
        project=project,
        external_id="rel-1",
        text="Aspirin treats <i>headache</i>",
        entities=[
            {"text": "Aspirin", "start": 0, "end": 7},
            {"text": "<i>headache</i>", "start": 15, "end": 30},
        ],
        split="dev",
        gold_label=1,
        gold_labeled_by=annotator,
        votes={"external": [-1, 1, -1, 0]},
    )
    client.force_login(annotator)
    response = client.get(reverse("datasets:example_detail", args=[project.pk, example.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert '<mark class="entity entity-1" title="entity 1">Aspirin</mark>' in body
    assert "&lt;i&gt;headache&lt;/i&gt;" in body and "<i>headache" not in body
    assert "external #1" in body and "external #3" in body and "external #0" not in body
    assert "2 abstained" in body
    assert "annie" in body and "SPAM" in body


@pytest.mark.django_db
def test_non_members_get_404_and_anonymous_users_are_sent_to_log_in(
    client, project, outsider, examples
):
    example = examples["a"]
    urls = [
        reverse("datasets:examples", args=[project.pk]),
        reverse("datasets:example_detail", args=[project.pk, example.pk]),
        reverse("datasets:label", args=[project.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 302
    client.force_login(outsider)
    for url in urls:
        assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_example_of_another_project_is_404(client, project, annotator, examples):
    from apps.projects.models import Project

    other = Project.objects.create(name="Other", labels=["A", "B"])
    foreign = Example.objects.create(project=other, external_id="z", text="elsewhere")
    client.force_login(annotator)
    url = reverse("datasets:example_detail", args=[project.pk, foreign.pk])
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_search_pages_walk_every_match_once_forwards_and_backwards(project):
    """On PostgreSQL search pages come in id windows; elsewhere from the plain keyset query."""
    Example.objects.bulk_create(
        Example(
            project=project,
            external_id=f"x{i}",
            text=f"needle number {i}" if i % 7 == 0 else f"hay {i}",
        )
        for i in range(300)
    )
    queryset = selectors.examples_for_project(project=project, search="needle")
    expected = list(queryset.values_list("id", flat=True))
    assert len(expected) == 43
    bounds = selectors.id_bounds(project=project)

    seen, after, pages = [], None, []
    while True:
        page = selectors.keyset_page(queryset, after=after, size=5, id_bounds=bounds)
        pages.append(page)
        seen.extend(e.id for e in page.items)
        if not page.has_next:
            break
        after = page.next_after
    assert seen == expected
    back, before = [], pages[-1].prev_before
    while before is not None:
        page = selectors.keyset_page(queryset, before=before, size=5, id_bounds=bounds)
        back = [e.id for e in page.items] + back
        before = page.prev_before
    assert back + [e.id for e in pages[-1].items] == expected


@pytest.mark.django_db
def test_match_count_is_exact_below_the_cap_and_an_estimate_or_bound_above(project):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"x{i}", text=f"word {i}") for i in range(30)
    )
    queryset = selectors.examples_for_project(project=project)
    small = selectors.count_matches(queryset, cap=100)
    assert (small.n, small.exact) == (30, True)
    big = selectors.count_matches(queryset, cap=10)
    assert not big.exact and big.n >= 10
    assert selectors.MatchCount(n=123456, exact=False, estimated=True).label == "120,000"


@pytest.mark.django_db
def test_search_index_can_be_dropped_for_a_bulk_load_and_rebuilt(project, examples):
    from apps.datasets import search_index

    if connection.vendor != "postgresql":
        assert not search_index.search_index_exists()
        search_index.drop_search_index()  # no-ops elsewhere
        return
    assert search_index.search_index_exists()
    search_index.drop_search_index()
    assert not search_index.search_index_exists()
    search_index.index_project(project_id=project.pk)
    # Search still answers without the index, only slower.
    assert ids(selectors.examples_for_project(project=project, search="channel")) == ["a", "c"]
    with connection.cursor() as cursor:
        # The test's own transaction holds deferred foreign-key checks of its inserts.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    search_index.create_search_index(concurrently=False)
    assert search_index.search_index_exists()
