"""The import pipeline: every format, the label rule, and every bad input changing nothing."""

import json
import shutil
from pathlib import Path

import pytest

from apps.datasets.models import Example
from apps.datasets.pipeline import MAX_PROBLEMS, ImportFailed, ImportOptions, import_examples
from apps.projects.models import Project

FIXTURES = Path(__file__).parent / "fixtures"


def run(project, path, fmt, **options):
    return import_examples(project=project, path=Path(path), options=ImportOptions(fmt, **options))


def write(tmp_path, name, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def fails(project, path, fmt, **options) -> ImportFailed:
    """Run an import that must fail, and check that it changed nothing."""
    before = (Example.objects.filter(project=project).count(), list(project.labels))
    with pytest.raises(ImportFailed) as info:
        run(project, path, fmt, **options)
    project.refresh_from_db()
    after = (Example.objects.filter(project=project).count(), list(project.labels))
    assert after == before, "a failed import must change nothing"
    return info.value


@pytest.fixture
def unlabeled_project(db):
    return Project.objects.create(name="Fresh", labels=[])


@pytest.fixture
def relation_project(db):
    return Project.objects.create(
        name="Relations",
        task_type="relation_extraction",
        labels=["Cause-Effect", "Content-Container"],
    )


# --- formats --------------------------------------------------------------------------------


def test_jsonl_import_writes_rows_per_split_and_votes(project):
    summary = run(project, FIXTURES / "examples.jsonl", "jsonl")
    assert summary["rows"] == 3
    assert summary["splits"] == {"pool": 1, "dev": 1, "test": 1}
    j1 = Example.objects.get(project=project, external_id="j1")
    assert (j1.split, j1.gold_label, j1.text) == ("dev", 1, "win a prize now")
    j3 = Example.objects.get(project=project, external_id="j3")
    assert j3.gold_label is None and j3.votes == {"external": [0, -1]}


def test_csv_import_uses_the_picked_columns(project):
    columns = {"text": "content", "label": "class", "id": "comment_id", "split": "where"}
    summary = run(project, FIXTURES / "comments.csv", "csv", columns=columns)
    assert summary["splits"] == {"pool": 2, "dev": 1, "test": 1}
    c2 = Example.objects.get(project=project, external_id="c2")
    assert c2.text == "I love this song\nso much"  # a quoted field spanning two lines
    assert (c2.split, c2.gold_label) == ("dev", 0)
    assert Example.objects.get(project=project, external_id="c4").split == "pool"


def test_tsv_import_takes_labels_by_index(project):
    summary = run(project, FIXTURES / "messages.tsv", "tsv")
    assert summary["rows"] == 2
    assert Example.objects.get(project=project, external_id="t1").gold_label == 1


def test_csv_delimiter_is_sniffed(project, tmp_path):
    path = write(tmp_path, "semi.csv", "id;text;label\na;hello there;HAM\nb;buy now;SPAM\n")
    run(project, path, "csv")
    assert Example.objects.get(project=project, external_id="b").gold_label == 1


def test_rows_without_ids_get_ids_from_file_and_row(project, tmp_path):
    path = write(tmp_path, "plain.csv", "text\nfirst\nsecond\n")
    run(project, path, "csv")
    ids = sorted(Example.objects.filter(project=project).values_list("external_id", flat=True))
    assert ids == ["plain.csv:1", "plain.csv:2"]


def test_parquet_import_reads_row_groups(project, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 20_000
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "text": [f"text number {i}" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            "split": ["dev" if i % 10 == 0 else "pool" for i in range(n)],
        }
    )
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=3000)
    summary = run(project, path, "parquet")
    assert summary["rows"] == n and summary["splits"]["dev"] == 2000
    assert Example.objects.get(project=project, external_id="p7").gold_label == 1


def test_wrench_folder_maps_splits_drops_pool_labels_and_keeps_votes(unlabeled_project):
    summary = run(unlabeled_project, FIXTURES / "wrench-mini", "wrench")
    assert summary["splits"] == {"pool": 4, "dev": 2, "test": 2}
    unlabeled_project.refresh_from_db()
    assert unlabeled_project.labels == ["HAM", "SPAM"]  # from label.json
    pool = Example.objects.get(project=unlabeled_project, external_id="train:0")
    assert pool.split == "pool" and pool.gold_label is None
    assert pool.votes == {"external": [1, -1, 1]}
    dev = Example.objects.get(project=unlabeled_project, external_id="valid:0")
    assert (dev.split, dev.gold_label) == ("dev", 1)
    assert (
        Example.objects.get(external_id="train:3").text == 'this video is so "old" now\nstill good'
    )


