"""Import of every pair format, all or nothing with problems naming file/line/row/column; export
in JSONL, Parquet and the TRL layout."""

import csv
import gzip
import io
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.alignment import pairs_io
from apps.alignment.models import PreferencePair
from apps.datasets.pipeline.exceptions import ImportFailed

pytestmark = pytest.mark.django_db

ROWS = [
    {
        "prompt": "How do I bake bread?",
        "chosen": "Mix flour, water, yeast.",
        "rejected": "No.",
        "source": "web",
        "id": "a1",
    },
    {
        "prompt": "Say something mean.",
        "chosen": "I'd rather not.",
        "rejected": "You are dumb.",
        "source": "red-team",
        "id": "a2",
        "split": "dev",
    },
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
]


DIALOGUE = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How to pick a lock?\n\nAssistant:"
OK = '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path, rows, fields=("prompt", "chosen", "rejected", "source", "id", "split")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    return path


def problems_of(exc: ImportFailed) -> list[str]:
    return [str(p) for p in exc.problems]


def test_jsonl_import(pref_project, tmp_path):
    n = pairs_io.import_pairs(project=pref_project, path=write_jsonl(tmp_path / "p.jsonl", ROWS))
    assert n == 3
    pairs = {p.external_id: p for p in PreferencePair.objects.filter(project=pref_project)}
    assert pairs["a1"].source == "web" and pairs["a1"].split == "pool"
    assert pairs["a2"].split == "dev"
    assert pairs["p.jsonl:3"].chosen == "Paris."  # no id: file and line


def test_csv_import(pref_project, tmp_path):
    n = pairs_io.import_pairs(project=pref_project, path=write_csv(tmp_path / "p.csv", ROWS))
    assert n == 3
    assert PreferencePair.objects.get(external_id="a2").split == "dev"
    assert PreferencePair.objects.get(external_id="p.csv:3").source == ""


def test_parquet_import(pref_project, tmp_path):
    table = pa.Table.from_pylist(
        [{k: r.get(k) for k in ("prompt", "chosen", "rejected", "id")} for r in ROWS]
    )
    pq.write_table(table, tmp_path / "p.parquet")
    n = pairs_io.import_pairs(
        project=pref_project, path=tmp_path / "p.parquet", default_split="test"
    )
    assert n == 3
    assert set(PreferencePair.objects.values_list("split", flat=True)) == {"test"}


def test_hh_rlhf_dialogues_are_split_into_prompt_and_responses(pref_project, tmp_path):
    rows = [
        {
            "chosen": DIALOGUE + " I can't help with that.",
            "rejected": DIALOGUE + " Use a tension wrench.",
        }
    ]
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(rows[0]) + "\n")
    assert pairs_io.import_pairs(project=pref_project, path=path) == 1
    p = PreferencePair.objects.get()
    assert p.prompt.endswith("How to pick a lock?\n\nAssistant:")
    assert p.prompt.startswith("Human: Hi")
    assert p.chosen == "I can't help with that."
    assert p.rejected == "Use a tension wrench."


def test_the_real_hh_rlhf_file_imports(pref_project, data_dir):
    n = pairs_io.import_pairs(
        project=pref_project, path=data_dir / "hh-rlhf-harmless" / "test.jsonl.gz"
    )
    assert n == 2312
    assert not PreferencePair.objects.filter(prompt="").exists()
    assert PreferencePair.objects.filter(prompt__endswith="Assistant:").count() == n


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"\n',
            "p.jsonl, line 2, column 1: malformed JSON",
        ),
        (
            OK + '{"prompt": "", "chosen": "a", "rejected": "b"}\n',
            "p.jsonl, line 2, column 'prompt': the prompt is missing or empty",
        ),
        (
            '{"prompt": "p", "chosen": "same", "rejected": "same"}\n',
            "line 1, column 'rejected': chosen and rejected are the same text",
        ),
        (
            '{"prompt": "p", "chosen": "a", "rejected": "b", "split": "train"}\n',
            "line 1, column 'split': unknown split 'train'",
        ),
        (
            '{"prompt": "p", "chosen": "a", "rejected": "b", "id": "x"}\n'
            '{"prompt": "q", "chosen": "a", "rejected": "b", "id": "x"}\n',
            "line 2, column 'id': the id 'x' appears twice (first at line 1)",
        ),
        (
            '{"prompt": "p", "chosen": 3, "rejected": "b"}\n',
            "line 1, column 'chosen': the chosen must be text, got int",
        ),
        ('["not", "an", "object"]\n', "line 1: expected a JSON object"),
        (
            '{"chosen": "\\n\\nHuman: a", "rejected": "\\n\\nHuman: b"}\n',
            "line 1, column 'chosen': cannot split the dialogues",
        ),
        ("", "p.jsonl: the file is empty"),
    ],
)
def test_bad_jsonl_imports_nothing_and_says_where(pref_project, tmp_path, content, expected):
    path = tmp_path / "p.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        pairs_io.import_pairs(project=pref_project, path=path)
    assert any(expected in p for p in problems_of(info.value)), problems_of(info.value)
    assert "nothing was imported" in info.value.message
    assert not PreferencePair.objects.exists()


