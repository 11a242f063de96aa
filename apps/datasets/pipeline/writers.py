"""Writers: put checked rows into the database, all or nothing.

- PostgreSQL (the fast path): psycopg 3 binary ``COPY ... FROM STDIN`` inside the import's
  transaction (binary: the server skips parsing numbers and unescaping text, ~2 µs a row).
  Into a project that had no examples, one COPY stays open for the whole import and a writer
  thread feeds it (``QueuedLibpqWriter``), so the server stores rows while Python parses the
  next ones. Into a project that has examples, each batch's ids are first checked against them
  and the batch then goes in with its own COPY.
- SQLite: rows are staged in a TEMP table (a separate file: staging takes no lock on the main
  database, so the web process and the job's progress writes go on), then moved with one
  ``INSERT ... SELECT`` in a short write transaction at the end.
- Other databases: ``bulk_create`` in batches inside the import's transaction.

Before a batch is written into a project that has examples, its ids are checked against them,
so a duplicate is reported with its file and line rather than as a constraint error. Once any
problem is known nothing more is written, and an open COPY or a staging table is dropped.
"""

import json
import secrets
from contextlib import contextmanager

from django.db import connection, transaction
from psycopg.copy import QueuedLibpqWriter

from apps.datasets.models import Example
from apps.datasets.pipeline.exceptions import Problems

BATCH_ROWS = 5000
COLUMNS = (
    "external_id",
    "split",
    "text",
    "entities",
    "gold_label",
    "label",
    "confidence",
    "label_source",
    "label_version",
    "votes",
)


# The binary COPY's types, in the order of ("project", *COLUMNS). varchar columns take text's
# binary form; jsonb columns take the Python value (psycopg serialises it).
COPY_TYPES = (
    "int8",  # project
    "text",  # external_id
    "text",  # split
    "text",  # text
    "jsonb",  # entities
    "int4",  # gold_label
    "int4",  # label
    "float8",  # confidence
    "text",  # label_source
    "text",  # label_version
    "jsonb",  # votes
)


def _column_list(names) -> str:
    return ", ".join(
        connection.ops.quote_name(Example._meta.get_field(name).column) for name in names
    )


def _json_text(value) -> str | None:
    return None if value is None else json.dumps(value)


