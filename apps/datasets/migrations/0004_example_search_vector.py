"""Stored search vectors: example texts are indexed after an import, not inside its COPY.

Adds ``Example.search_vector`` and, on PostgreSQL, fills it for the existing rows (in id
batches, each its own short transaction), builds the GIN index on it and a partial index of the
rows not indexed yet, then drops the expression index of migration 0002, which cost every
imported row ~15 µs of ``to_tsvector`` plus a GIN insertion inside the import's transaction.
Indexes are built and dropped ``CONCURRENTLY`` (as 0002's was), so a live project's writes go
on meanwhile. Elsewhere (SQLite) only the column is added; it stays NULL there.

The definitions must stay identical to ``apps.datasets.search_index`` (written out here so the
migration keeps working whatever that module becomes).
"""

import django.contrib.postgres.search
from django.db import migrations

BATCH_IDS = 20_000
EXPRESSION_INDEX = "example_text_fts_idx"
VECTOR_INDEX = "example_search_vector_idx"
UNINDEXED_INDEX = "example_unindexed_idx"


def index_existing_rows(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM datasets_example")
        low, high = cursor.fetchone()
        if low is not None:
            # Autocommit (the migration is not atomic): each batch commits on its own, so no
            # row stays locked for long and an interrupted run resumes where it stopped.
            for start in range(low, high + 1, BATCH_IDS):
                cursor.execute(
                    "UPDATE datasets_example "
                    "SET search_vector = to_tsvector('english'::regconfig, text) "
                    "WHERE id >= %s AND id < %s AND search_vector IS NULL",
                    [start, start + BATCH_IDS],
                )
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {VECTOR_INDEX} ON datasets_example "
            "USING gin (search_vector)"
        )
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {UNINDEXED_INDEX} ON datasets_example "
            "(project_id, id) WHERE search_vector IS NULL"
        )
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {EXPRESSION_INDEX}")


def restore_expression_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {EXPRESSION_INDEX} ON datasets_example "
            "USING gin (to_tsvector('english'::regconfig, text))"
        )
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {UNINDEXED_INDEX}")
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {VECTOR_INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("datasets", "0003_drop_redundant_project_index")]

    operations = [
        migrations.AddField(
            model_name="example",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(
                blank=True, editable=False, null=True
            ),
        ),
        migrations.RunPython(index_existing_rows, restore_expression_index),
    ]
