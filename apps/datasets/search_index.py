"""The full-text search index of example texts, for code that loads examples in bulk.

Keeping ``example_text_fts_idx`` up to date costs ``to_tsvector`` per inserted row (~20 µs on
this project's 2-core machine) plus the GIN insertion, so a large import can drop it before its
``COPY`` and build it again afterwards (one sorted build is cheaper than a million inserts).
Searches still work while it is missing, only slower. PostgreSQL only; no-ops elsewhere.
The definition must stay identical to migration ``0002_example_text_search_index`` and to
``selectors.EnglishTsvector`` (the planner matches the expression exactly).
"""

from django.db import connection as default_connection

INDEX_NAME = "example_text_fts_idx"
INDEX_DEFINITION = "datasets_example USING gin (to_tsvector('english'::regconfig, text))"


def _is_postgres(connection) -> bool:
    return connection.vendor == "postgresql"


def search_index_exists(*, connection=default_connection) -> bool:
    if not _is_postgres(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [INDEX_NAME])
        return cursor.fetchone() is not None


def drop_search_index(*, connection=default_connection, concurrently: bool = False) -> None:
    """Drop the index (``concurrently`` needs autocommit: not inside ``atomic()``)."""
    if not _is_postgres(connection):
        return
    how = "CONCURRENTLY " if concurrently else ""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {how}IF EXISTS {INDEX_NAME}")


def create_search_index(
    *, connection=default_connection, concurrently: bool = True, work_mem: str = "256MB"
) -> None:
    """Build the index if it is missing. ``concurrently`` (the default) lets writes go on
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