class ExampleWriter:
    """Buffers rows with their locations and writes them in batches."""

    def __init__(self, *, project, problems: Problems, check_existing: bool, use_copy: bool):
        self.project = project
        self.problems = problems
        self.check_existing = check_existing
        self.use_copy = use_copy
        self.batch: list[tuple] = []
        self.where: list[tuple] = []
        self.written = 0
        self._stream = None  # (cursor context, copy context, copy) of the open COPY
        # One COPY for the whole import: only into a project that had no examples.
        self.streams = use_copy and not check_existing
        self.stages = not use_copy and connection.vendor == "sqlite"
        self._staging: str | None = None  # the TEMP table's name once created
        table = connection.ops.quote_name(Example._meta.db_table)
        self.table = table
        if use_copy:
            columns = _column_list(("project", *COLUMNS))
            self.copy_sql = f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"  # noqa: S608

    def add(self, row: tuple, file: str, where: dict) -> None:
        self.batch.append(row)
        self.where.append((file, where))
        if len(self.batch) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, where = self.batch, self.where
        self.batch, self.where = [], []
        if self.check_existing:
            ids = [row[0] for row in batch]
            existing = set(
                Example.objects.filter(project=self.project, external_id__in=ids).values_list(
                    "external_id", flat=True
                )
            )
            for row, (file, location) in zip(batch, where):
                if row[0] in existing:
                    self.problems.add(
                        file,
                        f"duplicate id '{row[0]}': the project already has an example with it",
                        **location,
                        column="id",
                    )
        if self.problems:
            return
        if self.streams:
            self._stream_rows(batch)
        elif self.use_copy:
            self._copy(batch)
        elif self.stages:
            self._stage(batch)
        else:
            self._bulk_create(batch)
        self.written += len(batch)

    # -- PostgreSQL --------------------------------------------------------------------------

    @contextmanager
    def open_copy(self, cursor, *, writer=None):
        """The binary COPY into the example table on a psycopg ``cursor``; rows are
        ``(project id, *COLUMNS)`` with Python values (see :data:`COPY_TYPES`)."""
        with cursor.copy(self.copy_sql, writer=writer) as copy:
            copy.set_types(COPY_TYPES)
            yield copy

    def _copy(self, batch: list[tuple]) -> None:
        with connection.cursor() as cursor, self.open_copy(cursor.cursor) as copy:
            self._write(copy, batch)

    def _stream_rows(self, batch: list[tuple]) -> None:
        if self._stream is None:
            cursor_cm = connection.cursor()
            cursor = cursor_cm.__enter__()
            copy_cm = self.open_copy(cursor.cursor, writer=QueuedLibpqWriter(cursor.cursor))
            self._stream = (cursor_cm, copy_cm, copy_cm.__enter__())
        self._write(self._stream[2], batch)

    def _write(self, copy, batch: list[tuple]) -> None:
        project_id = self.project.pk
        write_row = copy.write_row
        for row in batch:
            write_row((project_id, *row))

    # -- SQLite ------------------------------------------------------------------------------

    def _stage(self, batch: list[tuple]) -> None:
        with connection.cursor() as cursor:
            if self._staging is None:
                self._staging = f"frugal_import_{secrets.token_hex(8)}"
                cursor.execute(
                    f"CREATE TEMP TABLE {self._staging} (external_id TEXT, split TEXT, "
                    "text TEXT, entities TEXT, gold_label INTEGER, label INTEGER, "
                    "confidence REAL, label_source TEXT, label_version TEXT, votes TEXT)"
                )
            cursor.executemany(
                f"INSERT INTO {self._staging} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
                [(*row[:3], _json_text(row[3]), *row[4:9], _json_text(row[9])) for row in batch],
            )

    def _drop_staging(self) -> None:
        if self._staging is not None:
            name, self._staging = self._staging, None
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{name}")

    # -- elsewhere ---------------------------------------------------------------------------

    def _bulk_create(self, batch: list[tuple]) -> None:
        Example.objects.bulk_create(
            [Example(project=self.project, **dict(zip(COLUMNS, row))) for row in batch],
            batch_size=1000,
        )

    # -- the end -----------------------------------------------------------------------------

    @contextmanager
    def committing(self):
        """Make the written rows part of the project, with whatever the block writes too.

        PostgreSQL: finish the open COPY (the import's transaction commits them). SQLite: one
        short write transaction moves the staged rows and runs the block.
        """
        if self.stages:
            try:
                with transaction.atomic():
                    if self._staging is not None:
                        columns = _column_list(COLUMNS)
                        with connection.cursor() as cursor:
                            cursor.execute(
                                f"INSERT INTO {self.table} ({_column_list(('project',))}, "  # noqa: S608
                                f"{columns}) SELECT %s, {columns} FROM {self._staging} "
                                "ORDER BY rowid",
                                [self.project.pk],
                            )
                    yield
            finally:
                self._drop_staging()
        else:
            self.close()
            yield

    def close(self, error: BaseException | None = None) -> None:
        """Finish the open COPY (abort it when ``error`` is given or any problem is known);
        drop a staging table that was not committed."""
        self._drop_staging()
        if self._stream is None:
            return
        cursor_cm, copy_cm, _ = self._stream
        self._stream = None
        if error is None and self.problems:
            error = _Aborted("the import found problems")
        try:
            if error is None:
                copy_cm.__exit__(None, None, None)
            else:
                copy_cm.__exit__(type(error), error, error.__traceback__)
        finally:
            cursor_cm.__exit__(None, None, None)


class _Aborted(Exception):
    """Ends an open COPY without storing its rows."""
