"""Full-text indexing after the import: the import leaves vectors empty and launches the
indexing job; the job fills them in batches, idempotently; search gives the same results
before, during and after indexing; the migration backfills existing rows."""

from pathlib import Path

import pytest
from django.db import connection

from apps.datasets import search_index, selectors
from apps.datasets.models import Example
from apps.datasets.pipeline import ImportOptions, import_examples
from apps.jobs.models import Job, JobStatus

FIXTURES = Path(__file__).parent / "fixtures"
NEEDS_POSTGRES = "stored search vectors are PostgreSQL only: run with DATABASE_URL=postgres://..."

TEXTS = [
    "Check out my channel for free videos",
    "I love this song so much",
    "Subscribe to my channel please",
    "Great song, great memories",
    "Free iPhone giveaway, click the link",
    "The video was uploaded in 2014",
    "Songs like this one are why I subscribed",
    "Nothing to see here",
]
SEARCHES = [
    "channel",
    "videos",
    "song",
    "free -iphone",
    '"great memories"',
    "subscribe OR link",
    "nothingmatchesthis",
]


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(NEEDS_POSTGRES)


def add_examples(project, texts=TEXTS, prefix="x"):
    Example.objects.bulk_create(
        Example(project=project, external_id=f"{prefix}{i}", text=text)
        for i, text in enumerate(texts)
    )