def test_wrench_train_labels_kept_as_gold_on_request(project):
    run(project, FIXTURES / "wrench-mini", "wrench", keep_train_labels=True)
    assert Example.objects.get(project=project, external_id="train:0").gold_label == 1


def test_wrench_relation_folder_gives_entities_with_char_spans(relation_project):
    run(relation_project, FIXTURES / "wrench-relation", "wrench")
    example = Example.objects.get(project=relation_project, external_id="train:10")
    assert example.entities == [
        {"text": "fire", "start": 4, "end": 8},
        {"text": "short circuit", "start": 25, "end": 38},
    ]


def test_relation_csv_finds_mentions_without_spans(relation_project, tmp_path):
    path = write(tmp_path, "rel.csv", "text,e1,e2,label\nThe box held letters .,letters,box,1\n")
    run(relation_project, path, "csv", columns={"entity1": "e1", "entity2": "e2"})
    assert Example.objects.get(project=relation_project).entities[1] == {
        "text": "box",
        "start": 4,
        "end": 7,
    }


@pytest.mark.needs_data
def test_real_wrench_youtube_folder_imports_every_split(data_dir, unlabeled_project):
    summary = run(unlabeled_project, data_dir / "wrench-youtube", "wrench")
    assert summary["splits"] == {"pool": 1586, "dev": 120, "test": 250}
    assert summary["labels"] == ["HAM", "SPAM"]
    votes = Example.objects.filter(project=unlabeled_project, split="pool").first().votes
    assert len(votes["external"]) == 10


@pytest.mark.needs_data
def test_real_semeval_relations_import_with_valid_spans(data_dir, db):
    project = Project.objects.create(name="SemEval", task_type="relation_extraction", labels=[])
    summary = run(project, data_dir / "wrench-semeval", "wrench")
    assert summary["rows"] == 1749 + 178 + 600
    example = Example.objects.filter(project=project).first()
    first, second = example.entities
    assert example.text[first["start"] : first["end"]] == first["text"]


# --- the label rule -------------------------------------------------------------------------


def test_project_without_labels_takes_names_in_order_of_first_appearance(
    unlabeled_project, tmp_path
):
    path = write(
        tmp_path, "l.jsonl", jsonl({"text": "a", "label": "SPAM"}, {"text": "b", "label": "HAM"})
    )
    summary = run(unlabeled_project, path, "jsonl")
    assert summary["labels_added"] == ["SPAM", "HAM"]
    unlabeled_project.refresh_from_db()
    assert unlabeled_project.labels == ["SPAM", "HAM"]


def test_project_without_labels_takes_integer_labels_as_indexes(unlabeled_project, tmp_path):
    path = write(tmp_path, "i.jsonl", jsonl({"text": "a", "label": 2}, {"text": "b", "label": 0}))
    run(unlabeled_project, path, "jsonl")
    unlabeled_project.refresh_from_db()
    assert unlabeled_project.labels == ["0", "1", "2"]
    assert Example.objects.get(project=unlabeled_project, text="a").gold_label == 2


def test_label_names_match_ignoring_case(project, tmp_path):
    path = write(tmp_path, "c.jsonl", jsonl({"text": "a", "label": "spam"}))
    run(project, path, "jsonl")
    assert Example.objects.get(project=project).gold_label == 1


# --- bad input: each names where, and changes nothing --------------------------------------


def test_import_refuses_text_that_is_not_utf8(project):
    error = fails(project, FIXTURES / "latin1.csv", "csv")
    (problem,) = error.problems
    assert (problem.file, problem.line, problem.column) == ("latin1.csv", 3, 6)
    assert "UTF-8" in problem.reason and "0xef" in problem.reason


def test_import_refuses_a_csv_without_the_text_column(project, tmp_path):
    path = write(tmp_path, "notext.csv", "id,body\n1,hello\n")
    (problem,) = fails(project, path, "csv").problems
    assert (problem.file, problem.line, problem.column) == ("notext.csv", 1, "text")
    assert "text column is missing" in problem.reason


def test_import_refuses_empty_text_naming_row_and_column(project, tmp_path):
    path = write(tmp_path, "empty.csv", "id,text\na,fine\nb,   \n")
    (problem,) = fails(project, path, "csv").problems
    assert (problem.line, problem.row, problem.column) == (3, 2, "text")
    assert "empty" in problem.reason


