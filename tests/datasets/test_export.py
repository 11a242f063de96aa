"""Dataset export: every format streams, filters work, members only, and it round-trips."""

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from apps.datasets.models import Example
from apps.datasets.pipeline import ImportOptions, import_examples
from apps.projects.models import Project

FIXTURES = Path(__file__).parent / "fixtures"


def url(project, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/projects/{project.pk}/export/" + (f"?{query}" if query else "")


def body(response) -> bytes:
    assert response.streaming, "exports must be streamed"
    return b"".join(response.streaming_content)


@pytest.fixture
def filled(project):
    """The spam project with the mini WRENCH set and some model labels."""
    import_examples(project=project, path=FIXTURES / "wrench-mini", options=ImportOptions("wrench"))
    Example.objects.filter(project=project, external_id__in=["train:0", "train:2"]).update(
        label=1, confidence=0.9, label_source="model", label_version="prboost round 2"
    )
    Example.objects.filter(project=project, external_id="train:1").update(
        label=0, confidence=0.4, label_source="rules"
    )
    return project


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_jsonl_export_streams_one_row_per_example_with_label_names(admin_client, filled):
    response = admin_client.get(url(filled, format="jsonl"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="spam.jsonl"'
    rows = [json.loads(line) for line in body(response).decode().splitlines()]
    assert len(rows) == 8
    first = next(r for r in rows if r["id"] == "train:0")
    assert first == {
        "id": "train:0",
        "text": "check out my channel",
        "split": "pool",
        "entities": None,
        "gold_label": None,
        "gold_label_name": None,
        "label": 1,
        "label_name": "SPAM",
        "confidence": 0.9,
        "source": "model",
        "version": "prboost round 2",
        "votes": {"external": [1, -1, 1]},
    }


def test_export_filters_by_split_label_confidence_and_source(admin_client, filled):
    def ids(**params):
        text = body(admin_client.get(url(filled, format="jsonl", **params))).decode()
        return sorted(json.loads(line)["id"] for line in text.splitlines())

    assert ids(split="dev") == ["valid:0", "valid:1"]
    assert ids(split="train", label="SPAM") == ["train:0", "train:2"]
    assert ids(label="0") == ["train:1"]
    assert ids(min_confidence="0.5") == ["train:0", "train:2"]
    assert ids(source="rules") == ["train:1"]
    assert ids(gold_label="spam") == ["test:0", "valid:0"]
    assert ids(split="test", source="model") == []


@pytest.mark.parametrize(
    "params, field",
    [
        ({"format": "xml"}, "format"),
        ({"split": "holdout"}, "split"),
        ({"label": "EGGS"}, "label"),
        ({"min_confidence": "high"}, "min_confidence"),
        ({"source": "oracle"}, "source"),
    ],
)
def test_export_refuses_bad_parameters_with_a_message(admin_client, filled, params, field):
    response = admin_client.get(url(filled, **params))
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_json_export_is_one_array(admin_client, filled):
    rows = json.loads(body(admin_client.get(url(filled, format="json"))))
    assert isinstance(rows, list) and len(rows) == 8


def test_empty_export_is_valid_in_every_format(admin_client, project):
    assert body(admin_client.get(url(project, format="jsonl"))) == b""
    assert json.loads(body(admin_client.get(url(project, format="json")))) == []
    text = body(admin_client.get(url(project, format="csv"))).decode()
    assert text.splitlines()[0].startswith("id,text,split")
    archive = zipfile.ZipFile(io.BytesIO(body(admin_client.get(url(project, format="wrench")))))
    assert json.loads(archive.read("train.json")) == {}


def test_csv_export_has_a_header_and_json_columns(admin_client, filled):
    text = body(admin_client.get(url(filled, format="csv"))).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    row = next(r for r in rows if r["id"] == "train:3")
    assert row["text"] == 'this video is so "old" now\nstill good'
    assert json.loads(row["votes"]) == {"external": [-1, -1, -1]}


def test_parquet_export_writes_typed_columns(admin_client, filled):
    import pyarrow.parquet as pq

    response = admin_client.get(url(filled, format="parquet"))
    assert response["Content-Disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(body(response)))
    assert table.num_rows == 8
    assert str(table.schema.field("gold_label").type) == "int32"
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["valid:0"]["gold_label_name"] == "SPAM"
    assert rows["train:0"]["label_name"] == "SPAM" and rows["train:0"]["confidence"] == 0.9


def test_wrench_export_is_a_zip_in_wrench_shape(admin_client, filled):
    response = admin_client.get(url(filled, format="wrench"))
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body(response)))
    assert sorted(archive.namelist()) == ["label.json", "test.json", "train.json", "valid.json"]
    assert json.loads(archive.read("label.json")) == {"0": "HAM", "1": "SPAM"}
    train = json.loads(archive.read("train.json"))
    assert train["0"] == {
        "data": {"text": "check out my channel"},
        "label": 1,  # no gold label in the pool: the current label
        "weak_labels": [1, -1, 1],
    }
    assert train["3"]["label"] == -1
    assert json.loads(archive.read("valid.json"))["1"]["label"] == 0


def test_wrench_export_of_relations_gives_entities_and_spans(client, db, make_user):
    from apps.projects.models import Membership

    user = make_user("rel-admin")
    project = Project.objects.create(name="Rel", task_type="relation_extraction", labels=[])
    Membership.objects.create(project=project, user=user, role="admin")
    import_examples(
        project=project, path=FIXTURES / "wrench-relation", options=ImportOptions("wrench")
    )
    client.force_login(user)
    archive = zipfile.ZipFile(io.BytesIO(body(client.get(url(project, format="wrench")))))
    record = json.loads(archive.read("train.json"))["10"]
    assert record["data"] == {
        "text": "The fire was caused by a short circuit .",
        "entity1": "fire",
        "entity2": "short circuit",
        "span1": [4, 8],
        "span2": [25, 38],
    }


# --- permissions -----------------------------------------------------------------------------


def test_annotators_may_export(client, filled, annotator):
    client.force_login(annotator)
    assert client.get(url(filled)).status_code == 200


def test_non_members_get_404(client, filled, outsider):
    client.force_login(outsider)
    assert client.get(url(filled)).status_code == 404


def test_anonymous_requests_are_refused(client, filled):
    assert client.get(url(filled)).status_code in (401, 403)


def test_token_authentication_exports(client, filled, annotator):
    from apps.accounts.services import create_api_token

    _, secret = create_api_token(user=annotator, name="script")
    response = client.get(url(filled, format="jsonl"), HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert len(body(response).splitlines()) == 8


def test_unknown_project_is_404(admin_client, filled):
    assert admin_client.get(f"/api/v1/projects/{filled.pk + 999}/export/").status_code == 404


# --- round trip ---------------------------------------------------------------------------------


def _snapshot(project, with_pool_gold=True):
    """Comparable content: (split, text, gold name, current name, confidence, source, votes)."""
    labels = project.labels
    out = []
    for e in Example.objects.filter(project=project).order_by("split", "text"):
        gold = labels[e.gold_label] if e.gold_label is not None else None
        if e.split == "pool" and not with_pool_gold:
            gold = None
        label = labels[e.label] if e.label is not None else None
        out.append((e.split, e.text, gold, label, e.confidence, e.label_source, e.votes))
    return sorted(out, key=lambda r: (r[0], r[1], str(r)))


@pytest.mark.needs_data
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "wrench"])
def test_export_round_trip_through_every_format(admin_client, project, data_dir, tmp_path, fmt):
    source = Project.objects.create(name="YouTube", labels=[])
    from apps.projects.models import Membership

    Membership.objects.create(project=source, user=project.created_by, role="admin")
    import_examples(
        project=source, path=data_dir / "wrench-youtube", options=ImportOptions("wrench")
    )
    # Give part of the pool model labels, so current labels travel too.
    pool = Example.objects.filter(project=source, split="pool").order_by("id")
    for example in pool[:300]:
        example.label, example.confidence, example.label_source = 1, 0.75, "model"
        example.save(update_fields=["label", "confidence", "label_source"])

    data = body(admin_client.get(url(source, format=fmt)))
    path = tmp_path / ("export" if fmt == "wrench" else f"export.{fmt}")
    if fmt == "wrench":
        zipfile.ZipFile(io.BytesIO(data)).extractall(path)
    else:
        path.write_bytes(data)

    copy = Project.objects.create(name="Copy", labels=[])
    import_examples(project=copy, path=path, options=ImportOptions(fmt))
    copy.refresh_from_db()
    assert copy.labels == ["HAM", "SPAM"] or fmt != "wrench"
    assert Example.objects.filter(project=copy).count() == 1586 + 120 + 250

    if fmt == "wrench":
        # WRENCH carries text, gold (dev/test), votes; pool labels are dropped on import.
        def plain(p):
            return sorted(
                (s, t, g, v["external"])
                for s, t, g, _, _, _, v in _snapshot(p, with_pool_gold=False)
            )

        assert plain(copy) == plain(source)
    else:
        assert _snapshot(copy) == _snapshot(source)


FORMULAS = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]


