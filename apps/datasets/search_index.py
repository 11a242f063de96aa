"""The full-text search index of example texts: stored vectors, filled after each import.

``Example.search_vector`` holds ``to_tsvector('english', text)``. The GIN index
``example_search_vector_idx`` on it (partial: rows that have one) serves searches; the partial
b-tree index ``example_unindexed_idx`` on ``(project_id, id) WHERE search_vector IS NULL`` finds
the rows not indexed yet. Imports write rows with a NULL vector (computing it inside the COPY
cost ~15 µs per row and kept the import's transaction open for it) and launch the
``index_search`` job when they commit; the job fills the vectors in short batches, each its own
transaction, the way a search engine indexes asynchronously. Meanwhile search computes the
vector of NULL rows on the fly (``selectors._search_filter``), so results never depend on how
far the job got.

PostgreSQL only: elsewhere the vectors stay NULL, search matches substrings, and every function
here is a no-op. Definitions must stay identical to migrations ``0004_example_search_vector``
and ``0005_partial_indexes_for_imports``.
"""

import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection as default_connection
from django.db import transaction

INDEX_JOB_KIND = "index_search"
INDEX_NAME = "example_search_vector_idx"
# Partial: an imported row has no vector until the indexing job fills it (migration 0005).
INDEX_DEFINITION = "datasets_example USING gin (search_vector) WHERE search_vector IS NOT NULL"
# Rows per UPDATE: ~0.3-0.6 s of to_tsvector each, short enough that a batch's row locks and
# its WAL stay small, long enough that the per-statement overhead does not matter.
BATCH_ROWS = 20_000

_INDEX_BATCH_SQL = """
WITH batch AS (
    SELECT id FROM datasets_example
    WHERE project_id = %s AND search_vector IS NULL AND id > %s
    ORDER BY id LIMIT %s
    FOR UPDATE SKIP LOCKED
), indexed AS (
    UPDATE datasets_example AS e
    SET search_vector = to_tsvector('english'::regconfig, e.text)
    FROM batch WHERE e.id = batch.id
    RETURNING e.id
)
SELECT count(*), max(id) FROM indexed
"""


def _is_postgres(connection) -> bool:
    return connection.vendor == "postgresql"


def schedule_indexing(*, project):
    """Launch the ``index_search`` job for ``project``; it is enqueued when the current
    transaction commits (so it sees the rows written in it). Returns the job (None off
    PostgreSQL, where there is nothing to index)."""
    if not _is_postgres(default_connection):
        return None
    from apps.jobs.services import launch_job

    return launch_job(kind=INDEX_JOB_KIND, project=project, user=None, params={})


def clean_index_params(params: dict) -> dict:
    """The ``index_search`` job takes no parameters."""
    if params:
        raise ValidationError(
            f"Unknown parameter(s) for search indexing: {', '.join(sorted(params))}."
        )
    return {}


def unindexed_rows(*, project_id: int) -> int:
    """How many of the project's examples have no search vector yet (0 off PostgreSQL)."""
    if not _is_postgres(default_connection):
        return 0
    with default_connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM datasets_example WHERE project_id = %s AND search_vector IS NULL",
            [project_id],
        )
        return cursor.fetchone()[0]


def index_project(
    *,
    project_id: int,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[float, str], None] | None = None,
    pause: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Fill the search vector of the project's unindexed examples; returns how many it filled.

    Each batch is one ``UPDATE`` in its own transaction over the next ``batch_rows`` unindexed
    ids, so a cancel or a crash keeps what was done and a rerun goes on from there. Safe to run
    twice at once: a batch skips rows another run has locked (``SKIP LOCKED``) and only touches
    rows whose vector is still NULL. ``progress(fraction, message)`` is called after each batch.

    ``pause`` (default ``settings.FRUGAL_SEARCH_INDEX_PAUSE``): after each batch, wait that
    many times as long as the batch took. The batch runs in the PostgreSQL server, which the
    worker's ``nice`` does not reach; with 1.0 the indexing takes at most half of one core and
    leaves the rest to people's requests (and takes twice as long).
    """
    if not _is_postgres(default_connection):
        return 0
    if pause is None:
        pause = settings.FRUGAL_SEARCH_INDEX_PAUSE
    total = unindexed_rows(project_id=project_id)
    done, last_id = 0, 0
    while True:
        started = time.monotonic()
        with transaction.atomic(), default_connection.cursor() as cursor:
            cursor.execute(_INDEX_BATCH_SQL, [project_id, last_id, batch_rows])
            count, highest = cursor.fetchone()
        if not count:
            return done
        if pause > 0:
            sleep(pause * (time.monotonic() - started))
        done += count
        last_id = highest
        if progress is not None:
            # Rows imported meanwhile can make ``done`` pass the first count.
            total = max(total, done)
            progress(done / total, f"{done:,} of {total:,} examples indexed for search")


def refresh_statistics() -> None:
    """``ANALYZE`` the example table, after an import and its indexing changed many rows.

    Until autovacuum gets to it (a minute or more), the planner would go on the statistics of
    before the import: for a project imported into an empty table it expects a handful of
    rows and sorts a million for the export's ``ORDER BY id`` instead of walking the primary
    key. ANALYZE reads a fixed sample (~0.3 s whatever the table's size).
    """
    if not _is_postgres(default_connection):
        return
    with default_connection.cursor() as cursor:
        cursor.execute("ANALYZE datasets_example")


def search_index_exists(*, connection=default_connection) -> bool:
    if not _is_postgres(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [INDEX_NAME])
        return cursor.fetchone() is not None


def drop_search_index(*, connection=default_connection, concurrently: bool = False) -> None:
    """Drop the GIN index, e.g. before filling millions of vectors at once (one sorted build
    afterwards is cheaper than a million GIN insertions). ``concurrently`` needs autocommit."""
    if not _is_postgres(connection):
        return
    how = "CONCURRENTLY " if concurrently else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {how}IF EXISTS {INDEX_NAME}")


def create_search_index(
    *, connection=default_connection, concurrently: bool = True, work_mem: str = "256MB"
) -> None:
    """Build the GIN index if it is missing. ``concurrently`` (the default) lets writes go on
    meanwhile and needs autocommit (not inside ``atomic()``)."""
    if not _is_postgres(connection):
        return
    how = "CONCURRENTLY " if concurrently else ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT quote_literal(%s)", [work_mem])
        (quoted,) = cursor.fetchone()
        cursor.execute(f"SET maintenance_work_mem = {quoted}")
        cursor.execute(f"CREATE INDEX {how}IF NOT EXISTS {INDEX_NAME} ON {INDEX_DEFINITION}")
        cursor.execute("RESET maintenance_work_mem")
