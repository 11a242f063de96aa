"""The import's fast paths keep its meaning: orjson reads what ``json`` reads, and the COPY
skips the per-row foreign-key checks only when they cannot fail."""

import json
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.datasets.models import Example
from apps.datasets.pipeline import ImportOptions, import_examples, writers
from apps.datasets.pipeline.exceptions import Problems
from apps.datasets.pipeline.readers import ByteCounter, read_jsonl

NEEDS_POSTGRES = (
    "the COPY and its triggers are PostgreSQL only: run with DATABASE_URL=postgres://..."
)

# JSON values as ``json`` reads them. Integers stay within 64 bits below the top level's
# "id": orjson reads a larger one as a float, which only ever changes an error's wording.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
RECORDS = st.dictionaries(st.text(), VALUES, max_size=6).flatmap(
    lambda record: st.one_of(st.integers(), st.text(), st.none()).map(
        lambda id_value: {**record, "id": id_value}
    )
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(RECORDS, min_size=1, max_size=5), ascii_only=st.booleans())
def test_the_jsonl_reader_reads_what_json_reads(tmp_path, records, ascii_only):
    lines = [json.dumps(record, ensure_ascii=ascii_only) for record in records]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = Problems()
    read = [r.fields for r in read_jsonl(path, "data.jsonl", problems, ByteCounter(1))]
    assert not problems
    # Compared as JSON text: equal values, and ints stay ints (1 == 1.0 in Python).
    assert [json.dumps(r, sort_keys=True) for r in read] == [
        json.dumps(json.loads(line), sort_keys=True) for line in lines
    ]


def test_an_integer_id_beyond_64_bits_is_kept_exactly(project, tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"id": 123456789012345678901234567, "text": "a long id"}\n')
    import_examples(project=project, path=path, options=ImportOptions("jsonl"))
    assert Example.objects.get(project=project).external_id == "123456789012345678901234567"


def test_a_line_json_accepts_and_orjson_does_not_still_imports(project, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes('\ufeff{"id": "a", "text": "starts with a BOM"}\n'.encode())
    import_examples(project=project, path=path, options=ImportOptions("jsonl"))
    assert Example.objects.get(project=project).text == "starts with a BOM"


# --- the COPY's foreign-key checks (PostgreSQL) ----------------------------------------------


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(NEEDS_POSTGRES)


def write_jsonl(tmp_path: Path, *texts: str) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@pytest.fixture
def skip_calls(monkeypatch):
    """What each ``skip_row_triggers`` call of the writer returned."""
    calls = []
    real = writers.skip_row_triggers

    def recording(cursor, table):
        calls.append(real(cursor, table))
        return calls[-1]

    monkeypatch.setattr(writers, "skip_row_triggers", recording)
    return calls


@pytest.mark.django_db
def test_the_import_skips_the_row_checks_and_turns_them_back_on(project, tmp_path, skip_calls):
    postgres_only()
    import_examples(
        project=project, path=write_jsonl(tmp_path, "one", "two"), options=ImportOptions("jsonl")
    )
    assert skip_calls == [True]
    assert Example.objects.filter(project=project).count() == 2
    # Later writes of the same transaction are checked again.
    assert setting("session_replication_role") == "origin"
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(Exception, match="foreign key"):
        Example.objects.create(project_id=project.pk + 1000, external_id="x", text="orphan")


@pytest.mark.django_db
def test_a_trigger_of_someones_own_keeps_every_check(project, tmp_path, skip_calls):
    postgres_only()
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(
            "CREATE FUNCTION frugal_test_refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.text = 'refused' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER frugal_test_refuse BEFORE INSERT ON datasets_example "
            "FOR EACH ROW EXECUTE FUNCTION frugal_test_refuse()"
        )
    path = write_jsonl(tmp_path, "fine", "refused")
    with pytest.raises(psycopg.Error, match="refused by a trigger"):
        import_examples(project=project, path=path, options=ImportOptions("jsonl"))
    assert skip_calls == [False]
    assert not Example.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_a_role_that_may_not_skip_them_imports_with_every_check(project, tmp_path, skip_calls):
    postgres_only()
    with connection.cursor() as cursor:  # the role exists only inside the test's transaction
        cursor.execute("CREATE ROLE frugal_test_limited NOSUPERUSER")
        cursor.execute("GRANT USAGE ON SCHEMA public TO frugal_test_limited")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO frugal_test_limited")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO frugal_test_limited")
        cursor.execute("SET LOCAL ROLE frugal_test_limited")
    try:
        summary = import_examples(
            project=project, path=write_jsonl(tmp_path, "a", "b"), options=ImportOptions("jsonl")
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert skip_calls == [False]
    assert summary["rows"] == 2
    assert Example.objects.filter(project=project).count() == 2