@pytest.fixture
def formulas(project):
    for n, text in enumerate([*FORMULAS, "\tTAB", "\rCR", "'=already quoted", "plain -2"]):
        Example.objects.create(project=project, external_id=f"=id{n}", text=text, split="pool")
    project.labels = ["=HAM", "SPAM"]
    project.save()
    Example.objects.filter(project=project).update(label=0)
    return project


def _csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(response).decode(), newline="")))


def test_csv_export_neutralizes_spreadsheet_formulas(admin_client, formulas):
    rows = _csv_rows(admin_client.get(url(formulas, format="csv")))
    texts = {row["text"] for row in rows}
    for formula in FORMULAS:
        assert "'" + formula in texts
    assert {"'\tTAB", "'\rCR", "''=already quoted", "plain -2"} <= texts
    assert all(row["id"].startswith("'=id") for row in rows)
    assert {row["label_name"] for row in rows} == {"'=HAM"}


def test_csv_export_for_programs_keeps_cells_exact(admin_client, formulas):
    rows = _csv_rows(admin_client.get(url(formulas, format="csv", csv_raw="true")))
    assert set(FORMULAS) <= {row["text"] for row in rows}
    assert {row["label_name"] for row in rows} == {"=HAM"}
    bad = admin_client.get(url(formulas, format="csv", csv_raw="maybe"))
    assert bad.status_code == 400 and "csv_raw" in str(bad.json())


def test_export_page_offers_the_raw_csv_option(admin_client, project):
    page = admin_client.get(f"/projects/{project.pk}/")
    assert b'name="csv_raw"' in page.content


def test_neutralized_csv_export_round_trips_exactly(admin_client, formulas, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(body(admin_client.get(url(formulas, format="csv"))))
    copy = Project.objects.create(name="Copy", labels=[])
    import_examples(project=copy, path=path, options=ImportOptions("csv"))
    original = sorted(Example.objects.filter(project=formulas).values_list("external_id", "text"))
    copied = sorted(Example.objects.filter(project=copy).values_list("external_id", "text"))
    assert copied == original
    assert Project.objects.get(pk=copy.pk).labels == ["=HAM"]  # the labels the rows use