def test_import_refuses_missing_text_field_in_jsonl(project, tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"text": "ok"}, {"sentence": "no text key"}))
    (problem,) = fails(project, path, "jsonl").problems
    assert (problem.line, problem.column) == (2, "text") and "missing" in problem.reason


def test_import_refuses_unknown_label(project, tmp_path):
    path = write(
        tmp_path, "u.jsonl", jsonl({"text": "a", "label": "HAM"}, {"text": "b", "label": "EGGS"})
    )
    (problem,) = fails(project, path, "jsonl").problems
    assert (problem.file, problem.line, problem.column) == ("u.jsonl", 2, "label")
    assert "unknown label 'EGGS'" in problem.reason and "0=HAM, 1=SPAM" in problem.reason


def test_import_refuses_label_index_out_of_range(project, tmp_path):
    path = write(tmp_path, "r.jsonl", jsonl({"text": "a", "label": 5}))
    (problem,) = fails(project, path, "jsonl").problems
    assert "unknown label 5" in problem.reason


def test_import_reports_malformed_json_on_its_line(project, tmp_path):
    path = write(
        tmp_path, "bad.jsonl", '{"text": "ok"}\n{"text": "broken",,}\n{"text": "ok too"}\n'
    )
    (problem,) = fails(project, path, "jsonl").problems
    assert (problem.file, problem.line, problem.column) == ("bad.jsonl", 2, 19)
    assert problem.reason.startswith("malformed JSON")


def test_wrench_reports_malformed_json_on_its_line(project, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(FIXTURES / "wrench-mini", folder)
    lines = (folder / "valid.json").read_text().splitlines()
    lines[1] = lines[1].replace('"label": 0', '"label" 0')
    (folder / "valid.json").write_text("\n".join(lines))
    (problem,) = fails(project, folder, "wrench").problems
    assert (problem.file, problem.line) == ("w/valid.json", 2)
    assert "malformed JSON" in problem.reason


def test_import_refuses_duplicate_ids_in_the_file(project, tmp_path):
    path = write(tmp_path, "d.jsonl", jsonl({"id": "x", "text": "a"}, {"id": "x", "text": "b"}))
    (problem,) = fails(project, path, "jsonl").problems
    assert (problem.line, problem.column) == (2, "id") and "duplicate id 'x'" in problem.reason


def test_import_refuses_ids_the_project_already_has(project, tmp_path):
    Example.objects.create(project=project, external_id="x", text="already here")
    path = write(tmp_path, "e.jsonl", jsonl({"id": "y", "text": "a"}, {"id": "x", "text": "b"}))
    (problem,) = fails(project, path, "jsonl").problems
    assert (problem.line, problem.column) == (2, "id")
    assert "already has an example" in problem.reason


def test_relation_import_refuses_rows_without_entities(relation_project, tmp_path):
    path = write(tmp_path, "n.jsonl", jsonl({"text": "no mentions here", "label": 0}))
    (problem,) = fails(relation_project, path, "jsonl").problems
    assert (problem.line, problem.column) == (1, "entities")
    assert "two entity mentions" in problem.reason


def test_relation_import_refuses_spans_outside_the_text(relation_project, tmp_path):
    folder = tmp_path / "rel"
    shutil.copytree(FIXTURES / "wrench-relation", folder)
    data = json.loads((folder / "valid.json").read_text())
    data["20"]["data"]["span2"] = [28, 80]
    (folder / "valid.json").write_text(json.dumps(data))
    (problem,) = fails(relation_project, folder, "wrench").problems
    assert (problem.file, problem.line, problem.column) == ("rel/valid.json", 1, "span2")
    assert "outside the text" in problem.reason


def test_import_refuses_a_file_over_the_size_limit(project, settings):
    settings.FRUGAL_IMPORT_MAX_BYTES = 100
    (problem,) = fails(project, FIXTURES / "comments.csv", "csv").problems
    assert problem.file == "comments.csv" and "over the import limit of 100 bytes" in problem.reason


def test_import_refuses_an_empty_file(project, tmp_path):
    (problem,) = fails(project, write(tmp_path, "void.jsonl", ""), "jsonl").problems
    assert (problem.file, problem.reason) == ("void.jsonl", "the file is empty")


def test_import_refuses_a_file_with_only_blank_lines(project, tmp_path):
    (problem,) = fails(project, write(tmp_path, "blank.jsonl", "\n\n"), "jsonl").problems
    assert "no records" in problem.reason


def test_parquet_import_refuses_a_column_of_the_wrong_type(project, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3], "label": [0.5, 1.0, 0.0]}), path)
    problems = fails(project, path, "parquet").problems
    assert [(p.file, p.column) for p in problems] == [
        ("typed.parquet", "text"),
        ("typed.parquet", "label"),
    ]
    assert "has type int64; expected string" in problems[0].reason


