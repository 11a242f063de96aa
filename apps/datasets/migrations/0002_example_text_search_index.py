"""A GIN index for full-text search of example texts (PostgreSQL only; a no-op elsewhere).

The indexed expression is exactly ``selectors.EnglishTsvector("text")``, so that the planner
uses the index for ``to_tsvector('english'::regconfig, text) @@ websearch_to_tsquery(...)``.
Built ``CONCURRENTLY`` (outside a transaction) so a live project's writes are not blocked.
"""

from django.db import migrations

INDEX = "example_text_fts_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON datasets_example "
        "USING gin (to_tsvector('english'::regconfig, text))"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("datasets", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
