"""Partial indexes where most rows hold NULL, because every imported row paid for the NULLs.

An import writes each example with no search vector yet and no gold labeler. The GIN index on
``search_vector`` kept a NULL placeholder entry per such row and the b-tree index on
``gold_labeled_by_id`` one NULL key per row; both are now partial (``IS NOT NULL``), which took
~4–5 s off the COPY of 1,000,000 rows (``bench import_export``). Neither index is ever asked
for NULLs: search matches ``search_vector @@ query`` (a strict operator, so the planner proves
the predicate), and deleting a user sets ``gold_labeled_by_id = NULL WHERE gold_labeled_by_id
IN (...)``. The not-yet-indexed rows have their own partial index since 0004.

The GIN index is rebuilt ``CONCURRENTLY`` under a new name, then renamed, so searches and
writes go on meanwhile; its definition must stay identical to ``apps.datasets.search_index``.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

VECTOR_INDEX = "example_search_vector_idx"
BUILDING = "example_search_vector_idx_new"


def _swap_vector_index(schema_editor, where: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")  # an interrupted run's
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY {BUILDING} ON datasets_example "
            f"USING gin (search_vector){where}"
        )
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {VECTOR_INDEX}")
        cursor.execute(f"ALTER INDEX {BUILDING} RENAME TO {VECTOR_INDEX}")


def partial_vector_index(apps, schema_editor):
    _swap_vector_index(schema_editor, " WHERE search_vector IS NOT NULL")


def full_vector_index(apps, schema_editor):
    _swap_vector_index(schema_editor, "")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("datasets", "0004_example_search_vector"),
        ("projects", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="example",
            name="gold_labeled_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="example",
            index=models.Index(
                condition=models.Q(("gold_labeled_by__isnull", False)),
                fields=["gold_labeled_by"],
                name="example_gold_labeled_by_idx",
            ),
        ),
        migrations.RunPython(partial_vector_index, full_vector_index),
    ]