def vectors_match_their_text(project) -> bool:
    """Every stored vector is exactly ``to_tsvector('english', text)``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM datasets_example WHERE project_id = %s AND "
            "search_vector IS DISTINCT FROM to_tsvector('english'::regconfig, text)",
            [project.pk],
        )
        return cursor.fetchone()[0] == 0


def results(project) -> dict:
    return {
        search: list(
            selectors.examples_for_project(project=project, search=search).values_list(
                "external_id", flat=True
            )
        )
        for search in SEARCHES
    }


@pytest.mark.django_db
def test_the_import_leaves_vectors_empty_and_launches_the_indexing_job_at_commit(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        summary = import_examples(
            project=project, path=FIXTURES / "wrench-mini", options=ImportOptions("wrench")
        )
    assert summary["rows"] > 0
    assert not Example.objects.filter(project=project, search_vector__isnull=False).exists()
    jobs = Job.objects.filter(project=project, kind=search_index.INDEX_JOB_KIND)
    if connection.vendor != "postgresql":
        assert summary["search_index_job"] is None and not jobs.exists()
        return
    job = jobs.get()
    assert summary["search_index_job"] == job.pk
    assert job.status == JobStatus.QUEUED and job.launched_by is None
    assert len(callbacks) == 1  # the job's message, sent once the import has committed


@pytest.mark.django_db
def test_a_failed_import_launches_no_indexing_job(project, tmp_path):
    from apps.datasets.pipeline import ImportFailed

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "fine"}\n{"id": "2"}\n')
    with pytest.raises(ImportFailed):
        import_examples(project=project, path=bad, options=ImportOptions("jsonl"))
    assert not Job.objects.filter(kind=search_index.INDEX_JOB_KIND).exists()


@pytest.mark.django_db
def test_the_indexing_job_runs_after_the_import_and_fills_every_vector(
    project, settings, django_capture_on_commit_callbacks
):
    postgres_only()
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with django_capture_on_commit_callbacks(execute=True):
        summary = import_examples(
            project=project, path=FIXTURES / "wrench-mini", options=ImportOptions("wrench")
        )
    job = Job.objects.get(pk=summary["search_index_job"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["indexed"] == summary["rows"]
    assert f"Indexed {summary['rows']:,} examples" in job.log
    assert not Example.objects.filter(project=project, search_vector__isnull=True).exists()
    assert vectors_match_their_text(project)


@pytest.mark.django_db
def test_indexing_goes_in_batches_and_running_it_again_changes_nothing(project):
    postgres_only()
    add_examples(project)
    add_examples(project.__class__.objects.create(name="Other", labels=["A", "B"]), prefix="o")
    reports = []
    indexed = search_index.index_project(
        project_id=project.pk, batch_rows=3, progress=lambda f, m: reports.append((f, m))
    )
    assert indexed == len(TEXTS)
    assert [round(f, 3) for f, _ in reports] == [0.375, 0.75, 1.0]
    assert reports[-1][1] == "8 of 8 examples indexed for search"
    assert vectors_match_their_text(project)
    # Only this project's rows: the other project waits for its own job.
    assert Example.objects.filter(search_vector__isnull=True).count() == len(TEXTS)
    assert search_index.index_project(project_id=project.pk) == 0
    assert search_index.unindexed_rows(project_id=project.pk) == 0


def test_indexing_pauses_after_each_batch_in_proportion_to_its_time(project, settings):
    """FRUGAL_SEARCH_INDEX_PAUSE leaves the cores to people: after each batch the job waits
    ``pause`` times as long as the batch took (0: no wait)."""
    postgres_only()
    add_examples(project)
    waits = []
    settings.FRUGAL_SEARCH_INDEX_PAUSE = 2.0
    indexed = search_index.index_project(project_id=project.pk, batch_rows=3, sleep=waits.append)
    assert indexed == len(TEXTS) and vectors_match_their_text(project)
    assert len(waits) == 3 and all(wait > 0 for wait in waits)  # 3 + 3 + 2 rows
    Example.objects.filter(project=project).update(search_vector=None)
    waits.clear()
    assert search_index.index_project(project_id=project.pk, pause=0, sleep=waits.append) == 8
    assert waits == []


@pytest.mark.django_db
def test_indexing_is_a_no_op_off_postgres(project):
    if connection.vendor == "postgresql":
        pytest.skip("checks the SQLite behaviour")
    add_examples(project)
    assert search_index.schedule_indexing(project=project) is None
    assert search_index.index_project(project_id=project.pk) == 0
    assert search_index.unindexed_rows(project_id=project.pk) == 0
    assert selectors.unindexed_for_search(project=project) is None


@pytest.mark.django_db
def test_search_results_are_the_same_before_during_and_after_indexing(project):
    postgres_only()
    add_examples(project)
    before = results(project)
    assert before["channel"] == ["x0", "x2"]
    assert before["song"] == ["x1", "x3", "x6"]  # stemmed: "songs" too
    # Half indexed, as while the job runs.
    with pytest.raises(_Stop):
        search_index.index_project(project_id=project.pk, batch_rows=4, progress=_stop_after_one)
    assert Example.objects.filter(project=project, search_vector__isnull=True).count() == 4
    assert results(project) == before
    search_index.index_project(project_id=project.pk)
    assert results(project) == before
    # Ground truth: the expression itself over every row.
    for search in SEARCHES:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT external_id FROM datasets_example WHERE project_id = %s AND "
                "to_tsvector('english'::regconfig, text) @@ "
                "websearch_to_tsquery('english'::regconfig, %s) ORDER BY id",
                [project.pk, search],
            )
            assert [row[0] for row in cursor.fetchall()] == before[search], search


class _Stop(Exception):
    pass


def _stop_after_one(fraction, message):
    raise _Stop  # like a cancel after the first batch: that batch stays committed


@pytest.mark.django_db
def test_the_examples_page_says_while_rows_are_not_indexed(client, project, admin_user):
    add_examples(project)
    client.force_login(admin_user)
    url = f"/projects/{project.pk}/data/examples/"
    page = client.get(url, {"search": "channel"}).content.decode()
    if connection.vendor != "postgresql":
        assert "Search index is being built" not in page
        return
    assert "Search index is being built: 8 examples not indexed yet" in page
    search_index.index_project(project_id=project.pk)
    page = client.get(url, {"search": "channel"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Search index is being built" not in page


@pytest.mark.django_db
def test_the_notice_count_is_bounded(project, monkeypatch):
    postgres_only()
    add_examples(project)
    monkeypatch.setattr(selectors, "UNINDEXED_COUNT_CAP", 5)
    count = selectors.unindexed_for_search(project=project)
    assert (count.n, count.exact) == (5, False)


@pytest.fixture
def migrated_back_to_latest():
    """Migrating datasets backwards unapplies every app built on it (distill, agreement, ...):
    whatever the test does, every app is at its latest migration again afterwards."""
    from django.db.migrations.executor import MigrationExecutor

    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_backfills_existing_rows_and_swaps_the_indexes(
    project, migrated_back_to_latest
):
    from django.db.migrations.executor import MigrationExecutor

    add_examples(project)

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("datasets", target)])

    def index_names():
        with connection.cursor() as cursor:
            return set(connection.introspection.get_constraints(cursor, "datasets_example"))

    migrate("0003_drop_redundant_project_index")
    with connection.cursor() as cursor:
        columns = {
            c.name
            for c in connection.introspection.get_table_description(cursor, "datasets_example")
        }
    assert "search_vector" not in columns
    if connection.vendor == "postgresql":
        assert "example_text_fts_idx" in index_names()
    migrate("0004_example_search_vector")
    assert Example.objects.filter(project=project).count() == len(TEXTS)
    if connection.vendor != "postgresql":
        assert not Example.objects.filter(search_vector__isnull=False).exists()
        return
    names = index_names()
    assert {"example_search_vector_idx", "example_unindexed_idx"} <= names
    assert "example_text_fts_idx" not in names
    assert not Example.objects.filter(search_vector__isnull=True).exists()
    assert vectors_match_their_text(project)

    migrate("0005_partial_indexes_for_imports")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'datasets_example'"
        )
        definitions = dict(cursor.fetchall())
    assert definitions["example_search_vector_idx"].endswith(
        "USING gin (search_vector) WHERE (search_vector IS NOT NULL)"
    )
    assert definitions["example_gold_labeled_by_idx"].endswith(
        "WHERE (gold_labeled_by_id IS NOT NULL)"
    )
    assert "datasets_example_gold_labeled_by_id_7b8604d9" not in definitions
    assert "example_search_vector_idx_new" not in definitions
    migrate("0004_example_search_vector")  # and back: the full indexes again
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'example_search_vector_idx'"
        )
        assert cursor.fetchone()[0].endswith("USING gin (search_vector)")
    assert "example_gold_labeled_by_idx" not in index_names()
    migrate("0005_partial_indexes_for_imports")


@pytest.mark.django_db
def test_a_search_uses_the_partial_gin_index(project):
    """The GIN index holds only rows that have a vector; the planner must still prove it
    usable for ``search_vector @@ query`` (a strict operator implies IS NOT NULL)."""
    postgres_only()
    add_examples(project)
    search_index.index_project(project_id=project.pk)
    # No other condition, and whole-table reads made costly (a sequential scan, or a walk of
    # the primary key): a bitmap scan needs an index condition, which only the GIN index has.
    queryset = selectors._search_filter(Example.objects.all(), "channel", include_unindexed=False)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = queryset.explain()
    assert "Bitmap Index Scan on example_search_vector_idx" in plan, plan
    assert set(queryset.values_list("external_id", flat=True)) == {"x0", "x2"}


@pytest.mark.django_db
def test_the_indexing_job_refreshes_the_planner_statistics(project):
    postgres_only()
    add_examples(project)

    def analyzed_rows():
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'datasets_example'")
            return cursor.fetchone()[0]

    search_index.refresh_statistics()
    assert analyzed_rows() == len(TEXTS)
