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

On PostgreSQL the import also skips the per-row foreign-key checks of its COPY when it can
prove them (see :func:`skip_row_triggers`): they cost ~4 s per million rows at commit.

Before a batch is written into a project that has examples, its ids are checked against them,
so a duplicate is reported with its file and line rather than as a constraint error. Once any
problem is known nothing more is written, and an open COPY or a staging table is dropped.
"""

import json
import secrets
from contextlib import contextmanager

import orjson
from django.db import DatabaseError, connection, transaction
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
# binary form; jsonb columns take bytes already in jsonb's binary form (see _jsonb), sent as
# they are: binary COPY carries each field as the bytes the column's type receives.
COPY_TYPES = (
    "int8",  # project
    "text",  # external_id
    "text",  # split
    "text",  # text
    "bytea",  # entities (jsonb)
    "int4",  # gold_label
    "int4",  # label
    "float8",  # confidence
    "text",  # label_source
    "text",  # label_version
    "bytea",  # votes (jsonb)
)


def _jsonb(value) -> bytes:
    """``value`` in jsonb's binary form: the format version (1), then the JSON text. orjson
    writes it ~10× faster than ``json.dumps`` (psycopg's own jsonb dumper); what orjson
    refuses (keys that are not strings, integers over 64 bits) goes through ``json``."""
    try:
        return b"\x01" + orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return b"\x01" + json.dumps(value).encode()


def copy_row(project_id: int, row: tuple) -> tuple:
    """A row (``COLUMNS`` order, Python values) as the COPY takes it (:data:`COPY_TYPES`)."""
    external_id, split, text, entities, gold_label, label, confidence, source, version, votes = row
    return (
        project_id,
        external_id,
        split,
        text,
        None if entities is None else _jsonb(entities),
        gold_label,
        label,
        confidence,
        source,
        version,
        None if votes is None else _jsonb(votes),
    )


# The only foreign keys of the example table whose per-row checks an import may skip: the
# project (the import holds its row FOR UPDATE until it commits, so it exists and stays) and
# the gold labeler, a column the import never writes (NULL passes any foreign key).
_PROVEN_FOREIGN_KEYS = {"project_id", "gold_labeled_by_id"}
assert "gold_labeled_by" not in COLUMNS

_TABLE_CHECKS_SQL = """
SELECT
    (SELECT array_agg(DISTINCT a.attname::text) FROM pg_constraint c
     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
     WHERE c.conrelid = %(table)s::regclass AND c.contype = 'f'),
    (SELECT count(*) FROM pg_trigger WHERE tgrelid = %(table)s::regclass AND NOT tgisinternal),
    (SELECT relhasrules FROM pg_class WHERE oid = %(table)s::regclass)
"""


def skip_row_triggers(cursor, table: str) -> bool:
    """Turn off the row triggers of the current transaction's writes if that changes nothing
    but speed; ``True`` when it did (undo with :func:`restore_row_triggers`).

    PostgreSQL checks a foreign key with one ``SELECT ... FOR KEY SHARE`` per inserted row,
    queued until commit; for a million imported rows that is seconds spent proving the same
    fact. ``session_replication_role = replica`` (what ``pg_restore --disable-triggers`` uses)
    skips them. Only when: every foreign key of the table is one the import's rows satisfy by
    construction (:data:`_PROVEN_FOREIGN_KEYS`, with the caller holding the project's row
    locked), the table has no trigger or rule of anyone's own, and the database role may set
    the parameter (a superuser, or ``GRANT SET ON PARAMETER session_replication_role``, PG 15+).
    Otherwise the checks run as usual. ``SET LOCAL``: a rollback undoes it too.
    """
    cursor.execute(_TABLE_CHECKS_SQL, {"table": table})
    foreign_keys, own_triggers, has_rules = cursor.fetchone()
    if own_triggers or has_rules or not set(foreign_keys or ()) <= _PROVEN_FOREIGN_KEYS:
        return False
    try:
        with transaction.atomic():  # a savepoint: a refused SET must not abort the import
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        return False
    return True


def restore_row_triggers(cursor) -> None:
    cursor.execute("SET LOCAL session_replication_role = origin")


def _column_list(names) -> str:
    return ", ".join(
        connection.ops.quote_name(Example._meta.get_field(name).column) for name in names
    )


def _json_text(value) -> str | None:
    return None if value is None else json.dumps(value)


class ExampleWriter:
    """Buffers rows with their records (for where a problem is) and writes them in batches."""

    def __init__(
        self,
        *,
        project,
        problems: Problems,
        check_existing: bool,
        use_copy: bool,
        project_locked: bool = False,
    ):
        """``project_locked``: the caller holds the project's row ``FOR UPDATE`` until its
        transaction ends, which lets a COPY skip the per-row foreign-key checks."""
        self.project = project
        self.project_locked = project_locked
        self._skipping_triggers: bool | None = None  # None: not decided yet
        self.problems = problems
        self.check_existing = check_existing
        self.use_copy = use_copy
        self.batch: list[tuple] = []
        self.records: list = []  # the batch's records
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

    def add(self, row: tuple, record) -> None:
        self.batch.append(row)
        self.records.append(record)
        if len(self.batch) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, records = self.batch, self.records
        self.batch, self.records = [], []
        if self.check_existing:
            ids = [row[0] for row in batch]
            existing = set(
                Example.objects.filter(project=self.project, external_id__in=ids).values_list(
                    "external_id", flat=True
                )
            )
            for row, record in zip(batch, records):
                if row[0] in existing:
                    self.problems.add(
                        record.file,
                        f"duplicate id '{row[0]}': the project already has an example with it",
                        **record.where("id"),
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
        """The binary COPY into the example table on a psycopg ``cursor``; it takes rows made
        by :func:`copy_row`."""
        with cursor.copy(self.copy_sql, writer=writer) as copy:
            copy.set_types(COPY_TYPES)
            yield copy

    def _before_first_copy(self, cursor) -> None:
        if self._skipping_triggers is None:
            self._skipping_triggers = self.project_locked and skip_row_triggers(
                cursor, Example._meta.db_table
            )

    def _copy(self, batch: list[tuple]) -> None:
        with connection.cursor() as cursor:
            self._before_first_copy(cursor)
            with self.open_copy(cursor.cursor) as copy:
                self._write(copy, batch)

    def _stream_rows(self, batch: list[tuple]) -> None:
        if self._stream is None:
            cursor_cm = connection.cursor()
            cursor = cursor_cm.__enter__()
            self._before_first_copy(cursor)
            copy_cm = self.open_copy(cursor.cursor, writer=QueuedLibpqWriter(cursor.cursor))
            self._stream = (cursor_cm, copy_cm, copy_cm.__enter__())
        self._write(self._stream[2], batch)

    def _write(self, copy, batch: list[tuple]) -> None:
        project_id = self.project.pk
        write_row = copy.write_row
        for row in batch:
            write_row(copy_row(project_id, row))

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
        drop a staging table that was not committed; turn the row triggers back on, so that
        whatever the transaction writes next is checked."""
        self._drop_staging()
        if self._stream is not None:
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
        if self._skipping_triggers and error is None:
            # After an error the transaction is rolled back, which undoes the SET LOCAL.
            self._skipping_triggers = False
            with connection.cursor() as cursor:
                restore_row_triggers(cursor)


class _Aborted(Exception):
    """Ends an open COPY without storing its rows."""
