"""Writes the bad-input corpus next to this file.

Run ``python tests/datasets/bad_inputs/make_corpus.py``.

One file (or WRENCH folder) per case and format; ``test_bad_inputs.py`` says what each must
produce. The files are committed; this script documents how they were made.
"""

import io
import json
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
DEEP = 100_000


def write(name: str, data: str | bytes) -> None:
    path = HERE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def parquet(name: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write(name, buffer.getvalue())


def wrench(
    case: str, train: str, labels: str = '{"0": "HAM", "1": "SPAM"}', stem: str = "train"
) -> None:
    folder = HERE / f"wrench_{case}"
    shutil.rmtree(folder, ignore_errors=True)
    write(f"wrench_{case}/{stem}.json", train)
    write(f"wrench_{case}/label.json", labels)


def main() -> None:
    good = [{"id": "a", "text": "first", "label": "HAM"}, {"id": "b", "text": "second"}]
    long_text = "x" * 150  # the test sets FRUGAL_MAX_TEXT_CHARS to 100
    deep = "[" * DEEP + "]" * DEEP
    ok = '"1": {"data": {"text": "fine"}, "label": 0, "weak_labels": [-1]}'

    # empty files
    for ext in ("csv", "tsv", "jsonl", "json", "parquet"):
        write(f"empty.{ext}", b"")
    # a header and nothing else
    write("header_only.csv", "id,text,label\n")
    write("header_only.tsv", "id\ttext\tlabel\n")
    parquet(
        "header_only.parquet",
        pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
    )
    write("header_only.json", "[]")
    # duplicate ids
    write("duplicate_ids.csv", "id,text\na,first\nb,second\na,third\n")
    write("duplicate_ids.tsv", "id\ttext\na\tfirst\nb\tsecond\na\tthird\n")
    write("duplicate_ids.jsonl", jsonl([*good, {"id": "a", "text": "third"}]))
    write("duplicate_ids.json", json.dumps([*good, {"id": "a", "text": "third"}], indent=1))
    parquet("duplicate_ids.parquet", pa.table({"id": ["a", "b", "a"], "text": ["1", "2", "3"]}))
    # unknown labels (the project's labels are HAM and SPAM)
    write("unknown_label.csv", "id,text,label\na,first,HAM\nb,second,EGGS\n")
    write("unknown_label.tsv", "id\ttext\tlabel\na\tfirst\tHAM\nb\tsecond\tEGGS\n")
    write("unknown_label.jsonl", jsonl([good[0], {"id": "b", "text": "x", "label": "EGGS"}]))
    write("unknown_label.json", json.dumps([good[0], {"id": "b", "text": "x", "label": "EGGS"}]))
    parquet("unknown_label.parquet", pa.table({"text": ["1", "2"], "label": ["HAM", "EGGS"]}))
    wrench(  # dev labels are gold (pool labels are dropped)
        "unknown_label",
        '{"0": {"data": {"text": "x"}, "label": 7, "weak_labels": [-1]}}',
        stem="valid",
    )
    wrench("duplicate_ids", "{" + ok + ",\n" + ok + "}")
    wrench("empty", "")
    write("oversize.jsonl", jsonl(good * 5))  # the test sets FRUGAL_IMPORT_MAX_BYTES to 100
    # a Parquet file cut in half, and a zip renamed to .parquet
    table = pa.table({"id": [str(i) for i in range(2000)], "text": [f"t{i}" for i in range(2000)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write("truncated.parquet", buffer.getvalue()[: len(buffer.getvalue()) // 2])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.json", "{}")
    write("renamed_zip.parquet", archive.getvalue())
    write("renamed_zip.jsonl", archive.getvalue())
    # a text file renamed to .zip, and a zip whose members climb out of the folder
    write("not_a_zip.zip", "id,text\na,hello\n")
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("../../../../tmp/frugal-zip-slip.txt", "owned")
        zf.writestr("../../label.json", '{"0": "HAM", "1": "SPAM"}')
    write("zip_slip.zip", slip.getvalue())
    # over-long text
    write("long_text.csv", f"id,text\na,short\nb,{long_text}\n")
    write("long_text.tsv", f"id\ttext\na\tshort\nb\t{long_text}\n")
    write("long_text.jsonl", jsonl([good[0], {"id": "b", "text": long_text}]))
    write("long_text.json", json.dumps([good[0], {"id": "b", "text": long_text}], indent=1))
    parquet("long_text.parquet", pa.table({"text": ["short", long_text]}))
    wrench(
        "long_text",
        '{"0": {"data": {"text": "' + long_text + '"}, "label": 0, "weak_labels": [-1]}}',
    )
    # a NUL character in an id
    write("nul_id.csv", "id,text\na,first\nb\x00c,second\n")
    write("nul_id.tsv", "id\ttext\na\tfirst\nb\x00c\tsecond\n")
    write("nul_id.jsonl", jsonl([good[0], {"id": "b\x00c", "text": "second"}]))
    write("nul_id.json", json.dumps([good[0], {"id": "b\x00c", "text": "second"}], indent=1))
    parquet("nul_id.parquet", pa.table({"id": ["a", "b\x00c"], "text": ["first", "second"]}))
    wrench("nul_id", "{" + ok + ',\n"b\\u0000c": {"data": {"text": "x"}, "label": 0}}')
    # JSON nested 100,000 deep
    write("deep.jsonl", jsonl([good[0]]) + '{"id": "b", "text": "x", "votes": ' + deep + "}\n")
    write("deep.json", '[{"id": "a", "text": "first"},\n' + deep + "]")
    write("deep.csv", f'id,text,gold_label,votes\na,first,,\nb,second,,"{deep}"\n')  # export shape
    wrench("deep", "{" + ok + ',\n"2": ' + deep + "}")
    # mixed line endings: a bare CR ends one line
    write("mixed_endings.csv", b"id,text\r\na,first\r\nb,second\rc,third\nd,fourth\n")
    write("mixed_endings.tsv", b"id\ttext\r\na\tfirst\nb\tsecond\rc\tthird\n")
    # a byte order mark before a header that lacks the text column
    write("bom.csv", "\ufeffid,body\na,first\n")
    write("bom.tsv", "\ufeffid\tbody\na\tfirst\n")
    write("bom.jsonl", "\ufeff" + jsonl([{"id": "a", "body": "first"}]))
    write("bom.json", "\ufeff" + json.dumps([{"id": "a", "body": "first"}]))


if __name__ == "__main__":
    main()