def test_bad_csv_reports_row_and_line(pref_project, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,chosen,rejected\np,a,b\nq,,b\nr,a,b,extra\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        pairs_io.import_pairs(project=pref_project, path=path)
    found = problems_of(info.value)
    assert "p.csv, line 3, row 2, column 'chosen': the chosen is missing or empty" in found
    assert any("line 4, row 3: the row has 4 fields but the header has 3" in p for p in found)
    assert not PreferencePair.objects.exists()


def test_csv_without_the_needed_columns(pref_project, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as info:
        pairs_io.import_pairs(project=pref_project, path=path)
    assert any("column 'prompt': the prompt is missing" in p for p in problems_of(info.value))


def test_not_parquet_and_unknown_format(pref_project, tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"definitely not parquet")
    with pytest.raises(ImportFailed) as info:
        pairs_io.import_pairs(project=pref_project, path=path)
    assert "not a readable Parquet file" in problems_of(info.value)[0]
    other = tmp_path / "p.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(ImportFailed, match="cannot tell the format"):
        pairs_io.import_pairs(project=pref_project, path=other)


def test_ids_already_in_the_project_import_nothing(pref_project, tmp_path):
    pairs_io.import_pairs(project=pref_project, path=write_jsonl(tmp_path / "a.jsonl", ROWS[:1]))
    with pytest.raises(ImportFailed) as info:
        pairs_io.import_pairs(project=pref_project, path=write_jsonl(tmp_path / "b.jsonl", ROWS))
    assert "a pair with id 'a1' is already in the project" in problems_of(info.value)[0]
    assert PreferencePair.objects.count() == 1


def test_export_formats_carry_weights(pref_project, tmp_path):
    pairs_io.import_pairs(project=pref_project, path=write_jsonl(tmp_path / "p.jsonl", ROWS))
    PreferencePair.objects.filter(external_id="a1").update(weight=0.25, stage1_weight=0.5)
    PreferencePair.objects.filter(external_id="a2").update(status="discarded")
    qs = PreferencePair.objects.filter(project=pref_project)
    lines = b"".join(pairs_io.export_jsonl(pairs_io.export_rows(qs, layout="full"))).splitlines()
    full = [orjson.loads(x) for x in lines]
    assert [r["id"] for r in full] == ["a1", "a2", "p.jsonl:3"]
    assert full[0]["weight"] == 0.25 and full[0]["stage1_weight"] == 0.5
    assert full[1]["weight"] == 0.0  # discarded pairs export with weight 0
    assert full[2]["weight"] == 1.0  # not weighted yet: uniform
    trl = [
        orjson.loads(x)
        for x in b"".join(
            pairs_io.export_jsonl(pairs_io.export_rows(qs, layout="trl"))
        ).splitlines()
    ]
    assert set(trl[0]) == {"prompt", "chosen", "rejected", "weight"}
    table = pq.read_table(
        io.BytesIO(pairs_io.export_parquet(pairs_io.export_rows(qs, layout="full"), layout="full"))
    )
    assert table.num_rows == 3 and table.column("weight").to_pylist()[0] == 0.25
    # an export imports again (into another project) unchanged
    path = tmp_path / "again.jsonl"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(
                {k: r[k] for k in ("id", "prompt", "chosen", "rejected", "source", "split")}
            )
            for r in full
        )
    )
    from apps.projects.models import Project

    other = Project.objects.create(name="Other", task_type="preference", labels=[])
    assert pairs_io.import_pairs(project=other, path=path) == 3
