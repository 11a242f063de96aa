"""Datasets: the TextDataset container and the WRENCH loader on the real data."""

import json

import numpy as np
import pytest

from models.data import DataError, TextDataset, load_wrench, load_wrench_splits


def _tiny(**overrides):
    fields = {
        "texts": ["a", "b", "c"],
        "labels": np.array([0, 1, -1]),
        "label_names": ["HAM", "SPAM"],
        "ids": ["x", "y", "z"],
    }
    fields.update(overrides)
    return TextDataset(**fields)


def test_dataset_subset_keeps_order_and_fields():
    ds = _tiny()
    sub = ds.subset([2, 0])
    assert sub.texts == ["c", "a"]
    assert sub.labels.tolist() == [-1, 0]
    assert sub.ids == ["z", "x"]
    assert sub.n_classes == 2
    assert ds.labeled.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"labels": np.array([0, 1])}, "labels has 2 entries"),
        ({"labels": np.array([0, 2, 1])}, "labels must lie in -1..1"),
        ({"ids": ["x", "x", "z"]}, "ids must be unique"),
        ({"task_type": "relation_extraction"}, "needs entities"),
        ({"task_type": "ner"}, "task_type must be one of"),
    ],
)
def test_dataset_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(DataError, match=message):
        _tiny(**overrides)


def test_empty_dataset_is_allowed():
    ds = TextDataset(texts=[], labels=np.zeros(0), label_names=["a", "b"], ids=[])
    assert len(ds) == 0


@pytest.mark.needs_data
def test_load_wrench_youtube_matches_the_files(data_dir):
    ds, votes = load_wrench(data_dir / "wrench-youtube", "train")
    raw = json.loads((data_dir / "wrench-youtube" / "train.json").read_text())
    assert len(ds) == len(raw) == 1586
    assert votes.shape == (1586, 10)
    assert ds.label_names == ["HAM", "SPAM"]
    first_id = next(iter(raw))
    assert ds.ids[0] == first_id
    assert ds.texts[0] == raw[first_id]["data"]["text"]
    assert votes[0].tolist() == raw[first_id]["weak_labels"]
    assert ds.task_type == "text_classification" and ds.entities is None
    assert set(np.unique(votes)) <= {-1, 0, 1}


@pytest.mark.needs_data
def test_load_wrench_strips_the_leaking_first_word_of_trec_test(data_dir):
    ds, _ = load_wrench(data_dir / "wrench-trec", "test")
    assert ds.texts[0] == "How far is it from Denver to Aspen ?"
    kept, _ = load_wrench(data_dir / "wrench-trec", "test", strip_leaking_word=False)
    assert kept.texts[0].startswith("dist How far")
    valid, _ = load_wrench(data_dir / "wrench-trec", "valid")
    assert valid.texts[0] == "where are the 49 steps ?"  # other splits untouched


@pytest.mark.needs_data
def test_load_wrench_relation_sets_fill_entity_spans(data_dir):
    for name, split in [("wrench-semeval", "valid"), ("wrench-chemprot", "test")]:
        ds, votes = load_wrench(data_dir / name, split)
        assert ds.task_type == "relation_extraction"
        assert len(ds.entities) == len(ds) == votes.shape[0]
        for text, (head, tail) in zip(ds.texts, ds.entities):
            assert text[head[1] : head[2]] == head[0]
            assert text[tail[1] : tail[2]] == tail[0]


@pytest.mark.needs_data
def test_load_wrench_splits_skips_missing_train(data_dir):
    splits = load_wrench_splits(data_dir / "wrench-chemprot")
    assert sorted(splits) == ["test", "valid"]


def test_load_wrench_reports_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_wrench(tmp_path, "train")
    with pytest.raises(DataError, match="split must be one of"):
        load_wrench(tmp_path, "dev")


def test_load_wrench_reads_a_small_folder(tmp_path):
    (tmp_path / "label.json").write_text(json.dumps({"0": "neg", "1": "pos"}))
    rows = {
        "7": {"data": {"text": "good"}, "label": 1, "weak_labels": [1, -1]},
        "3": {"data": {"text": "bad"}, "label": 0, "weak_labels": [-1, 0]},
    }
    (tmp_path / "valid.json").write_text(json.dumps(rows))
    ds, votes = load_wrench(tmp_path, "valid")
    assert ds.ids == ["7", "3"]
    assert ds.labels.tolist() == [1, 0]
    assert votes.tolist() == [[1, -1], [-1, 0]]