def test_parquet_import_refuses_a_file_that_is_not_parquet(project, tmp_path):
    (problem,) = fails(project, write(tmp_path, "fake.parquet", "id,text\n"), "parquet").problems
    assert "not a readable Parquet file" in problem.reason


def test_import_stops_after_the_first_twenty_problems(project, tmp_path):
    path = write(tmp_path, "many.jsonl", jsonl(*({"text": ""} for _ in range(100))))
    error = fails(project, path, "jsonl")
    assert len(error.problems) == MAX_PROBLEMS and error.truncated
    assert [p.line for p in error.problems] == list(range(1, MAX_PROBLEMS + 1))


def test_import_rolls_back_rows_already_written_when_a_later_row_is_bad(
    project, tmp_path, monkeypatch
):
    monkeypatch.setattr("apps.datasets.pipeline.writers.BATCH_ROWS", 10)
    rows = [{"id": f"r{i}", "text": f"row {i}", "label": "HAM"} for i in range(95)]
    rows.append({"id": "bad", "text": "bad", "label": "NOPE"})
    (problem,) = fails(project, write(tmp_path, "late.jsonl", jsonl(*rows)), "jsonl").problems
    assert problem.line == 96
    assert not Example.objects.filter(project=project).exists()


def test_wrench_labels_must_match_the_projects(db):
    project = Project.objects.create(name="Other", labels=["NO", "YES"])
    (problem,) = fails(project, FIXTURES / "wrench-mini", "wrench").problems
    assert problem.file == "wrench-mini/label.json" and "differ" in problem.reason


def test_problem_messages_name_file_line_and_column(project, tmp_path):
    path = write(tmp_path, "u.jsonl", jsonl({"text": "b", "label": "EGGS"}))
    error = fails(project, path, "jsonl")
    assert "u.jsonl, line 1, column 'label': unknown label 'EGGS'" in error.message
    assert error.to_dict()["problems"][0] == {
        "file": "u.jsonl",
        "line": 1,
        "column": "label",
        "reason": error.problems[0].reason,
    }


def test_duplicate_ids_far_apart_are_found_and_located(project, tmp_path, monkeypatch):
    # On PostgreSQL the unique index finds them in one streaming COPY (no id set in memory),
    # and a second read locates the rows; elsewhere the id set does.
    monkeypatch.setattr("apps.datasets.pipeline.writers.BATCH_ROWS", 7)
    rows = [{"id": f"r{i}", "text": f"row {i}"} for i in range(60)]
    rows.append({"id": "r3", "text": "again"})
    (problem,) = fails(project, write(tmp_path, "far.jsonl", jsonl(*rows)), "jsonl").problems
    assert (problem.file, problem.line, problem.column) == ("far.jsonl", 61, "id")
    assert problem.reason.startswith("duplicate id 'r3': an earlier row of this import has it")
    assert not Example.objects.filter(project=project).exists()


def test_wrench_file_not_utf8_names_its_line_and_column(project, tmp_path):
    folder = tmp_path / "enc"
    shutil.copytree(FIXTURES / "wrench-mini", folder)
    data = (folder / "test.json").read_bytes().replace(b"amazing", b"am\xe9zing")
    (folder / "test.json").write_bytes(data)
    (problem,) = fails(project, folder, "wrench").problems
    assert (problem.file, problem.line, problem.column) == ("enc/test.json", 2, 43)
    assert "not valid UTF-8 (byte 0xe9)" in problem.reason


def test_json_array_import_reads_records_and_reports_bad_ones(project, tmp_path):
    good = write(tmp_path, "a.json", json.dumps([{"id": "a", "text": "x", "label": "SPAM"}]))
    assert run(project, good, "json")["rows"] == 1
    bad = write(tmp_path, "b.json", '[\n  {"id": "b", "text": "y"},\n  {"id": "c", "text": }\n]')
    (problem,) = fails(project, bad, "json").problems
    assert (problem.file, problem.line) == ("b.json", 3) and "malformed JSON" in problem.reason
